//! `accessd tickets list|show` and `accessd users list|link` as an operator
//! runs them: the real binary, without any Slack token, against a database
//! filled through the store.

#[path = "support/cli.rs"]
mod cli;

use std::path::PathBuf;

use accessd::domain::policy::{Plan, StagePlan};
use accessd::domain::ticket::{Kind, Status, Verdict};
use accessd::store::{
    Actor, AuditEvent, Created, Decided, DecisionInput, Effects, NewTicket, Store,
};
use cli::{utf8, Cli};
use serde_json::Value;

struct Fixture {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fixture {
    fn cli(&self) -> Cli {
        Cli::new(&self.config)
    }
}

fn plan(stages: &[(&[&str], usize)]) -> Plan {
    Plan {
        stages: stages
            .iter()
            .map(|(approvers, required)| StagePlan {
                approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
                required: *required,
                fallback: false,
                source: "owners".into(),
            })
            .collect(),
        auto_approve: false,
        max_duration_secs: 24 * 3600,
    }
}

fn request(slack_id: &str, email: &str, app: &str, roles: &[&str], plan: Plan) -> NewTicket {
    NewTicket {
        requester_slack_id: slack_id.into(),
        requester_email: email.into(),
        app_id: app.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        reason: "on call this week".into(),
        duration_secs: 8 * 3600,
        plan,
        status: Status::Pending,
        kind: Kind::Request,
        parent: None,
        reference: None,
    }
}

async fn create(store: &Store, new: NewTicket) -> i64 {
    let created = store
        .create_ticket(new, |t| Effects {
            audit: vec![AuditEvent::new(
                t.requester_email.clone(),
                "ticket.create",
                t.reference(),
                serde_json::json!({ "app": t.app_id }),
            )],
            ..Effects::default()
        })
        .await
        .unwrap();
    match created {
        Created::New(t) => t.id,
        Created::Duplicate(t) => panic!("unexpected duplicate of {}", t.reference()),
    }
}

/// T-1: ann's GitHub admin request, approved by bob. T-2: carol's AWS read
/// request, pending at stage 1 of 2.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("accessd.toml");
    std::fs::write(&config, "[slack]\n[database]\npath = \"accessd.db\"\n").unwrap();
    let store = Store::open(&dir.path().join("accessd.db")).unwrap();

    let t1 = create(
        &store,
        request(
            "U0ANN",
            "ann@example.com",
            "github",
            &["admin"],
            plan(&[(&["bob@example.com"], 1)]),
        ),
    )
    .await;
    let decided = store
        .decide(
            t1,
            DecisionInput {
                actor: Actor {
                    slack_id: "U0BOB".into(),
                    email: "bob@example.com".into(),
                },
                verdict: Verdict::Approve,
                comment: Some("ok for the incident".into()),
                duration_secs: None,
            },
            |_| Ok(()),
            |_, _| Effects::default(),
        )
        .await
        .unwrap();
    assert!(matches!(decided, Decided::Applied { .. }), "{decided:?}");

    create(
        &store,
        request(
            "U0CAROL",
            "carol@example.com",
            "aws",
            &["read"],
            plan(&[(&["dan@example.com"], 1), (&["erin@example.com"], 1)]),
        ),
    )
    .await;
    store.close().await;
    Fixture { _dir: dir, config }
}

#[tokio::test]
async fn tickets_list_prints_a_table_and_json_newest_first() {
    let fx = fixture().await;

    let table = fx.cli().expect(&["tickets", "list"], 0);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for header in [
        "ID",
        "STATUS",
        "APP",
        "ROLES",
        "REQUESTER",
        "STAGE",
        "CREATED",
    ] {
        assert!(lines[0].contains(header), "{table}");
    }
    assert!(lines[1].starts_with("T-2 "), "newest first: {table}");
    assert!(lines[2].starts_with("T-1 "), "{table}");
    for needle in ["approved", "github", "admin", "ann@example.com", "1/1"] {
        assert!(lines[2].contains(needle), "{needle}: {table}");
    }
    assert!(lines[1].contains("1/2"), "{table}");

    let all = fx.cli().json(&["tickets", "list", "--json"], 0);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    let t1 = &all[1];
    assert_eq!(t1["id"], "T-1");
    assert_eq!(t1["status"], "approved");
    assert_eq!(t1["app"], "github");
    assert_eq!(t1["roles"], serde_json::json!(["admin"]));
    assert_eq!(t1["requester"], "ann@example.com");
    assert_eq!(t1["requester_slack_id"], "U0ANN");
    assert_eq!(t1["reason"], "on call this week");
    assert_eq!(t1["duration"], "8h");
    assert_eq!(t1["stage"], 1);
    assert_eq!(t1["stages"], 1);
    let created = t1["created_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'));
    assert!(t1["decided_at"].is_string());
    let approval = &t1["approvals"][0];
    assert_eq!(approval["approver"], "bob@example.com");
    assert_eq!(approval["approver_slack_id"], "U0BOB");
    assert_eq!(approval["stage"], 1);
    assert_eq!(approval["decision"], "approve");
    assert_eq!(approval["comment"], "ok for the incident");
    assert!(approval["at"].is_string());
    assert_eq!(all[0]["decided_at"], Value::Null);
    assert_eq!(all[0]["stages"], 2);

    let pending = fx
        .cli()
        .json(&["tickets", "list", "--status", "pending", "--json"], 0);
    let ids: Vec<&str> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["T-2"]);

    let limited = fx
        .cli()
        .json(&["tickets", "list", "--limit", "1", "--json"], 0);
    assert_eq!(limited.as_array().unwrap().len(), 1);

    let none = fx
        .cli()
        .expect(&["tickets", "list", "--status", "expired"], 0);
    assert_eq!(none.trim(), "no tickets");
}

#[tokio::test]
async fn tickets_show_prints_plan_approvals_and_audit() {
    let fx = fixture().await;
    for id in ["T-1", "1"] {
        let text = fx.cli().expect(&["tickets", "show", id], 0);
        for needle in [
            "T-1",
            "approved",
            "ann@example.com (U0ANN)",
            "on call this week",
            "stage 1: 1 of bob@example.com",
            "approve  bob@example.com (U0BOB)",
            "ok for the incident",
            "ticket.create",
            "ticket.approve",
        ] {
            assert!(
                text.contains(needle),
                "{id}: {needle:?} missing in:\n{text}"
            );
        }
        assert!(!text.contains("T-2"), "{text}");
    }

    let detail = fx.cli().json(&["tickets", "show", "T-2", "--json"], 0);
    assert_eq!(detail["id"], "T-2");
    assert_eq!(detail["status"], "pending");
    assert_eq!(
        detail["plan"]["stages"][1]["approvers"][0],
        "erin@example.com"
    );
    assert_eq!(detail["plan"]["stages"][1]["stage"], 2);
    assert_eq!(detail["plan"]["stages"][1]["required"], 1);
    assert_eq!(detail["plan"]["stages"][1]["fallback"], false);
    let actions: Vec<&str> = detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["ticket.create"]);
}

#[tokio::test]
async fn tickets_usage_and_runtime_errors_have_their_exit_codes() {
    let fx = fixture().await;

    let out = fx.cli().run(&["tickets", "show", "T-99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        utf8(&out.stderr).contains("no ticket T-99"),
        "{}",
        utf8(&out.stderr)
    );

    let out = fx.cli().run(&["tickets", "show", "G-7"]);
    assert_eq!(out.status.code(), Some(2), "{}", utf8(&out.stderr));

    let out = fx.cli().run(&["tickets", "list", "--status", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    for status in ["pending", "approved", "rejected", "cancelled"] {
        assert!(utf8(&out.stderr).contains(status), "{}", utf8(&out.stderr));
    }

    let missing = Fixture {
        config: fx.config.with_file_name("absent.toml"),
        _dir: tempfile::tempdir().unwrap(),
    };
    let out = missing.cli().run(&["tickets", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", utf8(&out.stderr));
}

#[tokio::test]
async fn users_link_then_list_shows_the_manual_link() {
    let fx = fixture().await;

    let out = fx
        .cli()
        .expect(&["users", "link", "U0FRANK", "Frank@Example.com"], 0);
    assert!(
        out.contains("U0FRANK") && out.contains("frank@example.com"),
        "{out}"
    );
    assert!(out.contains("new link"), "{out}");
    let out = fx
        .cli()
        .expect(&["users", "link", "U0FRANK", "frank.b@example.com"], 0);
    assert!(out.contains("was frank@example.com"), "{out}");

    let links = fx.cli().json(&["users", "list", "--json"], 0);
    let links = links.as_array().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["id"], "U0FRANK");
    assert_eq!(links[0]["email"], "frank.b@example.com");
    assert_eq!(links[0]["source"], "manual");
    assert!(links[0]["refreshed_at"].is_string());
    let by = links[0]["linked_by"].as_str().unwrap();
    assert!(by == "cli" || by.starts_with("cli:"), "{by}");

    let table = fx.cli().expect(&["users", "list"], 0);
    assert!(
        table.contains("U0FRANK") && table.contains("manual"),
        "{table}"
    );

    // The link is audited, with the operator as the actor.
    let store = Store::open(&fx.config.with_file_name("accessd.db")).unwrap();
    let audit = store.audit_rows(None).await.unwrap();
    store.close().await;
    let link = audit.iter().find(|r| r.action == "user.link").unwrap();
    assert_eq!(
        (link.subject.as_str(), link.actor.as_str()),
        ("U0FRANK", by)
    );
}

#[tokio::test]
async fn users_link_validates_its_arguments() {
    let fx = fixture().await;
    for (slack_id, email) in [
        ("u0frank", "frank@example.com"),
        ("C0CHANNEL", "frank@example.com"),
        ("U", "frank@example.com"),
        ("U0FRANK", "frank"),
        ("U0FRANK", "frank@"),
        ("U0FRANK", "a@b@c"),
    ] {
        let out = fx.cli().run(&["users", "link", slack_id, email]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{slack_id} {email}: {}",
            utf8(&out.stderr)
        );
    }
    assert_eq!(
        fx.cli().json(&["users", "list", "--json"], 0),
        serde_json::json!([])
    );
}

#[tokio::test]
async fn store_commands_need_no_slack_tokens() {
    let fx = fixture().await;
    // The same environment is refused by a command that talks to Slack…
    let out = fx.cli().run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        utf8(&out.stderr).contains("SLACK_"),
        "{}",
        utf8(&out.stderr)
    );
    // …and accepted by the store commands.
    for args in [
        &["tickets", "list"][..],
        &["tickets", "list", "--json"],
        &["tickets", "show", "T-1"],
        &["users", "list"],
        &["users", "link", "U0GINA", "gina@example.com"],
    ] {
        fx.cli().expect(args, 0);
    }
}
