//! `accessd audit export|verify` as an operator runs them: the real binary,
//! without any Slack token, on audit rows written by real commands (`sources
//! sync`, `users link`, `reviews create`), then on a database tampered with
//! directly, as an attacker with write access to the file would.

#[path = "support/cli.rs"]
mod cli;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cli::{parse_csv, Cli};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

const CONFIG: &str = r##"[slack]
[database]
path = "accessd.db"

[requests]
admins = ["secops@example.com"]

[[apps]]
id = "github"
name = "GitHub"
owners = ["dana@example.com"]

[[sources]]
id = "hr"
kind = "file"
path = "people.json"
schedule = "every 15m"
"##;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The campaign name lands in the `review.created` detail: a comma and
/// quotes, which the CSV must quote.
const CAMPAIGN: &str = "Q3, \"critical\" review";

const FIELDS: [&str; 8] = [
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "detail",
    "prev_hash",
    "hash",
];

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("accessd.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let accounts: Vec<Value> = (1..=3)
        .map(|i| {
            json!({ "app": "github", "id": format!("g{i}"), "email": format!("g{i}@example.com"),
                    "name": format!("Person {i}"), "status": "active", "entitlements": ["gh-readers"] })
        })
        .collect();
    std::fs::write(
        dir.path().join("people.json"),
        serde_json::to_vec(&json!({ "apps": [ { "id": "github", "name": "GitHub" } ],
                                    "accounts": accounts }))
        .unwrap(),
    )
    .unwrap();
    Fixture { dir, config }
}

/// Five audit rows, each from a real command: `source.sync`, three
/// `user.link` (the second re-links U1, so its detail has a `previous`), and
/// `review.created`.
fn five_rows() -> Fixture {
    let fx = fixture();
    fx.cli().expect(&["sources", "sync"], 0);
    fx.cli()
        .expect(&["users", "link", "U1", "a@example.com"], 0);
    fx.cli()
        .expect(&["users", "link", "U1", "b@example.com"], 0);
    fx.cli()
        .expect(&["users", "link", "U2", "c@example.com"], 0);
    fx.cli().expect(
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
            CAMPAIGN,
        ],
        0,
    );
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
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    fn audit_count(&self) -> i64 {
        self.sqlite()
            .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
            .unwrap()
    }

    /// What an attacker with file access does: the append-only triggers
    /// (migration 0001) are just SQL, so drop them and edit.
    fn tamper(&self, sql: &str) {
        let conn = self.sqlite();
        let refused = conn
            .execute_batch(sql)
            .expect_err("the triggers refuse edits");
        assert!(refused.to_string().contains("append-only"), "{refused}");
        conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
            .unwrap();
        conn.execute_batch(sql).unwrap();
    }
}

/// `audit export` (plus `extra`) as parsed JSON Lines.
fn export(fx: &Fixture, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "export"];
    args.extend_from_slice(extra);
    fx.cli()
        .expect(&args, 0)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn seqs(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect()
}

/// The chain formula of `store/audit.rs`, applied to an exported row.
fn recompute(row: &Value) -> String {
    let text = |k: &str| row[k].as_str().unwrap().to_owned();
    let parts = [
        text("prev_hash"),
        row["seq"].to_string(),
        text("at"),
        text("actor"),
        text("action"),
        text("subject"),
        serde_json::to_string(&row["detail"]).unwrap(),
    ];
    hex::encode(Sha256::digest(parts.join("\n").as_bytes()))
}

fn verify_json(fx: &Fixture, code: i32) -> (Value, String) {
    let (out, err) = fx.cli().expect_both(&["audit", "verify", "--json"], code);
    (
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")),
        err,
    )
}

#[test]
fn export_jsonl_has_every_row_oldest_first_and_re_verifiable() {
    let fx = five_rows();
    let rows = export(&fx, &[]);
    assert_eq!(rows.len() as i64, fx.audit_count());
    assert_eq!(seqs(&rows), [1, 2, 3, 4, 5]);
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "source.sync",
            "user.link",
            "user.link",
            "user.link",
            "review.created"
        ]
    );
    for row in &rows {
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut fields = FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields, "{row}");
        // The exact hashed text: millisecond `at` with `Z`, even at .000.
        let at = row["at"].as_str().unwrap();
        assert!(at.len() == 24 && at.ends_with('Z'), "{at}");
        assert!(at.parse::<DateTime<Utc>>().is_ok(), "{at}");
        // So anyone can re-check the chain from the export alone.
        assert_eq!(row["hash"].as_str().unwrap(), recompute(row), "{row}");
    }
    assert_eq!(rows[0]["prev_hash"], GENESIS);
    for pair in rows.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    assert_eq!(rows[0]["subject"], "hr");
    assert_eq!(rows[2]["actor"], cli::os_actor().as_str());
    assert_eq!(rows[2]["subject"], "U1");
    assert_eq!(
        rows[2]["detail"],
        json!({ "email": "b@example.com", "previous": "a@example.com" })
    );
    assert_eq!(rows[4]["subject"], "R-1");
    assert_eq!(rows[4]["detail"]["name"], CAMPAIGN);

    // `--format jsonl` is the default; `--output` writes the same bytes, 0600.
    let stdout = fx.cli().expect(&["audit", "export"], 0);
    assert_eq!(
        fx.cli()
            .expect(&["audit", "export", "--format", "jsonl"], 0),
        stdout
    );
    let path = fx.dir.path().join("audit.jsonl");
    let said = fx
        .cli()
        .expect(&["audit", "export", "--output", path.to_str().unwrap()], 0);
    assert_eq!(
        said,
        format!("exported 5 audit rows (seq 1..5) to {}\n", path.display())
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), stdout);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn export_csv_has_a_header_and_quotes_the_detail() {
    let fx = five_rows();
    let jsonl = export(&fx, &[]);
    let text = fx.cli().expect(&["audit", "export", "--format", "csv"], 0);
    assert!(
        text.starts_with("seq,at,actor,action,subject,detail,prev_hash,hash\r\n"),
        "{text}"
    );
    // The detail holds commas and quotes: one quoted field, quotes doubled.
    assert!(text.contains(r#""{""apps"":[""github""],"#), "{text}");
    assert!(
        text.contains(r#"""name"":""Q3, \""critical\"" review"","#),
        "{text}"
    );
    let rows = parse_csv(&text);
    assert_eq!(rows[0], FIELDS);
    assert_eq!(rows.len(), 1 + jsonl.len());
    for (cells, row) in rows[1..].iter().zip(&jsonl) {
        assert_eq!(cells.len(), FIELDS.len());
        for (i, field) in FIELDS.iter().enumerate() {
            let expected = match row[*field].as_str() {
                Some(s) if *field != "detail" => s.to_owned(),
                // seq as a number, detail as compact JSON text.
                _ => row[*field].to_string(),
            };
            assert_eq!(cells[i], expected, "{field} of {row}");
        }
    }
    let detail: Value = serde_json::from_str(&rows[5][5]).unwrap();
    assert_eq!(detail["name"], CAMPAIGN);
}

#[test]
fn export_since_takes_rfc3339_or_a_duration_ago() {
    let fx = five_rows();
    let all = export(&fx, &[]);
    // RFC 3339: a row's own time includes it (`at >= since`); each row came
    // from its own process, so no two share a millisecond.
    let cut = all[2]["at"].as_str().unwrap();
    assert_eq!(seqs(&export(&fx, &["--since", cut])), [3, 4, 5]);
    let cut: DateTime<Utc> = cut.parse().unwrap();
    let offset = cut
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339();
    assert_eq!(seqs(&export(&fx, &["--since", &offset])), [3, 4, 5]);
    assert_eq!(
        export(&fx, &["--since", "2999-01-01T00:00:00Z"]),
        Vec::<Value>::new()
    );

    // A duration ago: clear gaps around the cut, so process start-up
    // (the duration is counted from when the binary parses it) cannot matter.
    assert_eq!(seqs(&export(&fx, &["--since", "1h"])), [1, 2, 3, 4, 5]);
    std::thread::sleep(Duration::from_millis(1500));
    let cut = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    fx.cli()
        .expect(&["users", "link", "U3", "d@example.com"], 0);
    let ago = format!("{}ms", cut.elapsed().as_millis());
    let later = export(&fx, &["--since", &ago]);
    assert_eq!(seqs(&later), [6]);
    assert_eq!(later[0]["subject"], "U3");
    // CSV filters the same way.
    let csv = fx
        .cli()
        .expect(&["audit", "export", "--format", "csv", "--since", &ago], 0);
    assert_eq!(parse_csv(&csv).len(), 2, "{csv}");

    for bad in ["garbage", "yesterday", "2024-05-01"] {
        let (_, err) = fx
            .cli()
            .expect_both(&["audit", "export", "--since", bad], 2);
        assert!(err.contains("RFC 3339"), "{bad}: {err}");
    }
}

#[test]
fn verify_an_intact_chain_also_while_another_process_writes() {
    let fx = five_rows();
    let last = export(&fx, &[]).pop().unwrap();
    let out = fx.cli().expect(&["audit", "verify"], 0);
    assert_eq!(
        out,
        format!(
            "audit log intact: 5 rows, last seq 5, last hash {}\n",
            last["hash"].as_str().unwrap()
        )
    );
    let (v, _) = verify_json(&fx, 0);
    assert_eq!(
        v,
        json!({ "intact": true, "rows": 5, "last_seq": 5, "last_hash": last["hash"],
                "first_broken": null })
    );

    // The daemon holding the write lock (mid-transaction) does not stop
    // either command: they only read.
    let daemon = fx.sqlite();
    daemon.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    fx.cli().expect(&["audit", "verify"], 0);
    assert_eq!(export(&fx, &[]).len(), 5);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited for the write lock"
    );
    daemon.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn verify_an_empty_log_and_refuse_a_missing_database() {
    let fx = fixture();
    let (_, err) = fx.cli().expect_both(&["audit", "verify"], 1);
    assert!(err.contains("no database at"), "{err}");
    fx.cli().expect_both(&["audit", "export"], 1);
    assert!(!fx.db().exists(), "a check must not create the database");

    fx.cli().expect(&["db", "migrate"], 0);
    assert_eq!(
        fx.cli().expect(&["audit", "verify"], 0),
        "audit log intact: 0 rows (empty)\n"
    );
    assert_eq!(fx.cli().expect(&["audit", "export"], 0), "");
    assert_eq!(
        fx.cli().expect(&["audit", "export", "--format", "csv"], 0),
        "seq,at,actor,action,subject,detail,prev_hash,hash\r\n"
    );
}

#[test]
fn verify_names_an_altered_row() {
    let fx = five_rows();
    fx.tamper(r#"UPDATE audit_log SET detail = '{"email":"mallory@example.com","previous":null}' WHERE seq = 2"#);
    let (out, err) = fx.cli().expect_both(&["audit", "verify"], 1);
    assert_eq!(out, "");
    assert!(
        err.contains("audit log BROKEN at seq 2: row altered"),
        "{err}"
    );
    assert!(err.contains("stored hash does not match"), "{err}");
    let (v, err) = verify_json(&fx, 1);
    assert_eq!(v["intact"], false);
    assert_eq!(v["first_broken"], json!({ "seq": 2, "kind": "altered" }));
    assert_eq!(v["rows"], 5);
    assert!(err.contains("BROKEN at seq 2"), "{err}");
    // Export still works: it is how the evidence is taken off the machine.
    assert_eq!(
        export(&fx, &[])[1]["detail"]["email"],
        "mallory@example.com"
    );
}

#[test]
fn verify_names_a_gap_where_a_middle_row_was_deleted() {
    let fx = five_rows();
    fx.tamper("DELETE FROM audit_log WHERE seq = 3");
    let (_, err) = fx.cli().expect_both(&["audit", "verify"], 1);
    assert!(
        err.contains("audit log BROKEN at seq 4: rows missing: a gap in seq"),
        "{err}"
    );
    assert!(err.contains("4 rows present"), "{err}");
    let (v, _) = verify_json(&fx, 1);
    assert_eq!(v["first_broken"], json!({ "seq": 4, "kind": "gap" }));
    assert_eq!(v["rows"], 4);
}

#[test]
fn verify_notices_a_truncated_tail() {
    let fx = five_rows();
    fx.tamper("DELETE FROM audit_log WHERE seq = 5");
    let (_, err) = fx.cli().expect_both(&["audit", "verify"], 1);
    assert!(
        err.contains("audit log BROKEN at seq 5: tail truncated"),
        "{err}"
    );
    assert!(err.contains("last row present: seq 4"), "{err}");
    let (v, _) = verify_json(&fx, 1);
    assert_eq!(v["first_broken"], json!({ "seq": 5, "kind": "truncated" }));
    assert_eq!(
        (v["rows"].clone(), v["last_seq"].clone()),
        (json!(4), json!(4))
    );
}

/// `audit head` as a string `audit verify --head` takes.
fn head(fx: &Fixture) -> String {
    let printed = fx.cli().expect(&["audit", "head"], 0);
    let (seq, hash) = printed.trim_end().split_once(' ').unwrap();
    format!("{seq}:{hash}")
}

fn verify_head(fx: &Fixture, anchor: &str, code: i32) -> String {
    let (out, err) = fx
        .cli()
        .expect_both(&["audit", "verify", "--head", anchor], code);
    if code == 0 {
        out
    } else {
        assert_eq!(out, "");
        err
    }
}

#[test]
fn head_prints_the_newest_row_and_verify_holds_the_chain_to_it() {
    let fx = fixture();
    fx.cli().expect(&["db", "migrate"], 0);
    let (_, err) = fx.cli().expect_both(&["audit", "head"], 1);
    assert!(err.contains("audit log is empty: no head"), "{err}");

    let fx = five_rows();
    let rows = export(&fx, &[]);
    assert_eq!(
        fx.cli().expect(&["audit", "head"], 0),
        format!("5 {}\n", rows[4]["hash"].as_str().unwrap())
    );
    let anchor = head(&fx);
    let out = verify_head(&fx, &anchor, 0);
    assert!(out.contains("audit log intact: 5 rows"), "{out}");
    assert!(out.contains("holds the recorded head seq 5"), "{out}");
    // An older head still holds once the log has grown past it.
    fx.cli()
        .expect(&["users", "link", "U3", "d@example.com"], 0);
    verify_head(&fx, &anchor, 0);
    // The line `audit head` prints is taken as is.
    let printed = fx.cli().expect(&["audit", "head"], 0);
    verify_head(&fx, printed.trim_end(), 0);

    for bad in ["5", "x:abc", "0:abc", &format!("5:{}", "g".repeat(64))] {
        let (_, err) = fx.cli().expect_both(&["audit", "verify", "--head", bad], 2);
        assert!(err.contains("is not SEQ:HASH"), "{bad}: {err}");
    }
}

#[test]
fn a_tail_cut_with_its_sequence_reset_verifies_alone_but_not_against_the_head() {
    let fx = five_rows();
    let anchor = head(&fx);
    fx.tamper(
        "DELETE FROM audit_log WHERE seq >= 3; \
         UPDATE sqlite_sequence SET seq = 2 WHERE name = 'audit_log';",
    );
    // What the security review reproduced: on its own the chain looks whole.
    let out = fx.cli().expect(&["audit", "verify"], 0);
    assert!(out.contains("intact: 2 rows"), "{out}");
    let err = verify_head(&fx, &anchor, 1);
    assert!(
        err.contains("audit log BROKEN at seq 5: the recorded head is gone: no row seq 5 (the log now ends at seq 2)"),
        "{err}"
    );
    let (out, _) = fx
        .cli()
        .expect_both(&["audit", "verify", "--json", "--head", &anchor], 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(
        v["first_broken"],
        json!({ "seq": 5, "kind": "head_missing" })
    );
    assert_eq!(v["head"]["seq"], 5);
}

#[test]
fn an_emptied_log_does_not_hold_the_head() {
    let fx = five_rows();
    let anchor = head(&fx);
    fx.tamper("DELETE FROM audit_log; DELETE FROM sqlite_sequence WHERE name = 'audit_log';");
    let out = fx.cli().expect(&["audit", "verify"], 0);
    assert!(out.contains("intact: 0 rows"), "{out}");
    let err = verify_head(&fx, &anchor, 1);
    assert!(
        err.contains("the recorded head is gone: no row seq 5 (the log is empty)"),
        "{err}"
    );
}

#[test]
fn a_chain_recomputed_after_a_change_does_not_hold_the_head() {
    let fx = five_rows();
    let anchor = head(&fx);
    fx.tamper(r#"UPDATE audit_log SET detail = '{"email":"mallory@example.com","previous":null}' WHERE seq = 2"#);
    // The attacker recomputes every hash from the changed row on.
    let mut rows = export(&fx, &[]);
    let conn = fx.sqlite();
    for i in 1..rows.len() {
        let prev = rows[i - 1]["hash"].clone();
        rows[i]["prev_hash"] = prev;
        let hash = recompute(&rows[i]);
        rows[i]["hash"] = json!(hash);
        conn.execute(
            "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![
                rows[i]["prev_hash"].as_str().unwrap(),
                hash,
                rows[i]["seq"].as_i64().unwrap()
            ],
        )
        .unwrap();
    }
    drop(conn);
    fx.cli().expect(&["audit", "verify"], 0);
    let err = verify_head(&fx, &anchor, 1);
    let old = anchor.split_once(':').unwrap().1;
    assert!(
        err.contains(&format!(
            "BROKEN at seq 5: the recorded head was rewritten: seq 5's hash is not {old}"
        )),
        "{err}"
    );
}
