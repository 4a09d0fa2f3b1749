//! `accessd sources sync|list` as an operator runs them: the real binary,
//! without any Slack token, against a `file` source in a temp dir and a
//! database the test may also open directly.

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use cli::{utf8, Cli};
use serde_json::{json, Value};

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

const CONFIG: &str = r##"[slack]
[database]
path = "accessd.db"

[[sources]]
id = "hr"
kind = "file"
path = "people.json"
schedule = "every 15m"
authoritative = true

[alerts]
watchlist = ["dropbox"]
[alerts.channels]
watchlist_signup = "#sec-alerts"
"##;

/// A config with the `hr` source (and `extra` appended), nothing synced yet.
fn fixture_with(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("accessd.toml");
    std::fs::write(&config, format!("{CONFIG}{extra}")).unwrap();
    Fixture { dir, config }
}

fn fixture() -> Fixture {
    fixture_with("")
}

impl Fixture {
    fn cli(&self) -> Cli {
        Cli::new(&self.config)
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("accessd.db")
    }

    fn people(&self) -> PathBuf {
        self.dir.path().join("people.json")
    }

    fn write_people(&self, doc: &Value) {
        std::fs::write(self.people(), serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    }

    fn sqlite(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn
    }
}

/// `hr` accounts h1..=hN, all active, as DESIGN.md §4's document.
fn hr_accounts(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| hr_account(&format!("h{i}"), "active"))
        .collect()
}

fn hr_account(id: &str, status: &str) -> Value {
    json!({ "app": "hr", "id": id, "email": format!("{id}@example.com"),
            "name": format!("Person {id}"), "status": status,
            "manager": "boss@example.com", "entitlements": ["staff"] })
}

fn doc(accounts: Vec<Value>) -> Value {
    json!({ "apps": [ { "id": "hr", "name": "HR" } ], "accounts": accounts })
}

/// The `sources list --json` object of `id`.
fn listed(fx: &Fixture, id: &str) -> Value {
    let list = fx.cli().json(&["sources", "list", "--json"], 0);
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {list}"))
        .clone()
}

fn recent(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let at: DateTime<Utc> = text.parse().unwrap();
    (Utc::now() - at).num_seconds().abs() < 120
}

fn audit_rows(path: &Path) -> Vec<(String, String, String, Value)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT actor, action, subject, detail FROM audit_log ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| {
        let detail: String = r.get(3)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            serde_json::from_str(&detail).unwrap(),
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

#[test]
fn first_sync_is_a_silent_baseline_and_the_next_prints_exact_counts() {
    let fx = fixture();
    fx.write_people(&doc(hr_accounts(10)));

    let never = listed(&fx, "hr");
    assert_eq!(never["kind"], "file");
    assert_eq!(never["last_success_at"], Value::Null);
    assert_eq!(never["accounts"], Value::Null);

    let out = fx.cli().expect(&["sources", "sync"], 0);
    assert_eq!(
        out,
        "hr: baseline recorded: 10 accounts, 1 apps (no alerts on a first sync)\n"
    );

    // One added, one suspended, one gone.
    let mut accounts = hr_accounts(9);
    accounts[2] = hr_account("h3", "suspended");
    accounts.push(hr_account("h11", "active"));
    fx.write_people(&doc(accounts));
    let out = fx.cli().expect(&["sources", "sync", "hr"], 0);
    assert_eq!(
        out,
        "hr: +1 accounts, -1 accounts, 1 status changes, +0 / -0 entitlements, 0 new apps; \
         10 accounts now; 0 alerts raised, 0 resolved\n"
    );

    let hr = listed(&fx, "hr");
    assert_eq!(hr["kind"], "file");
    assert_eq!(hr["schedule"], "every 15m");
    assert_eq!(hr["authoritative"], true);
    assert_eq!(hr["app"], "hr");
    assert_eq!(hr["accounts"], 10);
    assert_eq!(hr["apps"], 1);
    assert_eq!(hr["failures"], 0);
    assert_eq!(hr["last_error"], Value::Null);
    assert!(recent(&hr["last_success_at"]), "{hr}");
    assert_eq!(hr["last_summary"]["accounts_added"], 1);

    let table = fx.cli().expect(&["sources", "list"], 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(lines[1].starts_with("hr  "), "{table}");
    assert!(lines[1].contains("every 15m"), "{table}");
    assert!(lines[1].contains(" yes "), "{table}");

    // One audit row per CLI sync, by the login name, with the outcome.
    let audit = audit_rows(&fx.db());
    assert_eq!(audit.len(), 2, "{audit:?}");
    for (actor, action, subject, _) in &audit {
        assert_eq!(
            (actor.as_str(), action.as_str(), subject.as_str()),
            (cli::os_actor().as_str(), "source.sync", "hr")
        );
    }
    assert_eq!(audit[0].3["outcome"], "baseline");
    assert_eq!(audit[1].3["outcome"], "applied");
    assert_eq!(audit[1].3["summary"]["status_changed"], 1);
    assert_eq!(audit[1].3["accept_mass_change"], false);
}

#[test]
fn a_broken_file_fails_and_keeps_the_last_good_snapshot() {
    let fx = fixture();
    fx.write_people(&doc(hr_accounts(10)));
    fx.cli().expect(&["sources", "sync", "hr"], 0);

    std::fs::write(fx.people(), "{ \"accounts\": [ {").unwrap();
    let out = fx.cli().run(&["sources", "sync", "hr"]);
    assert_eq!(out.status.code(), Some(1), "{}", utf8(&out.stderr));
    let text = utf8(&out.stdout);
    assert!(text.starts_with("hr: failed: "), "{text}");
    assert!(text.contains("people.json"), "{text}");
    assert!(
        utf8(&out.stderr).contains("hr (failed)"),
        "{}",
        utf8(&out.stderr)
    );

    let hr = listed(&fx, "hr");
    assert_eq!(hr["failures"], 1);
    assert!(
        hr["last_error"].as_str().unwrap().contains("people.json"),
        "{hr}"
    );
    assert!(recent(&hr["last_error_at"]), "{hr}");
    assert_eq!(hr["accounts"], 10);
    let table = fx.cli().expect(&["sources", "list"], 0);
    assert!(table.contains("people.json"), "{table}");

    // Diffed against the baseline, not against an empty snapshot: only the
    // one new account, and the failure's alert ends.
    let mut accounts = hr_accounts(10);
    accounts.push(hr_account("h11", "active"));
    fx.write_people(&doc(accounts));
    let out = fx.cli().expect(&["sources", "sync", "hr"], 0);
    assert_eq!(
        out,
        "hr: +1 accounts, -0 accounts, 0 status changes, +0 / -0 entitlements, 0 new apps; \
         11 accounts now; 0 alerts raised, 1 resolved\n"
    );
    let hr = listed(&fx, "hr");
    assert_eq!(hr["failures"], 0);
    assert_eq!(hr["accounts"], 11);
}

#[test]
fn a_mass_removal_is_held_until_accepted_for_that_source() {
    let fx = fixture();
    fx.write_people(&doc(hr_accounts(10)));
    fx.cli().expect(&["sources", "sync"], 0);

    // 3 of 10 gone is over the default 20 % guard.
    fx.write_people(&doc(hr_accounts(7)));
    let out = fx.cli().run(&["sources", "sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", utf8(&out.stderr));
    let text = utf8(&out.stdout);
    assert!(text.starts_with("hr: held: 3 of 10 accounts"), "{text}");
    assert!(text.contains("--accept-mass-change"), "{text}");
    assert!(
        utf8(&out.stderr).contains("hr (held"),
        "{}",
        utf8(&out.stderr)
    );
    let hr = listed(&fx, "hr");
    assert_eq!(hr["failures"], 1);
    assert_eq!(hr["accounts"], 10);

    let out = fx
        .cli()
        .expect(&["sources", "sync", "--accept-mass-change", "hr"], 0);
    assert!(
        out.starts_with("hr: +0 accounts, -3 accounts, 0 status changes"),
        "{out}"
    );
    assert!(out.contains("; 7 accounts now;"), "{out}");
    let hr = listed(&fx, "hr");
    assert_eq!(hr["failures"], 0);
    assert_eq!(hr["accounts"], 7);

    let audit = audit_rows(&fx.db());
    let last = &audit.last().unwrap().3;
    assert_eq!(last["outcome"], "applied");
    assert_eq!(last["accept_mass_change"], true);
    assert_eq!(audit[audit.len() - 2].3["outcome"], "held");
}

#[test]
fn unknown_ids_and_an_unscoped_accept_are_usage_errors() {
    let fx = fixture();
    fx.write_people(&doc(hr_accounts(3)));

    let out = fx.cli().run(&["sources", "sync", "payroll"]);
    assert_eq!(out.status.code(), Some(2));
    let err = utf8(&out.stderr);
    assert!(
        err.contains("payroll") && err.contains("configured: hr"),
        "{err}"
    );

    let out = fx.cli().run(&["sources", "sync", "--accept-mass-change"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(utf8(&out.stderr).contains("<ID>"), "{}", utf8(&out.stderr));

    // Refused before the database was opened, let alone written.
    assert!(!fx.db().exists());
}

#[test]
fn cli_alerts_wait_in_the_outbox_addressed_by_the_daemons_channel_ids() {
    let fx = fixture();
    fx.write_people(&doc(hr_accounts(3)));
    fx.cli().expect(&["sources", "sync", "hr"], 0);
    // What the daemon saves after resolving `#sec-alerts` through Slack.
    fx.sqlite()
        .execute(
            "INSERT INTO slack_channels (name, id, resolved_at) VALUES (?1, ?2, ?3)",
            ["#sec-alerts", "C0SECALERTS", "2026-01-01T00:00:00.000Z"],
        )
        .unwrap();

    let mut accounts = hr_accounts(3);
    accounts.push(
        json!({ "app": "dropbox", "id": "db-1", "email": "h1@example.com",
                          "name": "Person h1", "status": "active" }),
    );
    fx.write_people(&doc(accounts));
    let out = fx.cli().expect(&["sources", "sync", "hr"], 0);
    assert!(out.starts_with("hr: +1 accounts, -0 accounts"), "{out}");
    assert!(!out.contains("; 0 alerts raised"), "{out}");

    let conn = fx.sqlite();
    let rows: Vec<(String, String, String)> = conn
        .prepare("SELECT method, channel, payload FROM outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(
        rows.iter().all(|(_, channel, _)| channel != "#sec-alerts"),
        "{rows:?}"
    );
    let signup = rows
        .iter()
        .find(|(_, _, payload)| payload.contains("db-1") || payload.contains("h1@example.com"))
        .unwrap_or_else(|| panic!("no watchlist sign-up message in {rows:?}"));
    assert_eq!(signup.0, "chat.postMessage");
    assert_eq!(signup.1, "C0SECALERTS");
    let payload: Value = serde_json::from_str(&signup.2).unwrap();
    assert_eq!(payload["channel"], "C0SECALERTS");
    assert!(
        payload["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("dropbox"),
        "{payload}"
    );
}

#[test]
fn json_output_is_an_array_of_objects_with_ids_and_syncs_every_source() {
    // A second source whose file is missing: syncing all runs both, and one
    // failure makes the run fail.
    let fx = fixture_with(
        r#"
[[sources]]
id = "crm"
kind = "file"
path = "crm.json"
schedule = "0 * * * *"
"#,
    );
    fx.write_people(&doc(hr_accounts(4)));

    let out = fx.cli().json(&["sources", "sync", "--json"], 1);
    let items = out.as_array().unwrap();
    assert_eq!(items.len(), 2, "{out}");
    assert_eq!(items[0]["id"], "hr");
    assert_eq!(items[0]["outcome"], "baseline");
    assert_eq!(items[0]["accounts"], 4);
    assert_eq!(items[1]["id"], "crm");
    assert_eq!(items[1]["outcome"], "failed");
    assert!(
        items[1]["error"].as_str().unwrap().contains("crm.json"),
        "{out}"
    );

    let mut accounts = hr_accounts(4);
    accounts.push(hr_account("h5", "active"));
    fx.write_people(&doc(accounts));
    let out = fx.cli().json(&["sources", "sync", "hr", "--json"], 0);
    assert_eq!(out[0]["id"], "hr");
    assert_eq!(out[0]["outcome"], "applied");
    assert_eq!(out[0]["summary"]["accounts_added"], 1);
    assert_eq!(out[0]["accounts"], 5);

    let list = fx.cli().json(&["sources", "list", "--json"], 0);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hr", "crm"]);
    assert_eq!(list[1]["schedule"], "0 * * * *");
    assert_eq!(list[1]["failures"], 1);
    assert_eq!(list[1]["last_success_at"], Value::Null);
}

#[test]
fn a_source_synced_elsewhere_is_busy_and_removed_sources_stay_listed() {
    let fx = fixture();
    fx.write_people(&doc(hr_accounts(3)));
    fx.cli().expect(&["sources", "sync"], 0);

    // The daemon holds the lease.
    fx.sqlite()
        .execute(
            "UPDATE source_state SET lease_owner = 'daemon:1', lease_until = '9999-12-31T00:00:00.000Z'
             WHERE source_id = 'hr'",
            [],
        )
        .unwrap();
    let out = fx.cli().run(&["sources", "sync", "hr"]);
    assert_eq!(out.status.code(), Some(1), "{}", utf8(&out.stderr));
    assert_eq!(
        utf8(&out.stdout),
        "hr: skipped: another sync of this source is running\n"
    );
    assert!(utf8(&out.stderr).contains("busy"), "{}", utf8(&out.stderr));

    // State left behind by a source since taken out of the config.
    fx.sqlite()
        .execute(
            "INSERT INTO source_state (source_id, accounts, apps) VALUES ('old-ldap', 42, 2)",
            [],
        )
        .unwrap();
    let old = listed(&fx, "old-ldap");
    assert_eq!(old["kind"], "(removed)");
    assert_eq!(old["accounts"], 42);
    assert_eq!(old["schedule"], Value::Null);
    let table = fx.cli().expect(&["sources", "list"], 0);
    assert!(table.contains("(removed)"), "{table}");
}
