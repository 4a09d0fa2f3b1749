//! Table-driven tests of the approval policy against real parsed configs.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::{parse, Config};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The shared catalog most cases run against.
const CATALOG: &str = r#"
[slack]

[requests]
max_duration = "30d"
fallback_approvers = ["group:it"]
admins = ["secops@example.com", "group:admins"]

[groups]
it = ["ivan@example.com", "ingrid@example.com"]
admins = ["alice@example.com"]
eng-leads = ["bob@example.com", "carol@example.com"]
contractors = ["zed@contractor.example"]
leads-and-lena = ["group:eng-leads", "lena@example.com"]

[[apps]]
id = "github"
name = "GitHub"
owners = ["dana@example.com", "bob@example.com"]
max_duration = "7d"
stages = [{ approvers = ["group:eng-leads"], required = 1 }]
deny_requesters = ["group:contractors", "Mallory@Example.com"]

  [[apps.roles]]
  id = "write"

  [[apps.roles]]
  id = "triage"
  max_duration = "3d"

  [[apps.roles]]
  id = "maintainer"
  max_duration = "1d"
  stages = [{ approvers = ["owners"], required = 1 }, { approvers = ["group:eng-leads"], required = "all" }]

  [[apps.roles]]
  id = "read"
  auto_approve = true

  [[apps.roles]]
  id = "pages"
  max_duration = "2d"
  auto_approve = true

  [[apps.roles]]
  id = "security"
  stages = [{ approvers = ["group:eng-leads"], required = 2 }]

  [[apps.roles]]
  id = "billing"
  stages = [{ approvers = ["manager"], required = 1 }, { approvers = ["group:eng-leads"], required = 1 }]

  [[apps.roles]]
  id = "by-email"
  stages = [{ approvers = ["carol@example.com", "BOB@example.com"], required = 1 }]

  [[apps.roles]]
  id = "nested"
  stages = [{ approvers = ["group:leads-and-lena", "owners"], required = 2 }]

[[apps]]
id = "wiki"
name = "Wiki"
owners = ["dana@example.com"]

  [[apps.roles]]
  id = "edit"

  [[apps.roles]]
  id = "boss"
  stages = [{ approvers = ["manager", "olga@example.com"], required = "all" }]

[[apps]]
id = "vpn"
stages = [{ approvers = ["olga@example.com", "pat@example.com"], required = 1 }]
"#;

/// Fallback too small for a two-approval stage, and no fallback at all for `solo`.
const THIN_FALLBACK: &str = r#"
[slack]

[requests]
fallback_approvers = ["ivan@example.com"]

[groups]
eng-leads = ["bob@example.com", "carol@example.com"]
solo = ["sam@example.com"]

[[apps]]
id = "db"
owners = ["dana@example.com"]

  [[apps.roles]]
  id = "prod"
  stages = [{ approvers = ["owners"], required = 1 }, { approvers = ["group:eng-leads"], required = 2 }]

  [[apps.roles]]
  id = "solo-all"
  stages = [{ approvers = ["group:solo"], required = "all" }]

  [[apps.roles]]
  id = "ivan-only"
  stages = [{ approvers = ["ivan@example.com"], required = 1 }]
"#;

/// No fallback configured at all.
const NO_FALLBACK: &str = r#"
[slack]

[groups]
solo = ["sam@example.com"]

[[apps]]
id = "db"
stages = [{ approvers = ["group:solo"], required = 1 }]
"#;

/// `All` stage whose only member is the requester, with a two-person fallback.
const ALL_FALLBACK: &str = r#"
[slack]

[requests]
fallback_approvers = ["group:it", "ops@example.com"]

[groups]
it = ["ivan@example.com", "sam@example.com"]
solo = ["sam@example.com"]

[[apps]]
id = "db"
stages = [{ approvers = ["group:solo"], required = "all" }]
"#;

fn config(text: &str) -> Config {
    match parse(text, Path::new("/tmp/accessd.toml")) {
        Ok(c) => c,
        Err(e) => panic!("test config does not parse: {e}"),
    }
}

fn app<'c>(config: &'c Config, id: &str) -> &'c AppConfig {
    match config.app(id) {
        Some(a) => a,
        None => panic!("no app {id} in the test config"),
    }
}

fn ids(roles: &[&str]) -> Vec<String> {
    roles.iter().map(|r| r.to_string()).collect()
}

fn stage(approvers: &[&str], required: usize, source: &str) -> StagePlan {
    StagePlan {
        approvers: approvers.iter().map(|a| a.to_string()).collect(),
        required,
        fallback: false,
        source: source.to_string(),
    }
}

fn fallback(approvers: &[&str], required: usize, source: &str) -> StagePlan {
    StagePlan {
        fallback: true,
        ..stage(approvers, required, source)
    }
}

fn stages(stages: Vec<StagePlan>, max_secs: u64) -> Result<Plan, PolicyError> {
    Ok(Plan {
        stages,
        auto_approve: false,
        max_duration_secs: max_secs,
    })
}

fn auto(max_secs: u64) -> Result<Plan, PolicyError> {
    Ok(Plan {
        stages: Vec::new(),
        auto_approve: true,
        max_duration_secs: max_secs,
    })
}

struct Case {
    name: &'static str,
    config_toml: &'static str,
    app: &'static str,
    roles: &'static [&'static str],
    requester: &'static str,
    manager: Option<&'static str>,
    expect: Result<Plan, PolicyError>,
}

fn plan_cases() -> Vec<Case> {
    let leads = || {
        stage(
            &["bob@example.com", "carol@example.com"],
            1,
            "group:eng-leads",
        )
    };
    let it = |n| fallback(&["ingrid@example.com", "ivan@example.com"], n, "group:it");
    vec![
        // --- rule 4: one stage, each kind of approver
        Case {
            name: "single stage from a group (app stages inherited by the role)",
            config_toml: CATALOG,
            app: "github",
            roles: &["write"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(vec![leads()], 7 * DAY),
        },
        Case {
            name: "single stage from emails, app without roles",
            config_toml: CATALOG,
            app: "vpn",
            roles: &[],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![stage(
                    &["olga@example.com", "pat@example.com"],
                    1,
                    "olga@example.com, pat@example.com",
                )],
                30 * DAY,
            ),
        },
        Case {
            name: "single stage from owners (default stage of an app with owners)",
            config_toml: CATALOG,
            app: "wiki",
            roles: &["edit"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(vec![stage(&["dana@example.com"], 1, "owners")], 30 * DAY),
        },
        Case {
            name: "manager stage then group stage; manager lowercased",
            config_toml: CATALOG,
            app: "github",
            roles: &["billing"],
            requester: "eve@example.com",
            manager: Some(" Mia@Example.COM "),
            expect: stages(
                vec![stage(&["mia@example.com"], 1, "manager"), leads()],
                7 * DAY,
            ),
        },
        Case {
            name: "nested group and owners united, sorted, deduped",
            config_toml: CATALOG,
            app: "github",
            roles: &["nested"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![stage(
                    &[
                        "bob@example.com",
                        "carol@example.com",
                        "dana@example.com",
                        "lena@example.com",
                    ],
                    2,
                    "group:leads-and-lena, owners",
                )],
                7 * DAY,
            ),
        },
        // --- rule 5: requester exclusion and fallback
        Case {
            name: "manager unknown: stage falls back",
            config_toml: CATALOG,
            app: "github",
            roles: &["billing"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(vec![it(1), leads()], 7 * DAY),
        },
        Case {
            name: "manager is the requester: excluded, stage falls back",
            config_toml: CATALOG,
            app: "github",
            roles: &["billing"],
            requester: "eve@example.com",
            manager: Some("EVE@example.com"),
            expect: stages(vec![it(1), leads()], 7 * DAY),
        },
        Case {
            name: "requester in the group is excluded (any case)",
            config_toml: CATALOG,
            app: "github",
            roles: &["write"],
            requester: "Bob@Example.com",
            manager: None,
            expect: stages(
                vec![stage(&["carol@example.com"], 1, "group:eng-leads")],
                7 * DAY,
            ),
        },
        Case {
            name: "required > remaining after exclusion: fallback keeps the count",
            config_toml: CATALOG,
            app: "github",
            roles: &["security"],
            requester: "bob@example.com",
            manager: None,
            expect: stages(vec![it(2)], 7 * DAY),
        },
        Case {
            name: "requester is in the fallback too: excluded from it",
            config_toml: CATALOG,
            app: "github",
            roles: &["billing"],
            requester: "ivan@example.com",
            manager: None,
            expect: stages(
                vec![fallback(&["ingrid@example.com"], 1, "group:it"), leads()],
                7 * DAY,
            ),
        },
        Case {
            name: "fallback also insufficient: NoApprovers names the 1-based stage",
            config_toml: THIN_FALLBACK,
            app: "db",
            roles: &["prod"],
            requester: "bob@example.com",
            manager: None,
            expect: Err(PolicyError::NoApprovers { stage: 2 }),
        },
        Case {
            name: "no fallback configured: NoApprovers",
            config_toml: NO_FALLBACK,
            app: "db",
            roles: &[],
            requester: "sam@example.com",
            manager: None,
            expect: Err(PolicyError::NoApprovers { stage: 1 }),
        },
        Case {
            name: "fallback is only the requester: NoApprovers",
            config_toml: THIN_FALLBACK,
            app: "db",
            roles: &["ivan-only"],
            requester: "ivan@example.com",
            manager: None,
            expect: Err(PolicyError::NoApprovers { stage: 1 }),
        },
        Case {
            name: "All of a one-person group, requester elsewhere: that person",
            config_toml: THIN_FALLBACK,
            app: "db",
            roles: &["solo-all"],
            requester: "ivan@example.com",
            manager: None,
            expect: stages(vec![stage(&["sam@example.com"], 1, "group:solo")], 30 * DAY),
        },
        Case {
            name: "All of a group emptied by the requester: every (one) fallback approver",
            config_toml: THIN_FALLBACK,
            app: "db",
            roles: &["solo-all"],
            requester: "sam@example.com",
            manager: None,
            expect: stages(
                vec![fallback(&["ivan@example.com"], 1, "ivan@example.com")],
                30 * DAY,
            ),
        },
        // --- Required::All
        Case {
            name: "All resolves to every eligible approver; role stages override the app's",
            config_toml: CATALOG,
            app: "github",
            roles: &["maintainer"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![
                    stage(&["bob@example.com", "dana@example.com"], 1, "owners"),
                    stage(
                        &["bob@example.com", "carol@example.com"],
                        2,
                        "group:eng-leads",
                    ),
                ],
                DAY,
            ),
        },
        Case {
            name: "All after excluding the requester from owners and group",
            config_toml: CATALOG,
            app: "github",
            roles: &["maintainer"],
            requester: "bob@example.com",
            manager: None,
            expect: stages(
                vec![
                    stage(&["dana@example.com"], 1, "owners"),
                    stage(&["carol@example.com"], 1, "group:eng-leads"),
                ],
                DAY,
            ),
        },
        Case {
            name: "All with a missing manager: the remaining email is all",
            config_toml: CATALOG,
            app: "wiki",
            roles: &["boss"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![stage(&["olga@example.com"], 1, "olga@example.com")],
                30 * DAY,
            ),
        },
        Case {
            name: "All emptied by the requester: all of the fallback, labels per entry",
            config_toml: ALL_FALLBACK,
            app: "db",
            roles: &[],
            requester: "sam@example.com",
            manager: None,
            expect: stages(
                vec![fallback(
                    &["ivan@example.com", "ops@example.com"],
                    2,
                    "group:it, ops@example.com",
                )],
                30 * DAY,
            ),
        },
        // --- rule 3: several roles
        Case {
            name: "concatenation in role order",
            config_toml: CATALOG,
            app: "github",
            roles: &["maintainer", "write"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![
                    stage(&["bob@example.com", "dana@example.com"], 1, "owners"),
                    stage(
                        &["bob@example.com", "carol@example.com"],
                        2,
                        "group:eng-leads",
                    ),
                    leads(),
                ],
                DAY,
            ),
        },
        Case {
            name: "concatenation follows the requested order",
            config_toml: CATALOG,
            app: "github",
            roles: &["write", "maintainer"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![
                    leads(),
                    stage(&["bob@example.com", "dana@example.com"], 1, "owners"),
                    stage(
                        &["bob@example.com", "carol@example.com"],
                        2,
                        "group:eng-leads",
                    ),
                ],
                DAY,
            ),
        },
        Case {
            name: "roles sharing the app stages: deduped, cap is the min",
            config_toml: CATALOG,
            app: "github",
            roles: &["write", "triage"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(vec![leads()], 3 * DAY),
        },
        Case {
            name: "a stage identical to a later role's stage is asked once",
            config_toml: CATALOG,
            app: "github",
            roles: &["billing", "write"],
            requester: "eve@example.com",
            manager: Some("mia@example.com"),
            expect: stages(
                vec![stage(&["mia@example.com"], 1, "manager"), leads()],
                7 * DAY,
            ),
        },
        Case {
            name: "same people written differently: deduped, labels merged",
            config_toml: CATALOG,
            app: "github",
            roles: &["write", "by-email"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![stage(
                    &["bob@example.com", "carol@example.com"],
                    1,
                    "group:eng-leads, carol@example.com, bob@example.com",
                )],
                7 * DAY,
            ),
        },
        Case {
            name: "same people, different count: both kept",
            config_toml: CATALOG,
            app: "github",
            roles: &["security", "write"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![
                    stage(
                        &["bob@example.com", "carol@example.com"],
                        2,
                        "group:eng-leads",
                    ),
                    leads(),
                ],
                7 * DAY,
            ),
        },
        Case {
            name: "duplicate role ids count once",
            config_toml: CATALOG,
            app: "github",
            roles: &["write", "write"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(vec![leads()], 7 * DAY),
        },
        // --- auto_approve
        Case {
            name: "auto_approve single role",
            config_toml: CATALOG,
            app: "github",
            roles: &["read"],
            requester: "eve@example.com",
            manager: None,
            expect: auto(7 * DAY),
        },
        Case {
            name: "auto_approve every role: still auto, min cap",
            config_toml: CATALOG,
            app: "github",
            roles: &["read", "pages"],
            requester: "eve@example.com",
            manager: None,
            expect: auto(2 * DAY),
        },
        Case {
            name: "mixed: not auto, only the non-auto role's stages",
            config_toml: CATALOG,
            app: "github",
            roles: &["pages", "maintainer"],
            requester: "eve@example.com",
            manager: None,
            expect: stages(
                vec![
                    stage(&["bob@example.com", "dana@example.com"], 1, "owners"),
                    stage(
                        &["bob@example.com", "carol@example.com"],
                        2,
                        "group:eng-leads",
                    ),
                ],
                DAY,
            ),
        },
        // --- rule 1: deny_requesters
        Case {
            name: "denied by email, any case",
            config_toml: CATALOG,
            app: "github",
            roles: &["write"],
            requester: "MALLORY@example.COM",
            manager: None,
            expect: Err(PolicyError::Denied {
                app: "GitHub".into(),
                rule: "mallory@example.com".into(),
            }),
        },
        Case {
            name: "denied by group, any case",
            config_toml: CATALOG,
            app: "github",
            roles: &["write"],
            requester: "Zed@Contractor.Example",
            manager: None,
            expect: Err(PolicyError::Denied {
                app: "GitHub".into(),
                rule: "group:contractors".into(),
            }),
        },
        Case {
            name: "deny comes before role checks and auto_approve",
            config_toml: CATALOG,
            app: "github",
            roles: &["read"],
            requester: "zed@contractor.example",
            manager: None,
            expect: Err(PolicyError::Denied {
                app: "GitHub".into(),
                rule: "group:contractors".into(),
            }),
        },
        Case {
            name: "deny comes before NoRoles",
            config_toml: CATALOG,
            app: "github",
            roles: &[],
            requester: "zed@contractor.example",
            manager: None,
            expect: Err(PolicyError::Denied {
                app: "GitHub".into(),
                rule: "group:contractors".into(),
            }),
        },
        Case {
            name: "deny list of another app does not apply",
            config_toml: CATALOG,
            app: "wiki",
            roles: &["edit"],
            requester: "zed@contractor.example",
            manager: None,
            expect: stages(vec![stage(&["dana@example.com"], 1, "owners")], 30 * DAY),
        },
        // --- rule 2: roles
        Case {
            name: "no roles on an app with roles",
            config_toml: CATALOG,
            app: "github",
            roles: &[],
            requester: "eve@example.com",
            manager: None,
            expect: Err(PolicyError::NoRoles),
        },
        Case {
            name: "unknown role",
            config_toml: CATALOG,
            app: "github",
            roles: &["write", "owner"],
            requester: "eve@example.com",
            manager: None,
            expect: Err(PolicyError::UnknownRole {
                app: "GitHub".into(),
                role: "owner".into(),
            }),
        },
        Case {
            name: "role ids are exact (not case-folded)",
            config_toml: CATALOG,
            app: "github",
            roles: &["Write"],
            requester: "eve@example.com",
            manager: None,
            expect: Err(PolicyError::UnknownRole {
                app: "GitHub".into(),
                role: "Write".into(),
            }),
        },
        Case {
            name: "unknown role on an app without roles",
            config_toml: CATALOG,
            app: "vpn",
            roles: &["admin"],
            requester: "eve@example.com",
            manager: None,
            expect: Err(PolicyError::UnknownRole {
                app: "vpn".into(),
                role: "admin".into(),
            }),
        },
    ]
}

#[test]
fn plan_table() {
    let mut failures = Vec::new();
    for case in plan_cases() {
        let config = config(case.config_toml);
        let app = app(&config, case.app);
        let requester = Requester {
            email: case.requester,
            manager: case.manager,
        };
        let got = plan(&config, app, &ids(case.roles), &requester);
        if got != case.expect {
            failures.push(format!(
                "{}:\n   got {got:?}\n  want {:?}",
                case.name, case.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn plan_survives_json_round_trip() {
    let config = config(CATALOG);
    let requester = Requester {
        email: "eve@example.com",
        manager: None,
    };
    let Ok(p) = plan(
        &config,
        app(&config, "github"),
        &ids(&["billing"]),
        &requester,
    ) else {
        panic!("plan failed");
    };
    let json = serde_json::to_string(&p).expect("serialize");
    let back: Plan = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, p);
    assert!(json.contains(r#""fallback":true"#), "{json}");
}

#[test]
fn error_messages() {
    let cases = [
        (
            PolicyError::Denied {
                app: "GitHub".into(),
                rule: "group:contractors".into(),
            },
            "you may not request GitHub: group:contractors",
        ),
        (PolicyError::NoRoles, "choose at least one role"),
        (
            PolicyError::UnknownRole {
                app: "GitHub".into(),
                role: "owner".into(),
            },
            "unknown role `owner` for GitHub",
        ),
        (
            PolicyError::NoApprovers { stage: 2 },
            "no one can approve stage 2 of this request",
        ),
    ];
    for (err, want) in cases {
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn authority_table() {
    let config = config(CATALOG);
    // Stage 0: owners {bob, dana}; stage 1: eng-leads {bob, carol}, all.
    let requester = Requester {
        email: "eve@example.com",
        manager: None,
    };
    let Ok(p) = plan(
        &config,
        app(&config, "github"),
        &ids(&["maintainer"]),
        &requester,
    ) else {
        panic!("plan failed");
    };
    struct AuthCase {
        name: &'static str,
        stage: usize,
        requester: &'static str,
        actor: &'static str,
        expect: Authority,
    }
    let cases = [
        AuthCase {
            name: "requester",
            stage: 0,
            requester: "eve@example.com",
            actor: "EVE@example.com",
            expect: Authority::Requester,
        },
        AuthCase {
            name: "requester who is an admin (direct)",
            stage: 0,
            requester: "secops@example.com",
            actor: "SecOps@Example.com",
            expect: Authority::Requester,
        },
        AuthCase {
            name: "requester who is an admin (group)",
            stage: 0,
            requester: "Alice@example.com",
            actor: "alice@example.com",
            expect: Authority::Requester,
        },
        AuthCase {
            name: "requester listed as approver in the plan still never approves",
            stage: 0,
            requester: "bob@example.com",
            actor: "bob@example.com",
            expect: Authority::Requester,
        },
        AuthCase {
            name: "approver of the current stage, any case",
            stage: 0,
            requester: "eve@example.com",
            actor: "Dana@Example.com",
            expect: Authority::Approver,
        },
        AuthCase {
            name: "approver of another stage only",
            stage: 1,
            requester: "eve@example.com",
            actor: "dana@example.com",
            expect: Authority::None,
        },
        AuthCase {
            name: "approver of the second stage",
            stage: 1,
            requester: "eve@example.com",
            actor: "carol@example.com",
            expect: Authority::Approver,
        },
        AuthCase {
            name: "admin by email",
            stage: 0,
            requester: "eve@example.com",
            actor: "secops@example.com",
            expect: Authority::Admin,
        },
        AuthCase {
            name: "admin by group",
            stage: 1,
            requester: "eve@example.com",
            actor: "ALICE@example.com",
            expect: Authority::Admin,
        },
        AuthCase {
            name: "outsider",
            stage: 0,
            requester: "eve@example.com",
            actor: "zed@contractor.example",
            expect: Authority::None,
        },
        AuthCase {
            name: "stage out of range: approver is not",
            stage: 2,
            requester: "eve@example.com",
            actor: "bob@example.com",
            expect: Authority::None,
        },
        AuthCase {
            name: "stage out of range: admin still admin",
            stage: 7,
            requester: "eve@example.com",
            actor: "secops@example.com",
            expect: Authority::Admin,
        },
        AuthCase {
            name: "unlinked actor (no email) has no authority",
            stage: 0,
            requester: "",
            actor: "  ",
            expect: Authority::None,
        },
    ];
    for c in cases {
        assert_eq!(
            authority(&config, &p, c.stage, c.requester, c.actor),
            c.expect,
            "{}",
            c.name
        );
    }
}

#[test]
fn authority_on_auto_plan_is_admin_or_nothing() {
    let config = config(CATALOG);
    let p = Plan {
        stages: Vec::new(),
        auto_approve: true,
        max_duration_secs: 60,
    };
    assert_eq!(
        authority(&config, &p, 0, "eve@example.com", "bob@example.com"),
        Authority::None
    );
    assert_eq!(
        authority(&config, &p, 0, "eve@example.com", "secops@example.com"),
        Authority::Admin
    );
}

#[test]
fn duration_cap_table() {
    let config = config(CATALOG);
    let github = app(&config, "github");
    let vpn = app(&config, "vpn");
    let d = |secs| Some(Duration::from_secs(secs));
    let cases: [(&str, &AppConfig, &[&str], Option<Duration>); 8] = [
        ("no roles: the app's cap", github, &[], d(7 * DAY)),
        ("app without roles: the app's cap", vpn, &[], d(30 * DAY)),
        (
            "role inheriting the app's cap",
            github,
            &["write"],
            d(7 * DAY),
        ),
        ("role with its own cap", github, &["triage"], d(3 * DAY)),
        (
            "min over roles",
            github,
            &["write", "maintainer", "triage"],
            d(DAY),
        ),
        (
            "min over auto roles",
            github,
            &["read", "pages"],
            d(2 * DAY),
        ),
        ("unknown role", github, &["nope"], None),
        ("unknown among known", github, &["write", "nope"], None),
    ];
    for (name, app, roles, want) in cases {
        assert_eq!(duration_cap(app, &ids(roles)), want, "{name}");
    }
}

#[test]
fn a_chosen_approver_out_of_reach_is_the_requesters_to_replace_not_a_fallback() {
    let c = config(CATALOG);
    let plan = policy_plan(&c, "github", &["write"], "ann@example.com");
    // Only Bob has a Slack account; Ann chose Carol.
    let reachable: HashMap<String, String> = [
        ("bob@example.com".to_string(), "UBOB".to_string()),
        ("ivan@example.com".to_string(), "UIVAN".to_string()),
    ]
    .into();
    let chosen = [Some(vec!["carol@example.com".to_string()])];
    let err = reachable_plan(&c, plan.clone(), &reachable, &chosen, "ann@example.com")
        .expect_err("a field error");
    assert!(err.starts_with("Choose"), "{err}");
    // Without a choice, a stage nobody can be reached for falls back.
    let only_it: HashMap<String, String> =
        [("ivan@example.com".to_string(), "UIVAN".to_string())].into();
    let (fell_back, stages) = reachable_plan(&c, plan, &only_it, &[None], "ann@example.com")
        .expect("the fallback approvers can be reached");
    assert_eq!(stages.len(), 1);
    assert!(fell_back.stages[0].fallback);
    assert_eq!(fell_back.stages[0].approvers, ["ivan@example.com"]);
}

#[test]
fn still_allowed_refuses_a_gone_app_a_gone_role_and_a_denied_requester() {
    let c = config(CATALOG);
    assert!(still_allowed(&c, "github", &ids(&["write"]), "ann@example.com").is_ok());
    let gone = still_allowed(&c, "notion", &[], "ann@example.com").expect_err("app gone");
    assert!(gone.contains("no longer in the catalog"), "{gone}");
    let role = still_allowed(&c, "github", &ids(&["root"]), "ann@example.com").expect_err("role");
    assert!(role.contains("role root"), "{role}");
    let denied =
        still_allowed(&c, "github", &ids(&["write"]), "mallory@example.com").expect_err("denied");
    assert!(denied.contains("may no longer request"), "{denied}");
}

fn policy_plan(c: &Config, app_id: &str, roles: &[&str], email: &str) -> Plan {
    plan(
        c,
        app(c, app_id),
        &ids(roles),
        &Requester {
            email,
            manager: None,
        },
    )
    .expect("a plan")
}
