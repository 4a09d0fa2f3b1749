//! Socket Mode benchmark against the fake Slack on loopback (`cargo bench`):
//! ack latency at a sustained envelope rate through the whole daemon, and the
//! release binary's start-to-connected time and idle RSS.
//!
//! Figures are printed, not asserted: DESIGN.md section 8 gives the targets.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::{payloads, FakeSlack, APP_TOKEN, BOT_TOKEN};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let mut latencies = Vec::with_capacity(ids.len());
    for id in &ids {
        match fake.wait_ack(id, Duration::from_secs(10)).await {
            Some(ack) => latencies.push(ack.latency),
            None => eprintln!("envelope {id} never acked"),
        }
    }
    latencies.sort();
    let max = latencies.last().copied().unwrap_or_default();
    println!(
        "ack latency: {} envelopes at {rate}/s over {:.1}s (2 connections): p50 {:?}  p99 {:?}  max {:?}  unacked {}",
        ids.len(),
        sent_in.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        max,
        ids.len() - latencies.len()
    );
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
        binary_start_and_idle_rss().await;
    });
}
