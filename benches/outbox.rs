//! Outbox drain benchmark (`cargo bench --bench outbox`): `OUTBOX_N` (1,000)
//! notifications queued over `OUTBOX_CHANNELS` (50) channels and DMs, drained
//! by the real outbox worker with its shipped options (1 message/s per
//! channel, 8 sends in flight) against the fake Slack on loopback — once
//! clean, once under bursts of HTTP 429 with `Retry-After: 1`.
//!
//! Prints the drain time against the rate-limit bound, and counts what Slack
//! accepted: every message exactly once, in order within its channel. Figures
//! are printed, not asserted: DESIGN.md section 8 gives the target (within
//! 5 % of the bound, zero lost).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use accessd::outbox::{Outbox, OutboxOptions, OutboxWorker};
use accessd::slack_api::SlackApi;
use accessd::store::{NewMessage, Store};
use support::daemon::tokens;
use support::{Failure, FakeSlack};

const RETRY_AFTER_SECS: u64 = 1;
/// A fifth of the targets are channels (alerts), the rest people's DMs.
const CHANNEL_SHARE: usize = 5;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 429 bursts: (seconds after the worker starts, how many calls refused).
struct Scenario {
    name: &'static str,
    bursts: &'static [(u64, usize)],
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "clean",
        bursts: &[],
    },
    Scenario {
        name: "429 storm",
        bursts: &[(0, 10), (4, 10), (8, 10), (12, 10)],
    },
];

fn target(i: usize, targets: usize) -> String {
    let t = i % targets;
    if t % CHANNEL_SHARE == 0 {
        format!("CBENCH{t:03}")
    } else {
        format!("UBENCH{t:03}")
    }
}

fn text(i: usize) -> String {
    format!("bench notification {i:05}")
}

/// The earliest a client honouring the pacing and the Retry-After pauses Slack
/// actually gave could have sent its last message: each channel sends
/// `count` messages `interval` apart, none inside a pause.
fn bound(
    counts: &HashMap<String, usize>,
    interval: Duration,
    pauses: &[(Duration, Duration)],
) -> Duration {
    let out_of_pauses = |mut t: Duration| {
        while let Some((_, end)) = pauses.iter().find(|(s, e)| *s <= t && t < *e) {
            t = *end;
        }
        t
    };
    counts
        .values()
        .map(|&count| {
            let mut t = out_of_pauses(Duration::ZERO);
            for _ in 1..count {
                t = out_of_pauses(t + interval);
            }
            t
        })
        .max()
        .unwrap_or_default()
}

async fn run(scenario: &Scenario, n: usize, targets: usize) {
    let fake = FakeSlack::start().await;
    for t in 0..targets {
        let id = target(t, targets);
        if id.starts_with('C') {
            fake.add_channel(&id, &format!("alerts-{t}"));
        } else {
            fake.add_user(&id, &format!("person{t}@example.com"), "Person");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("accessd.db")).expect("store");
    let outbox = Outbox::new(store.clone());
    let mut counts: HashMap<String, usize> = HashMap::new();
    let queued_at = Instant::now();
    for i in 0..n {
        let to = target(i, targets);
        let blocks = serde_json::json!([{ "type": "section", "text": { "type": "mrkdwn", "text": text(i) } }]);
        outbox
            .send(NewMessage::post(&to, &text(i), blocks))
            .await
            .expect("enqueue");
        *counts.entry(to).or_default() += 1;
    }
    let queued_in = queued_at.elapsed();

    let options = OutboxOptions::default();
    let interval = options.per_channel_interval;
    let api = SlackApi::new(&fake.api_url(), &tokens(), Duration::from_secs(10)).expect("api");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let refuse = |fake: &FakeSlack, times| {
        let failure = Failure::RateLimited {
            retry_after_secs: RETRY_AFTER_SECS,
        };
        fake.fail_next("chat.postMessage", times, failure);
    };
    // A burst at 0 s is queued before the first send, so the first sends meet it.
    let (now, later): (Vec<_>, Vec<_>) = scenario
        .bursts
        .iter()
        .copied()
        .partition(|(at, _)| *at == 0);
    for (_, times) in now {
        refuse(&fake, times);
    }
    let started = Instant::now();
    let worker = tokio::spawn(OutboxWorker::new(&outbox, api, options).run(stopped));
    let storm = {
        let fake = fake.clone();
        tokio::spawn(async move {
            for (at, times) in later {
                tokio::time::sleep_until((started + Duration::from_secs(at)).into()).await;
                refuse(&fake, times);
            }
        })
    };
    loop {
        let stats = store.outbox_stats().await.expect("stats");
        if stats.pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "outbox stuck: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = store.outbox_stats().await.expect("stats");
    storm.abort();
    let _ = stop.send(true);
    let _ = worker.await;
    store.close().await;

    let posts = fake.calls_to("chat.postMessage");
    let Some(first) = posts.first().map(|c| c.at) else {
        println!("outbox, {}: nothing was sent", scenario.name);
        return;
    };
    let accepted: Vec<_> = posts
        .iter()
        .filter(|c| c.status == 200 && c.response["ok"] == true)
        .collect();
    let refused = posts.iter().filter(|c| c.status == 429).count();
    let pauses: Vec<(Duration, Duration)> = posts
        .iter()
        .filter(|c| c.status == 429)
        .map(|c| {
            let at = c.at.duration_since(first);
            (at, at + Duration::from_secs(RETRY_AFTER_SECS))
        })
        .collect();
    let last = accepted.iter().map(|c| c.at).max().unwrap_or(first);
    let drain = last.duration_since(first);
    let limit = bound(&counts, interval, &pauses);

    // Exactly once, in order within each channel.
    let texts: Vec<String> = accepted
        .iter()
        .filter_map(|c| c.params["text"].as_str().map(str::to_string))
        .collect();
    let distinct: HashSet<&String> = texts.iter().collect();
    let lost = (0..n).filter(|i| !distinct.contains(&text(*i))).count();
    let duplicated = texts.len() - distinct.len();
    let mut by_channel: HashMap<String, Vec<(Instant, String)>> = HashMap::new();
    for c in &accepted {
        let channel = c.params["channel"].as_str().unwrap_or_default().to_string();
        let t = c.params["text"].as_str().unwrap_or_default().to_string();
        by_channel.entry(channel).or_default().push((c.at, t));
    }
    let in_order = by_channel
        .values()
        .all(|sent| sent.windows(2).all(|w| w[0].1 < w[1].1));
    let gaps: Vec<Duration> = by_channel
        .values()
        .flat_map(|sent| {
            sent.windows(2)
                .map(|w| w[1].0.duration_since(w[0].0))
                .collect::<Vec<_>>()
        })
        .collect();
    let mean_gap = if gaps.is_empty() {
        Duration::ZERO
    } else {
        gaps.iter().sum::<Duration>() / u32::try_from(gaps.len()).unwrap_or(u32::MAX)
    };

    println!(
        "outbox, {}: {n} messages over {} channels/DMs (max {} per channel), queued in {:.1}s",
        scenario.name,
        counts.len(),
        counts.values().max().copied().unwrap_or(0),
        queued_in.as_secs_f64()
    );
    println!(
        "  drained in {:.2}s (first send → last accepted; {:.2}s from worker start); bound {:.2}s; ratio {:.3}",
        drain.as_secs_f64(),
        last.duration_since(started).as_secs_f64(),
        limit.as_secs_f64(),
        drain.as_secs_f64() / limit.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "  chat.postMessage calls {}: accepted {}, 429 {refused} (Retry-After {RETRY_AFTER_SECS}s); \
         lost {lost}, duplicated {duplicated}, channel order kept {in_order}; outbox pending {} dead {}",
        posts.len(),
        accepted.len(),
        stats.pending,
        stats.dead
    );
    println!(
        "  per-channel gap between accepted sends: mean {:.3}s, max {:.3}s (pacing {:?})",
        mean_gap.as_secs_f64(),
        gaps.iter().max().copied().unwrap_or_default().as_secs_f64(),
        interval
    );
}

fn main() {
    let n = env_or("OUTBOX_N", 1000);
    let targets = env_or("OUTBOX_CHANNELS", 50).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for scenario in &SCENARIOS {
            run(scenario, n, targets).await;
        }
    });
}
