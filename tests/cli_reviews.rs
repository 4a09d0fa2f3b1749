//! `accessd reviews create|list|show|close|report` as an operator runs them:
//! the real binary, without any Slack token, against a `file` source synced
//! with `accessd sources sync` first, and a database the test also opens
//! directly (to record decisions the daemon would, and to check the jobs).

#[path = "support/cli.rs"]
mod cli;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use cli::{parse_csv, Cli};
use serde_json::{json, Value};

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// GitHub has two owners (who also have GitHub accounts), Okta and VPN one;
/// nobody has a VPN account.
const CONFIG: &str = r##"[slack]
[database]
path = "accessd.db"

[requests]
admins = ["secops@example.com"]

[[apps]]
id = "github"
name = "GitHub"
owners = ["dana@example.com", "erin@example.com"]

[[apps]]
id = "okta"
name = "Okta"
owners = ["frank@example.com"]

[[apps]]
id = "vpn"
name = "VPN"
owners = ["ivan@example.com"]

[[sources]]
id = "hr"
kind = "file"
path = "people.json"
schedule = "every 15m"
authoritative = true
"##;

/// GitHub accounts with two entitlements each, 40 of them reviewable.
const GITHUB_ACCOUNTS: usize = 40;
const ENTITLEMENTS: usize = 2;

fn account(app: &str, id: &str, email: &str, name: &str, manager: Option<&str>) -> Value {
    let entitlements = if app == "github" {
        json!(["gh-readers", "gh-writers"])
    } else {
        json!(["okta-users"])
    };
    json!({ "app": app, "id": id, "email": email, "name": name, "status": "active",
            "manager": manager, "entitlements": entitlements })
}

/// g1..g38 plus the two owners on GitHub (g1's name has a comma, g2 has an
/// `=cmd` entitlement, one deprovisioned account is never reviewed), and
/// o1..o5 on Okta with a manager, o6 without.
fn people() -> Value {
    let mut accounts = Vec::new();
    for i in 1..=GITHUB_ACCOUNTS - 2 {
        let mut a = account(
            "github",
            &format!("g{i}"),
            &format!("g{i}@example.com"),
            &format!("Person {i}"),
            Some("boss@example.com"),
        );
        if i == 1 {
            a["name"] = json!("Lee, Ann");
        }
        if i == 2 {
            a["entitlements"] = json!(["=cmd", "gh-readers"]);
        }
        accounts.push(a);
    }
    accounts.push(account(
        "github",
        "g-dana",
        "dana@example.com",
        "Dana",
        None,
    ));
    accounts.push(account(
        "github",
        "g-erin",
        "erin@example.com",
        "Erin",
        None,
    ));
    let mut gone = account("github", "g-gone", "gone@example.com", "Gone", None);
    gone["status"] = json!("deprovisioned");
    accounts.push(gone);
    for i in 1..=5 {
        accounts.push(account(
            "okta",
            &format!("o{i}"),
            &format!("o{i}@example.com"),
            &format!("Okta {i}"),
            Some(if i == 1 {
                "boss@example.com"
            } else {
                "chief@example.com"
            }),
        ));
    }
    accounts.push(account("okta", "o6", "o6@example.com", "Okta 6", None));
    json!({ "apps": [ { "id": "github", "name": "GitHub" }, { "id": "okta", "name": "Okta" } ],
            "accounts": accounts })
}

/// Config and synced source: the snapshot a campaign draws its items from.
fn synced() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("accessd.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let fx = Fixture { dir, config };
    std::fs::write(
        fx.dir.path().join("people.json"),
        serde_json::to_vec_pretty(&people()).unwrap(),
    )
    .unwrap();
    fx.cli().expect(&["sources", "sync"], 0);
    fx
}

impl Fixture {
    fn cli(&self) -> Cli {
        Cli::new(&self.config)
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("accessd.db")
    }

    fn sqlite(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn
    }

    fn campaign_count(&self) -> i64 {
        self.sqlite()
            .query_row("SELECT COUNT(*) FROM review_campaigns", [], |r| r.get(0))
            .unwrap()
    }
}

fn recent(at: &str) -> bool {
    let at: DateTime<Utc> = at.parse().unwrap();
    (Utc::now() - at).num_seconds().abs() < 120
}

const COLUMNS: [&str; 17] = [
    "campaign_id",
    "campaign_name",
    "item",
    "app",
    "source",
    "account_id",
    "email",
    "name",
    "entitlement",
    "reviewer",
    "decision",
    "comment",
    "decided_by",
    "decided_at",
    "reassigned_from",
    "reassign_reason",
    "revoke_outcome",
];

#[test]
fn a_campaign_from_create_to_report_and_close() {
    let fx = synced();
    let items = GITHUB_ACCOUNTS * ENTITLEMENTS;

    let out = fx.cli().expect(
        &[
            "reviews",
            "create",
            "--app",
            "github",
            "--reviewer",
            "owners",
            "--due",
            "14d",
            "--name",
            "Q4 GitHub",
        ],
        0,
    );
    let prefix = format!("R-1: \"Q4 GitHub\", {items} items across 2 reviewers, due ");
    assert!(out.starts_with(&prefix), "{out}");
    assert!(
        out.ends_with("; the running daemon sends the reviewer DMs within seconds\n"),
        "{out}"
    );

    // list: one open campaign, nothing decided yet.
    let list = fx.cli().json(&["reviews", "list", "--json"], 0);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let c = &list[0];
    assert_eq!(c["id"], "R-1");
    assert_eq!(c["name"], "Q4 GitHub");
    assert_eq!(c["apps"], json!(["github"]));
    assert_eq!(c["status"], "open");
    assert_eq!(c["reviewer"], "owners");
    assert_eq!(c["owner"], "secops@example.com");
    assert_eq!(c["created_by"], cli::os_actor().as_str());
    assert_eq!(c["items"], items);
    assert_eq!(c["decided"], 0);
    assert_eq!(c["reviewers"], 2);
    let due: DateTime<Utc> = c["due_at"].as_str().unwrap().parse().unwrap();
    let hours = (due - Utc::now()).num_hours();
    assert!((14 * 24 - 1..=14 * 24).contains(&hours), "due in {hours}h");
    assert_eq!(
        fx.cli()
            .json(&["reviews", "list", "--status", "closed", "--json"], 0),
        json!([])
    );

    // Nobody reviews their own access: the owners' own accounts go to the
    // other owner; everyone else's to the first owner.
    let show = fx.cli().json(&["reviews", "show", "R-1", "--json"], 0);
    assert_eq!(show["id"], "R-1");
    assert_eq!(show["undecided"], items);
    let reviewers: Vec<(String, u64)> = show["reviewers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reviewer"].as_str().unwrap().to_owned(),
                r["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reviewers,
        [
            ("dana@example.com".to_owned(), (items - 2) as u64),
            ("erin@example.com".to_owned(), 2)
        ]
    );
    let shown = show["items"].as_array().unwrap();
    assert_eq!(shown.len(), items);
    for item in shown {
        assert_ne!(item["email"], item["reviewer"], "{item}");
        assert!(item["id"].as_str().unwrap().starts_with("RI-"));
        assert_eq!(item["app"], "github");
        assert_eq!(item["source"], "hr");
        assert_eq!(item["decision"], "undecided");
        let expected = match item["email"].as_str().unwrap() {
            "dana@example.com" => "erin@example.com",
            _ => "dana@example.com",
        };
        assert_eq!(item["reviewer"], expected, "{item}");
    }
    assert!(!shown.iter().any(|i| i["account_id"] == "g-gone"));
    let g2: Vec<&Value> = shown.iter().filter(|i| i["account_id"] == "g2").collect();
    assert_eq!(g2.len(), 2);
    assert_eq!(g2[0]["entitlement"], "=cmd");
    assert_eq!(g2[0]["email"], "g2@example.com");

    // What the daemon would record: g1's readers kept, g3's readers revoked
    // and failed, g4's readers revoked with the revoke still to run.
    let conn = fx.sqlite();
    let decide = |account: &str, decision: &str, outcome: Option<&str>| {
        conn.execute(
            "UPDATE review_items SET decision = ?2, comment = 'ok, \"checked\"',
                 decided_by = 'dana@example.com', decided_at = '2026-03-04T05:06:07.000Z',
                 revoke_outcome = ?3
             WHERE account_id = ?1 AND entitlement = 'gh-readers'",
            rusqlite::params![account, decision, outcome],
        )
        .unwrap()
    };
    assert_eq!(decide("g1", "keep", None), 1);
    assert_eq!(decide("g3", "revoke", Some("failed: 403 from SCIM")), 1);
    assert_eq!(decide("g4", "revoke", None), 1);

    // CSV: the documented header, one row per item, RFC 4180 quoting, and
    // no field a spreadsheet would run as a formula.
    let csv = fx
        .cli()
        .expect(&["reviews", "report", "R-1", "--format", "csv"], 0);
    assert!(csv.contains(",\"Lee, Ann\","), "{csv}");
    assert!(csv.contains(",'=cmd,"), "{csv}");
    assert!(csv.contains(",\"ok, \"\"checked\"\"\","), "{csv}");
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], COLUMNS);
    assert_eq!(rows.len(), 1 + items);
    let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    let row = |account: &str, entitlement: &str| {
        rows.iter()
            .find(|r| r[col("account_id")] == account && r[col("entitlement")] == entitlement)
            .unwrap_or_else(|| panic!("no row {account} {entitlement}"))
    };
    let g1 = row("g1", "gh-readers");
    assert_eq!(g1[col("campaign_id")], "R-1");
    assert_eq!(g1[col("campaign_name")], "Q4 GitHub");
    assert!(g1[col("item")].starts_with("RI-"));
    assert_eq!(g1[col("name")], "Lee, Ann");
    assert_eq!(g1[col("email")], "g1@example.com");
    assert_eq!(g1[col("reviewer")], "dana@example.com");
    assert_eq!(g1[col("decision")], "keep");
    assert_eq!(g1[col("comment")], "ok, \"checked\"");
    assert_eq!(g1[col("decided_by")], "dana@example.com");
    assert_eq!(g1[col("decided_at")], "2026-03-04T05:06:07Z");
    assert_eq!(row("g2", "'=cmd")[col("decision")], "undecided");
    assert_eq!(
        row("g3", "gh-readers")[col("revoke_outcome")],
        "failed: 403 from SCIM"
    );

    // --output writes the same report to a file.
    let path = fx.dir.path().join("r1.csv");
    let out = fx.cli().expect(
        &[
            "reviews",
            "report",
            "1",
            "--format",
            "csv",
            "--output",
            path.to_str().unwrap(),
        ],
        0,
    );
    assert!(out.starts_with(&format!("R-1: report of {items} items written to ")));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), csv);

    // JSON: the campaign, the summary and the same items.
    let report = fx
        .cli()
        .json(&["reviews", "report", "R-1", "--format", "json"], 0);
    assert_eq!(report["campaign"]["id"], "R-1");
    assert_eq!(report["campaign"]["decided"], 3);
    assert_eq!(
        report["summary"],
        json!({ "total": items, "kept": 1, "revoked": 2, "undecided": items - 3,
                "revoked_ok": 0, "revoked_failed": 1, "revoked_manual": 0, "revoke_pending": 1 })
    );
    let report_items = report["items"].as_array().unwrap();
    assert_eq!(report_items.len(), items);
    let keys: Vec<&String> = report_items[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), COLUMNS.len());
    assert!(COLUMNS.iter().all(|c| report_items[0].get(*c).is_some()));

    // close: the daemon's close timer moves to now, audited.
    let out = fx.cli().expect(&["reviews", "close", "R-1"], 0);
    assert_eq!(
        out,
        "R-1: closing; the running daemon closes it within seconds\n"
    );
    let jobs: Vec<(String, String)> = conn
        .prepare(
            "SELECT run_at, payload FROM jobs
             WHERE kind = 'review_close' AND subject = 'R-1' AND status = 'pending'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(jobs.len(), 1, "exactly one pending close job: {jobs:?}");
    assert!(recent(&jobs[0].0), "{jobs:?}");
    assert_eq!(jobs[0].1, "null");
    let (actor, detail): (String, String) = conn
        .query_row(
            "SELECT actor, detail FROM audit_log
             WHERE action = 'review.close_requested' AND subject = 'R-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(actor, cli::os_actor());
    assert_eq!(
        serde_json::from_str::<Value>(&detail).unwrap()["name"],
        "Q4 GitHub"
    );
    let created: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'review.created' AND actor = ?1",
            [cli::os_actor()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(created, 1);

    // Once the daemon has closed it, there is nothing left to close.
    conn.execute(
        "UPDATE review_campaigns SET status = 'closed', closed_at = '2026-03-05T00:00:00.000Z'",
        [],
    )
    .unwrap();
    let (_, err) = fx.cli().expect_both(&["reviews", "close", "R-1"], 1);
    assert!(err.contains("R-1 is already closed"), "{err}");
    let (_, err) = fx.cli().expect_both(&["reviews", "close", "R-99"], 1);
    assert!(err.contains("no review campaign R-99"), "{err}");
    let (_, err) = fx.cli().expect_both(&["reviews", "show", "R-99"], 1);
    assert!(err.contains("no review campaign R-99"), "{err}");
    let closed = fx
        .cli()
        .json(&["reviews", "list", "--status", "closed", "--json"], 0);
    assert_eq!(closed[0]["id"], "R-1");
}

#[test]
fn manager_reviews_come_from_the_file_sources_manager_field() {
    let fx = synced();
    let created = fx.cli().json(
        &[
            "reviews",
            "create",
            "--app",
            "Okta",
            "--reviewer",
            "manager",
            "--due",
            "7d",
            "--owner",
            "Frank@Example.com",
            "--json",
        ],
        0,
    );
    assert_eq!(created["id"], "R-1");
    assert_eq!(created["items"], 6);
    assert_eq!(created["reviewer"], "manager");
    assert_eq!(created["owner"], "frank@example.com");
    // boss, chief, and the owner for o6 who has no manager.
    assert_eq!(created["reviewers"], 3);
    let show = fx.cli().json(&["reviews", "show", "1", "--json"], 0);
    let reviewer_of = |account: &str| {
        show["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["account_id"] == account)
            .map(|i| i["reviewer"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(reviewer_of("o1"), "boss@example.com");
    assert_eq!(reviewer_of("o2"), "chief@example.com");
    assert_eq!(reviewer_of("o6"), "frank@example.com");
}

#[test]
fn bad_options_are_usage_errors_that_name_the_option() {
    let fx = synced();
    let create = |extra: &[&str]| {
        let mut args = vec!["reviews", "create"];
        args.extend_from_slice(extra);
        fx.cli().expect_both(&args, 2).1
    };
    let err = create(&["--app", "nope", "--reviewer", "owners", "--due", "14d"]);
    assert!(err.contains("--app") && err.contains("nope"), "{err}");
    let err = create(&["--app", "github", "--reviewer", "owners", "--due", "0s"]);
    assert!(
        err.contains("--due") && err.contains("greater than zero"),
        "{err}"
    );
    let err = create(&["--app", "github", "--reviewer", "owners", "--due", "soon"]);
    assert!(err.contains("--due"), "{err}");
    let err = create(&["--app", "github", "--reviewer", "nobody", "--due", "14d"]);
    assert!(err.contains("--reviewer"), "{err}");
    let err = create(&[
        "--app",
        "github",
        "--reviewer",
        "owners",
        "--due",
        "14d",
        "--owner",
        "not-an-email",
    ]);
    assert!(err.contains("--owner"), "{err}");
    // An app nobody has an account in: nothing to review.
    let err = create(&["--app", "vpn", "--reviewer", "owners", "--due", "14d"]);
    assert!(
        err.contains("--app") && err.contains("no accounts"),
        "{err}"
    );
    assert_eq!(fx.campaign_count(), 0);
}

#[test]
fn a_campaign_may_keep_its_own_reminders() {
    let fx = synced();
    let base = [
        "reviews",
        "create",
        "--app",
        "github",
        "--reviewer",
        "owners",
        "--due",
        "14d",
    ];
    let both: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--remind-every", "1d", "--no-reminders"])
        .collect();
    fx.cli().expect(&both, 2);
    let own: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--remind-every", "3d", "--closing-soon", "12h", "--json"])
        .collect();
    let created = fx.cli().json(&own, 0);
    assert_eq!(created["remind_every_secs"], 3 * 86_400);
    assert_eq!(created["closing_soon_secs"], 12 * 3600);
    assert_eq!(created["reminders"], true);
    let quiet: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--no-reminders", "--json"])
        .collect();
    let quiet = fx.cli().json(&quiet, 0);
    assert_eq!(quiet["reminders"], false);
    assert_eq!(quiet["remind_every_secs"], serde_json::Value::Null);
    let shown = fx.cli().expect(&["reviews", "show", "R-1"], 0);
    assert!(
        shown.contains("reminders: every 3days; closing soon: 12h before"),
        "{shown}"
    );
    let shown = fx.cli().expect(&["reviews", "show", "R-2"], 0);
    assert!(
        shown.contains("reminders: none; closing soon: as [reviews]"),
        "{shown}"
    );
}
