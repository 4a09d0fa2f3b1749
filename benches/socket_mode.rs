//! Socket Mode benchmark against the fake Slack on loopback (`cargo bench`):
//! ack latency at a sustained envelope rate through the whole daemon — for
//! read-only envelopes and for state-changing approvals (SQLite commit
//! included) — and the release binary's start-to-connected time and idle RSS,
//! with a new database and with one holding `START_TICKETS` (10,000) tickets
//! in the states months of use leave, `START_RUNS` (5) starts each.
//! `SOCKET_PARTS` (`ack,approvals,start`) picks the parts to run.
//!
//! Figures are printed, not asserted: DESIGN.md section 8 gives the targets.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use accessd::config::Config;
use accessd::domain::policy::{Plan, StagePlan};
use accessd::domain::ticket::{ticket_ref, Status};
use accessd::store::{AuditEvent, Effects, NewMessage, NewTicket, Store};
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
            reference: None,
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

/// The seeded tickets refer to these apps, one provisioned role each; active
/// grants need a provisioner to be revoked by.
const START_APPS: [&str; 5] = ["github", "aws", "okta", "notion", "jira"];
const START_CATALOG: &str = r#"
[[provisioners]]
id = "cat"
kind = "command"
command = ["/bin/cat"]
"#;

fn write_start_config(dir: &Path, api_url: &str) -> PathBuf {
    let mut text = format!(
        "[slack]\napi_url = \"{api_url}\"\nconnections = 2\n[server]\nlisten = \"\"\n{START_CATALOG}"
    );
    for app in START_APPS {
        text.push_str(&format!(
            "\n[[apps]]\nid = \"{app}\"\nname = \"{app}\"\nprovisioner = \"cat\"\n\
             stages = [{{ approvers = [\"owner-{app}@example.com\"], required = 1 }}]\n\
             [[apps.roles]]\nid = \"write\"\nname = \"Write\"\nentitlement = \"{app}-writers\"\n"
        ));
    }
    let path = dir.join("accessd.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Where a seeded ticket ends up; shares chosen as a database looks after
/// months of use: most access has come and gone, a few requests wait.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Expired,
    Revoked,
    Active,
    Failed,
    Rejected,
    Cancelled,
    Stale,
    Pending,
}

fn fate(i: usize) -> Fate {
    match i % 100 {
        0..55 => Fate::Expired,
        55..65 => Fate::Revoked,
        65..72 => Fate::Active,
        72..73 => Fate::Failed,
        73..85 => Fate::Rejected,
        85..90 => Fate::Cancelled,
        90..95 => Fate::Stale,
        _ => Fate::Pending,
    }
}

fn dm(to: &str, text: &str) -> NewMessage {
    NewMessage::post(
        to,
        text,
        serde_json::json!([{ "type": "section", "text": { "type": "mrkdwn", "text": text } }]),
    )
}

/// Runs `f` over `0..n` on `lanes` tasks: the store thread commits one call
/// at a time, so lanes only keep its queue full.
async fn in_lanes<T, F, Fut>(n: usize, lanes: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let f = std::sync::Arc::new(f);
    let mut set = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let f = f.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for i in (lane..n).step_by(lanes) {
                out.push((i, f(i).await));
            }
            out
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = set.join_next().await {
        all.extend(done.expect("seeding task"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// Pending jobs by (kind, subject): a job is ended by id, as the runner does.
async fn pending_jobs(store: &Store) -> HashMap<(String, String), i64> {
    let far = chrono::Utc::now() + chrono::Duration::days(3650);
    store
        .due_jobs(far, usize::MAX >> 1)
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| ((j.kind, j.subject), j.id))
        .collect()
}

/// Fills `db` with `n` tickets through the store's own transitions (approvals,
/// grants, expiry and reminder timers, audit chain, requester and approver
/// DMs marked sent), so every table has the rows real use leaves behind.
async fn seed_tickets(db: &Path, config: &Config, n: usize) {
    use accessd::domain::ticket::{Kind, Verdict};
    use accessd::lifecycle::reminder_job;
    use accessd::store::grants::{job as grant_job, GrantResult, GrantSpec};
    use accessd::store::{Actor, DecisionInput, GrantStatus, JobChange, ProvisionStart};

    const LANES: usize = 32;
    let store = Store::open(db).expect("store");
    let config = std::sync::Arc::new(config.clone());
    // Distinct (person, app) pairs: a second pending request would be a duplicate.
    let people = n.div_ceil(START_APPS.len()).max(1);
    let owner = |app: &str| (format!("UOWN{app}"), format!("owner-{app}@example.com"));

    let s = store.clone();
    let created: Vec<(i64, String, String)> = in_lanes(n, LANES, move |i| {
        let (store, config) = (s.clone(), config.clone());
        async move {
            let app = START_APPS[(i / people) % START_APPS.len()];
            let person = i % people;
            let (slack, email) = (format!("UP{person}"), format!("person{person}@example.com"));
            let (owner_slack, owner_email) = owner(app);
            let new = NewTicket {
                requester_slack_id: slack.clone(),
                requester_email: email.clone(),
                app_id: app.into(),
                roles: vec!["write".into()],
                reason: format!("on-call rotation, ticket {i}"),
                duration_secs: [3600, 8 * 3600, 24 * 3600, 7 * 24 * 3600][i % 4],
                plan: Plan {
                    stages: vec![StagePlan {
                        approvers: vec![owner_email],
                        required: 1,
                        fallback: false,
                        source: "owner".into(),
                    }],
                    auto_approve: false,
                    max_duration_secs: 30 * 24 * 3600,
                },
                status: Status::Pending,
                kind: Kind::Request,
                parent: None,
                reference: None,
            };
            let created = store
                .create_ticket(new, move |t| Effects {
                    messages: vec![
                        dm(&owner_slack, &format!("{} asks for {app}", t.reference())),
                        dm(&t.requester_slack_id, &format!("{} created", t.reference())),
                    ],
                    audit: vec![AuditEvent::new(
                        t.requester_email.clone(),
                        "ticket.create",
                        t.reference(),
                        serde_json::json!({ "app": t.app_id, "roles": t.roles }),
                    )],
                    jobs: accessd::lifecycle::reminder_timers(&config, t),
                    ..Effects::default()
                })
                .await
                .expect("create ticket");
            let accessd::store::Created::New(t) = created else {
                panic!("seeded ticket {i} is a duplicate");
            };
            (t.id, slack, email)
        }
    })
    .await;

    let jobs = std::sync::Arc::new(pending_jobs(&store).await);
    let untimed = |reference: &str| Effects {
        jobs: vec![
            JobChange::cancel(reminder_job::REMIND, reference),
            JobChange::cancel(reminder_job::STALE, reference),
        ],
        ..Effects::default()
    };
    let created = std::sync::Arc::new(created);
    let (s, c) = (store.clone(), created.clone());
    let grants: Vec<Option<i64>> = in_lanes(n, LANES, move |i| {
        let (store, created, jobs) = (s.clone(), c.clone(), jobs.clone());
        async move {
            let (id, slack, email) = created[i].clone();
            let reference = accessd::domain::ticket::ticket_ref(id);
            let app = START_APPS[(i / people) % START_APPS.len()];
            let (owner_slack, owner_email) = owner(app);
            let decision = |verdict| DecisionInput {
                actor: Actor {
                    slack_id: owner_slack.clone(),
                    email: owner_email.clone(),
                },
                verdict,
                comment: Some("ok".into()),
                duration_secs: None,
            };
            let told = move |what: &'static str| {
                let mut e = untimed(&reference);
                e.messages.push(dm(&slack, what));
                e
            };
            match fate(i) {
                Fate::Pending => return None,
                Fate::Stale => {
                    let job = jobs[&(reminder_job::STALE.to_string(), ticket_ref(id))];
                    store
                        .expire_pending(id, job, move |_| told("went stale"))
                        .await
                        .expect("stale");
                    return None;
                }
                Fate::Cancelled => {
                    let actor = Actor {
                        slack_id: created[i].1.clone(),
                        email,
                    };
                    store
                        .cancel_ticket(id, actor, move |_| told("cancelled"))
                        .await
                        .expect("cancel");
                    return None;
                }
                Fate::Rejected => {
                    store
                        .decide(
                            id,
                            decision(Verdict::Reject),
                            |_| Ok(()),
                            move |_, _| told("rejected"),
                        )
                        .await
                        .expect("reject");
                    return None;
                }
                _ => {}
            }
            store
                .decide(
                    id,
                    decision(Verdict::Approve),
                    |_| Ok(()),
                    move |_, _| told("approved"),
                )
                .await
                .expect("approve");
            let spec = GrantSpec {
                role_id: "write".into(),
                entitlement: format!("{app}-writers"),
            };
            let start = store
                .start_provisioning(id, vec![spec], false, |_, _| Effects::default())
                .await
                .expect("start provisioning");
            let ProvisionStart::Proceed { grants, .. } = start else {
                panic!("ticket {id} did not start provisioning");
            };
            let grant = grants[0].id;
            store.grant_attempt(grant).await.expect("attempt");
            let result = if fate(i) == Fate::Failed {
                GrantResult::Failed("team not found".into())
            } else {
                GrantResult::Applied
            };
            store
                .record_grant(grant, result)
                .await
                .expect("record grant");
            let requester = created[i].1.clone();
            store
                .finish_provisioning(id, None, Duration::from_secs(3600), move |_, _| Effects {
                    messages: vec![dm(&requester, "Access granted")],
                    ..Effects::default()
                })
                .await
                .expect("finish provisioning");
            Some(grant)
        }
    })
    .await;

    let jobs = std::sync::Arc::new(pending_jobs(&store).await);
    let (s, c) = (store.clone(), created.clone());
    in_lanes(n, LANES, move |i| {
        let (store, created, jobs) = (s.clone(), c.clone(), jobs.clone());
        let grant = grants[i];
        async move {
            let end = match fate(i) {
                Fate::Expired => GrantStatus::Expired,
                Fate::Revoked => GrantStatus::Revoked,
                _ => return,
            };
            let grant = grant.expect("a provisioned ticket has its grant");
            let job = jobs[&(
                grant_job::REVOKE.to_string(),
                accessd::store::grants::grant_ref(grant),
            )];
            let (slack, email) = (created[i].1.clone(), created[i].2.clone());
            store
                .end_grant(grant, Some(job), end, email, move |_, _| Effects {
                    messages: vec![dm(&slack, "Your access ended")],
                    ..Effects::default()
                })
                .await
                .expect("end grant");
        }
    })
    .await;

    // Everything queued above was delivered long ago.
    let queued = std::sync::Arc::new(store.outbox_pending(usize::MAX >> 1).await.expect("outbox"));
    let count = queued.len();
    let s = store.clone();
    in_lanes(count, LANES, move |i| {
        let (store, item) = (s.clone(), queued[i].clone());
        async move {
            let response = serde_json::json!({
                "ok": true, "channel": item.channel, "ts": format!("1700000000.{:06}", item.id)
            });
            store.outbox_sent(item.id, response).await.expect("sent");
        }
    })
    .await;
    store.close().await;
}

struct StartRun {
    connected: Duration,
    rss_kib: Option<u64>,
}

/// One start of the release binary in `dir`: spawn → both sockets open (the
/// fake's own accept times), then idle RSS once start-up work has settled.
async fn binary_start(dir: &Path) -> StartRun {
    let fake = FakeSlack::start().await;
    let cfg = write_start_config(dir, &fake.api_url());
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
    let connected = fake
        .connections()
        .iter()
        .map(|c| c.opened_at.duration_since(started))
        .max()
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_kib = rss_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    StartRun { connected, rss_kib }
}

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

async fn binary_start_and_idle_rss(tickets: usize, runs: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("accessd.db");

    // Built on tmpfs (no fsync per commit, seconds instead of minutes), then
    // copied next to the config on the real disk, where the daemon opens it.
    let seed_dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("seed dir");
    let seed = seed_dir.path().join("seed.db");
    let seeding = Instant::now();
    let cfg = write_start_config(seed_dir.path(), "http://127.0.0.1:9/api");
    let config = accessd::config::load(&cfg).expect("config");
    seed_tickets(&seed, &config, tickets).await;
    let seed_bytes = std::fs::metadata(&seed).map(|m| m.len()).unwrap_or(0);
    println!(
        "seeded {tickets} tickets in {:.1}s ({:.1} MB database)",
        seeding.elapsed().as_secs_f64(),
        seed_bytes as f64 / 1e6
    );

    for (label, seeded) in [
        ("new database".to_string(), false),
        (format!("{tickets}-ticket database"), true),
    ] {
        let mut connected = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..runs {
            remove_db(&db);
            if seeded {
                std::fs::copy(&seed, &db).expect("copy seeded database");
            }
            let run = binary_start(dir.path()).await;
            connected.push(run.connected);
            rss.extend(run.rss_kib);
        }
        let slowest = connected.iter().max().copied().unwrap_or_default();
        let fastest = connected.iter().min().copied().unwrap_or_default();
        println!(
            "binary, {label}: start to 2 connections median {:.1?} (min {fastest:.1?}, max {slowest:.1?}, {runs} runs); \
             idle RSS after 3 s median {} KiB (max {} KiB)",
            median(connected),
            if rss.is_empty() { 0 } else { median(rss.clone()) },
            rss.iter().max().copied().unwrap_or(0)
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the filter arguments of libtest do not apply here.
    let rate = env_or("ACK_RATE", 500);
    let seconds = env_or("ACK_SECONDS", 10);
    let tickets = env_or("START_TICKETS", 10_000) as usize;
    let runs = env_or("START_RUNS", 5).max(1) as usize;
    // `SOCKET_PARTS=start` runs one part alone.
    let parts = std::env::var("SOCKET_PARTS").unwrap_or_else(|_| "ack,approvals,start".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if parts.contains("ack") {
            ack_latency(rate, seconds).await;
        }
        if parts.contains("approvals") {
            approval_latency(rate, seconds.min(4)).await;
        }
        if parts.contains("start") {
            binary_start_and_idle_rss(tickets, runs).await;
        }
    });
}
