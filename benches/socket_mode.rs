//! Socket Mode benchmark against the fake Slack on loopback (`cargo bench`):
//! ack latency at a sustained envelope rate through the whole daemon — for
//! read-only envelopes and for state-changing approvals (SQLite commit
//! included) — and the release binary's start-to-connected time and idle RSS.
//!
//! Figures are printed, not asserted: DESIGN.md section 8 gives the targets.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use accessd::domain::policy::{Plan, StagePlan};
use accessd::domain::ticket::Status;
use accessd::store::{Effects, NewTicket, Store};
use support::daemon::{config, fast_options, Daemon};
use support::{payloads, FakeSlack, APP_TOKEN, BOT_TOKEN};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(what: &str, rate: u64, sent_in: Duration, ids: &[String], mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{what}: {} envelopes at {rate}/s over {:.1}s: p50 {:?}  p99 {:?}  max {:?}  unacked {}",
        ids.len(),
        sent_in.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        ids.len() - latencies.len()
    );
}

async fn latencies_of(fake: &FakeSlack, ids: &[String]) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(ids.len());
    for id in ids {
        match fake.wait_ack(id, Duration::from_secs(10)).await {
            Some(ack) => latencies.push(ack.latency),
            None => eprintln!("envelope {id} never acked"),
        }
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn ack_latency(rate: u64, seconds: u64) {
    let fake = FakeSlack::start().await;
    fake.add_user("U1", "ann@example.com", "Ann");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::connected(&fake, dir.path(), 2).await;

    // A modal to submit: the request modal as the bot opened it.
    let opened = fake.run_command("U1", "/access", "");
    fake.wait_ack(&opened, Duration::from_secs(5))
        .await
        .expect("ack");
    let modal = fake
        .wait_until(Duration::from_secs(5), |f| f.last_modal("U1"))
        .await
        .expect("modal");
    let action = modal["blocks"][0]["element"]["action_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ids = Vec::with_capacity(total as usize);
    let started = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        tick.tick().await;
        let envelope = if n % 2 == 0 {
            fake.slash_command("U1", "/access", "help")
        } else {
            // Answered with inline `errors`: the ack carries a payload.
            fake.view_submission(
                "U1",
                &modal,
                payloads::state_values(&[("reason", &action, payloads::plain_text_value("short"))]),
            )
        };
        ids.push(fake.send_envelope(None, envelope));
    }
    let sent_in = started.elapsed();
    let latencies = latencies_of(&fake, &ids).await;
    report(
        "ack latency, read-only envelopes (2 connections)",
        rate,
        sent_in,
        &ids,
        latencies,
    );
    daemon.stop().await.expect("clean stop");
}

/// Approvals at a sustained rate: each is a view_submission whose handler
/// re-authorises the approver and commits the decision (IMMEDIATE transaction,
/// synchronous=FULL, approval + ticket + audit + outbox rows) before the ack.
async fn approval_latency(rate: u64, seconds: u64) {
    let fake = FakeSlack::start().await;
    fake.add_user("UANN", "ann@example.com", "Ann");
    fake.add_user("UBOB", "bob@example.com", "Bob");
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = "[[apps]]\nid = \"github\"\nname = \"GitHub\"\nstages = [{ approvers = [\"bob@example.com\"], required = 1 }]\n[[apps.roles]]\nid = \"write\"\nname = \"Write\"\n";
    let cfg = config(&fake, dir.path(), 2, catalog);
    let db = cfg.database.path.clone();
    let daemon = Daemon::start(cfg.clone(), fast_options(&cfg));
    fake.wait_until(Duration::from_secs(10), |f| {
        (f.live_connections().len() >= 2).then_some(())
    })
    .await;

    let total = rate * seconds;
    let store = Store::open(&db).expect("store");
    let plan = Plan {
        stages: vec![StagePlan {
            approvers: vec!["bob@example.com".into()],
            required: 1,
            fallback: false,
            source: "bob".into(),
        }],
        auto_approve: false,
        max_duration_secs: 30 * 24 * 3600,
    };
    // Distinct requesters: one person's second pending request would be a duplicate.
    for n in 0..=total {
        let new = NewTicket {
            requester_slack_id: format!("UREQ{n}"),
            requester_email: format!("req{n}@example.com"),
            app_id: "github".into(),
            roles: vec![],
            reason: "benchmark".into(),
            duration_secs: 3600,
            plan: plan.clone(),
            status: Status::Pending,
            kind: accessd::domain::ticket::Kind::Request,
            parent: None,
        };
        store
            .create_ticket(new, |_| Effects::default())
            .await
            .expect("ticket");
    }
    store.close().await;

    // One real approve modal, opened the way Bob opens it; each submission
    // points it at another ticket.
    let first = fake.send_envelope(None, fake.block_actions("UBOB", &serde_json::json!({
        "channel": support::GENERAL_CHANNEL, "ts": "1.0",
        "blocks": [{ "type": "actions", "block_id": "b", "elements": [
            { "type": "button", "action_id": "approve_ticket", "value": "1", "text": { "type": "plain_text", "text": "Approve" } }]}]
    }), &support::find_button(&serde_json::json!({ "blocks": [{ "type": "actions", "block_id": "b", "elements": [
            { "type": "button", "action_id": "approve_ticket", "value": "1", "text": { "type": "plain_text", "text": "Approve" } }]}]}), "Approve").expect("button")));
    fake.wait_ack(&first, Duration::from_secs(5))
        .await
        .expect("ack");
    let modal = fake
        .wait_until(Duration::from_secs(5), |f| f.last_modal("UBOB"))
        .await
        .expect("approve modal");

    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(total as usize);
    for n in 0..total {
        tick.tick().await;
        let mut view = modal.clone();
        view["private_metadata"] = (n + 1).to_string().into();
        ids.push(fake.send_envelope(
            None,
            fake.view_submission("UBOB", &view, serde_json::json!({})),
        ));
    }
    let sent_in = started.elapsed();
    let latencies = latencies_of(&fake, &ids).await;
    let cleared = ids
        .iter()
        .filter(|id| {
            fake.acks().iter().any(|a| {
                &a.envelope_id == *id
                    && a.payload
                        .as_ref()
                        .is_some_and(|p| p["response_action"] == "clear")
            })
        })
        .count();
    report(
        "ack latency, approvals committed before ack",
        rate,
        sent_in,
        &ids,
        latencies,
    );
    println!("approvals applied: {cleared} of {}", ids.len());
    if let Some(other) = fake.acks().iter().find(|a| {
        ids.contains(&a.envelope_id)
            && a.payload
                .as_ref()
                .is_none_or(|p| p["response_action"] != "clear")
    }) {
        println!("  e.g. not applied: {:?}", other.payload);
    }
    daemon.stop().await.expect("clean stop");
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

async fn binary_start_and_idle_rss() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("accessd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[slack]\napi_url = \"{}\"\nconnections = 2\n[server]\nlisten = \"\"\n",
            fake.api_url()
        ),
    )
    .expect("config");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_accessd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("SLACK_APP_TOKEN", APP_TOKEN)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn accessd");
    fake.wait_for_connections(2, Duration::from_secs(20)).await;
    let connected = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = rss_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    println!(
        "binary: start to 2 connections {:?} (empty database); idle RSS {} KiB",
        connected,
        rss.map_or("?".into(), |r| r.to_string())
    );
}

fn main() {
    // `cargo bench` passes `--bench`; the filter arguments of libtest do not apply here.
    let rate = env_or("ACK_RATE", 500);
    let seconds = env_or("ACK_SECONDS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        ack_latency(rate, seconds).await;
        approval_latency(rate, seconds.min(4)).await;
        binary_start_and_idle_rss().await;
    });
}
