//! The audit anchor as ops would rely on it: the running daemon posts the
//! audit log's head to `[audit] anchor_channel` each time it moved, and the
//! real CLI checks the database against the last head posted — a log cut
//! back with its sequence reset verifies on its own, not against the anchor.

mod support;

use std::process::Command;
use std::time::Duration;

use support::world::{World, ANN, BOB, DIGESTS, WAIT};

const CATALOG: &str = r##"
[requests]
admins = ["secops@example.com"]

[[apps]]
id = "aws"
name = "AWS"
stages = [{ approvers = ["bob@example.com"], required = 1 }]

  [[apps.roles]]
  id = "console"
  name = "Console"

[audit]
anchor_channel = "#security-digest"
anchor_every = "1s"
"##;

/// (seq, hash) of every anchor posted to the channel, oldest first.
fn anchors(world: &World) -> Vec<(i64, String)> {
    world
        .fake
        .messages_to(DIGESTS.0)
        .iter()
        .filter_map(|m| {
            let text = m["text"].as_str()?;
            let rest = text.strip_prefix("Audit log head: seq ")?;
            let (seq, hash) = rest.split_once(' ')?;
            Some((seq.parse().ok()?, hash.to_string()))
        })
        .collect()
}

async fn anchor_at_least(world: &World, seq: i64) -> (i64, String) {
    world
        .fake
        .wait_until(WAIT, |_| {
            anchors(world).last().filter(|(s, _)| *s >= seq).cloned()
        })
        .await
        .unwrap_or_else(|| panic!("no anchor at seq {seq} or later: {:?}", anchors(world)))
}

fn verify(world: &World, head: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_accessd"));
    cmd.args(["audit", "verify", "--config"])
        .arg(world.dir.path().join("accessd.toml"))
        .env_remove("SLACK_APP_TOKEN")
        .env_remove("SLACK_BOT_TOKEN");
    if let Some(head) = head {
        cmd.args(["--head", head]);
    }
    cmd.output().unwrap()
}

fn last_seq(world: &World) -> i64 {
    let conn = rusqlite::Connection::open(world_db(world)).unwrap();
    conn.query_row("SELECT MAX(seq) FROM audit_log", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_is_posted_as_it_moves_and_catches_a_log_cut_back() {
    let mut world = World::start_with(CATALOG).await;
    // Nothing audited yet: nothing to anchor.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(anchors(&world).is_empty(), "{:?}", anchors(&world));

    let ticket = world
        .request(ANN, "aws", &["console"], "on call for the outage", "4h")
        .await;
    let requested = last_seq(&world);
    let (seq, _) = anchor_at_least(&world, requested).await;
    assert_eq!(seq, requested);
    // An idle log is not posted again, tick after tick.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(anchors(&world).len(), 1, "{:?}", anchors(&world));

    // Bob approves: the head moves, and the new one is posted.
    world.decide(BOB, &ticket, "Approve", "ok", None).await;
    anchor_at_least(&world, requested + 1).await;
    // Once provisioning has settled, the newest row is the one posted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = last_seq(&world);
    let (seq, hash) = anchor_at_least(&world, settled).await;
    assert_eq!(seq, settled);
    // The message says how to check against it.
    let posts = world.fake.messages_to(DIGESTS.0);
    let blocks = posts.last().unwrap()["blocks"].to_string();
    assert!(
        blocks.contains(&format!("accessd audit verify --head {seq}:{hash}")),
        "{blocks}"
    );
    let anchor = format!("{seq}:{hash}");
    let out = verify(&world, Some(&anchor));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Stopped, not dropped: the database stays for the attacker.
    let daemon = world.daemon.take().unwrap();
    daemon.stop().await.unwrap();

    // Someone with the file cuts the log back to the request and resets
    // the sequence, so the chain alone looks whole.
    let conn = rusqlite::Connection::open(world_db(&world)).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;
         DELETE FROM audit_log WHERE seq > ?1;
         UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'audit_log';"
            .replace("?1", &requested.to_string())
            .as_str(),
    )
    .unwrap();
    drop(conn);
    let alone = verify(&world, None);
    assert_eq!(alone.status.code(), Some(0), "{alone:?}");
    let against = verify(&world, Some(&anchor));
    assert_eq!(against.status.code(), Some(1), "{against:?}");
    let err = String::from_utf8_lossy(&against.stderr);
    assert!(
        err.contains(&format!("the recorded head is gone: no row seq {seq}")),
        "{err}"
    );
}

fn world_db(world: &World) -> std::path::PathBuf {
    world.dir.path().join("accessd.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_anchor_channel_stops_start_up_naming_the_key() {
    let text = support::daemon::start_up_error("[audit]\nanchor_channel = \"#nowhere\"\n").await;
    assert!(
        text.contains("audit.anchor_channel") && text.contains("#nowhere"),
        "{text}"
    );
}
