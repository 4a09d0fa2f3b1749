//! Flows-per-minute benchmark (`cargo bench --bench flows`): complete request
//! → approve → provision flows acted out as Slack users against the in-process
//! daemon and the fake Slack on loopback. Each flow has its own requester, who
//! types `/access APP`, fills every step of the modal and submits; the app's
//! approver finds the DM by the ticket's id, clicks Approve, fills the modal
//! and submits; the real `command` provisioner (`/bin/cat`, one process per
//! grant) provisions; the flow is complete when the requester's "Access
//! granted" DM arrives.
//!
//! `FLOWS_N` flows (1,000) over `FLOWS_LANES` (16) concurrent lanes, one app
//! and one approver per lane. `FLOWS_PACE_MS` (50) is the outbox's per-channel
//! pacing: Slack's real 1 message/s per channel caps one approver at ~30 flows
//! a minute (their DM, then its update), which measures Slack, not the daemon.
//! Figures are printed, not asserted: DESIGN.md section 8 gives the target.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accessd::store::{GrantFilter, GrantStatus, Store};
use support::world::World;
use support::FakeSlack;

/// Generous: a flow slower than this is reported as lost, not waited for.
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn app(lane: usize) -> String {
    // Three digits: no id is a prefix of another, so `/access appNNN` is exact.
    format!("app{lane:03}")
}

fn approver(lane: usize) -> (String, String) {
    (
        format!("UAPPROVER{lane:03}"),
        format!("approver{lane:03}@example.com"),
    )
}

fn catalog(lanes: usize) -> String {
    let mut text = String::from(
        "[[provisioners]]\nid = \"cat\"\nkind = \"command\"\ncommand = [\"/bin/cat\"]\n",
    );
    for lane in 0..lanes {
        let (_, email) = approver(lane);
        let app = app(lane);
        text.push_str(&format!(
            "\n[[apps]]\nid = \"{app}\"\nname = \"App {lane}\"\nprovisioner = \"cat\"\n\
             stages = [{{ approvers = [\"{email}\"], required = 1 }}]\n\n\
             [[apps.roles]]\nid = \"write\"\nname = \"Write\"\nentitlement = \"{app}-writers\"\n"
        ));
    }
    text
}

/// Time from typing `/access` to the end of each step.
struct Flow {
    requested: Duration,
    asked: Duration,
    approved: Duration,
    granted: Duration,
}

/// Waits for a DM to `user` posted at or after position `from` of the fake's
/// message log whose JSON holds `needle`. The shared helpers copy and
/// re-serialise every message on each 5 ms poll; over 1,000 flows that costs
/// more CPU than the daemon does and would be measured as its slowness.
async fn dm_since(fake: &FakeSlack, user: &str, from: usize, needle: &str) -> bool {
    let channel = fake.dm_channel(user);
    fake.wait_until(FLOW_TIMEOUT, |f| {
        let st = f.inner.lock();
        st.messages
            .get(from..)?
            .iter()
            .any(|m| m.channel == channel && !m.deleted && m.message.to_string().contains(needle))
            .then_some(())
    })
    .await
    .is_some()
}

async fn flow(world: &World, n: usize, lane: usize) -> Option<Flow> {
    let requester = format!("UREQ{n}");
    let (approver, _) = approver(lane);
    let from = world.fake.inner.lock().messages.len();
    let started = Instant::now();
    let t = world
        .request(&requester, &app(lane), &["write"], "benchmark flow", "8h")
        .await;
    let requested = started.elapsed();
    // The lane's earlier DMs precede `from`: anything newer is about `t`.
    if !dm_since(&world.fake, &approver, from, &t).await {
        eprintln!("{t}: no DM to the approver within {FLOW_TIMEOUT:?}");
        return None;
    }
    let asked = started.elapsed();
    let ack = world.decide(&approver, &t, "Approve", "ok", None).await;
    let approved = started.elapsed();
    if ack.as_ref().is_none_or(|a| a["response_action"] != "clear") {
        eprintln!("{t}: the approval was answered with {ack:?}");
    }
    if !dm_since(&world.fake, &requester, from, "Access granted").await {
        eprintln!("{t}: no \"Access granted\" DM within {FLOW_TIMEOUT:?}");
        return None;
    }
    Some(Flow {
        requested,
        asked,
        approved,
        granted: started.elapsed(),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn spread(what: &str, mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "{what} p50 {} p99 {}",
        ms(percentile(&v, 0.50)),
        ms(percentile(&v, 0.99))
    )
}

/// This process's user + system CPU seconds (the daemon runs in it too).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is parenthesised and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5); /proc reports them in
    // USER_HZ, which is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

async fn run(n: usize, lanes: usize, pace: Duration) {
    let world = World::start_adjusted(
        &catalog(lanes),
        Some(Box::new(move |o: &mut accessd::RunOptions| {
            o.outbox.per_channel_interval = pace;
        })),
    )
    .await;
    for i in 0..n {
        world.fake.add_user(
            &format!("UREQ{i}"),
            &format!("requester{i}@example.com"),
            &format!("Requester {i}"),
        );
    }
    for lane in 0..lanes {
        let (id, email) = approver(lane);
        world
            .fake
            .add_user(&id, &email, &format!("Approver {lane}"));
    }
    let db = world.dir.path().join("accessd.db");
    let calls_before = world.fake.counts();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpu_before = cpu_secs();
    let next = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(world);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let (world, next) = (shared.clone(), next.clone());
        set.spawn(async move {
            let mut done = Vec::new();
            let mut lost = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                match flow(&world, i, lane).await {
                    Some(f) => done.push(f),
                    None => lost += 1,
                }
            }
            (done, lost)
        });
    }
    let mut flows = Vec::with_capacity(n);
    let mut lost = 0;
    while let Some(joined) = set.join_next().await {
        let (done, l) = joined.expect("lane panicked");
        flows.extend(done);
        lost += l;
    }
    let wall = started.elapsed();
    let cpu = cpu_secs() - cpu_before;
    let world = Arc::try_unwrap(shared).unwrap_or_else(|_| panic!("lanes still hold the world"));

    let store = Store::open(&db).expect("store");
    let active = store
        .list_grants(GrantFilter {
            status: Some(GrantStatus::Active),
            ..GrantFilter::default()
        })
        .await
        .expect("grants")
        .len();
    store.close().await;
    let calls = world.fake.counts();
    let per_flow = |method: &str| {
        let before = calls_before.get(method).copied().unwrap_or(0);
        (calls.get(method).copied().unwrap_or(0) - before) as f64 / n.max(1) as f64
    };

    println!(
        "flows: {} of {n} complete in {:.1}s over {lanes} lanes (outbox pacing {pace:?} per channel): \
         {:.0} flows/min",
        flows.len(),
        wall.as_secs_f64(),
        flows.len() as f64 / wall.as_secs_f64() * 60.0
    );
    println!(
        "  {}; max {}",
        spread(
            "flow latency (/access typed → \"Access granted\" DM)",
            flows.iter().map(|f| f.granted).collect()
        ),
        ms(flows.iter().map(|f| f.granted).max().unwrap_or_default())
    );
    println!(
        "  steps: {}; {}; {}; {}",
        spread(
            "request modal, 4 submissions",
            flows.iter().map(|f| f.requested).collect()
        ),
        spread(
            "approver DM arrives",
            flows.iter().map(|f| f.asked - f.requested).collect()
        ),
        spread(
            "Approve, modal, submit",
            flows.iter().map(|f| f.approved - f.asked).collect()
        ),
        spread(
            "provisioned + granted DM",
            flows.iter().map(|f| f.granted - f.approved).collect()
        ),
    );
    println!(
        "  grants active {active} of {n}; lost flows {lost}; Web API calls per flow: \
         chat.postMessage {:.1}, chat.update {:.1}, views.open {:.1}, views.publish {:.1}, users.info {:.1}",
        per_flow("chat.postMessage"),
        per_flow("chat.update"),
        per_flow("views.open"),
        per_flow("views.publish"),
        per_flow("users.info"),
    );
    println!(
        "  process CPU (daemon + fake Slack + users) {cpu:.1}s over {:.1}s wall; load average at start {}",
        wall.as_secs_f64(),
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    world.stop().await;
}

fn main() {
    let n = env_or("FLOWS_N", 1000) as usize;
    let lanes = env_or("FLOWS_LANES", 16).max(1) as usize;
    let pace = Duration::from_millis(env_or("FLOWS_PACE_MS", 50));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n, lanes, pace));
}
