//! Job runner throughput (`cargo bench --bench jobs`): how many grants and
//! revokes per second the durable job runner sustains through the real
//! `command` provisioner (`/bin/cat`: a process spawned per call, stdin JSON
//! read, exit 0), with every step committed to SQLite and every requester DM
//! queued, against the fake Slack on loopback.
//!
//! `JOBS_N` tickets (default 500). Figures are printed, not asserted.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use accessd::domain::policy::Plan;
use accessd::domain::ticket::{Kind, Status};
use accessd::store::{Actor, Effects, GrantFilter, GrantStatus, JobChange, NewTicket, Store};
use support::daemon::{config, fast_options, Daemon};
use support::FakeSlack;

async fn count(store: &Store, status: GrantStatus) -> usize {
    store
        .list_grants(GrantFilter {
            status: Some(status),
            ..GrantFilter::default()
        })
        .await
        .expect("grants")
        .len()
}

async fn wait_for(store: &Store, status: GrantStatus, n: usize) -> Duration {
    let started = Instant::now();
    while count(store, status).await < n {
        assert!(started.elapsed() < Duration::from_secs(600), "stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn run(n: usize) {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog =
        "[[provisioners]]\nid = \"cat\"\nkind = \"command\"\ncommand = [\"/bin/cat\"]\n\n\
                   [[apps]]\nid = \"github\"\nname = \"GitHub\"\nprovisioner = \"cat\"\n\
                   stages = [{ approvers = [\"bob@example.com\"], required = 1 }]\n";
    let cfg = config(&fake, dir.path(), 1, catalog);
    let store = Store::open(&cfg.database.path).expect("store");
    for i in 0..n {
        fake.add_user(&format!("UREQ{i}"), &format!("req{i}@example.com"), "Req");
        let new = NewTicket {
            requester_slack_id: format!("UREQ{i}"),
            requester_email: format!("req{i}@example.com"),
            app_id: "github".into(),
            roles: vec![],
            reason: "benchmark".into(),
            duration_secs: 24 * 3600,
            plan: Plan {
                stages: vec![],
                auto_approve: true,
                max_duration_secs: 24 * 3600,
            },
            status: Status::Approved,
            kind: Kind::Request,
            parent: None,
            reference: None,
        };
        store
            .create_ticket(new, |t| Effects {
                jobs: vec![JobChange::schedule(
                    "provision",
                    &t.reference(),
                    chrono::Utc::now(),
                )],
                ..Effects::default()
            })
            .await
            .expect("ticket");
    }
    let mut options = fast_options(&cfg);
    options.jobs.poll = Duration::from_millis(50);
    let started = Instant::now();
    let daemon = Daemon::start(cfg.clone(), options);
    wait_for(&store, GrantStatus::Active, n).await;
    let total = started.elapsed();
    println!(
        "grants: {n} tickets provisioned in {:.2}s from daemon start → {:.0} grants/s",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );

    let started = Instant::now();
    for id in 1..=i64::try_from(n).unwrap_or(i64::MAX) {
        let actor = Actor {
            slack_id: String::new(),
            email: "bench".into(),
        };
        store
            .revoke_now(id, None, actor, "released".into(), |_| Ok(()))
            .await
            .expect("revoke");
    }
    let queued = started.elapsed();
    wait_for(&store, GrantStatus::Revoked, n).await;
    let total = started.elapsed();
    println!(
        "revokes: {n} revokes requested in {:.2}s, all done {:.2}s after the first → {:.0} revokes/s",
        queued.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    store.close().await;
    daemon.stop().await.expect("clean stop");
}

fn main() {
    let n = std::env::var("JOBS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n));
}
