//! Identity-source timers: each source syncs once at start-up, then on its
//! `schedule`. Sources run concurrently, one sync per source at a time; a
//! tick missed while a sync ran long (or the daemon was down) is skipped,
//! not replayed; a failing source backs off so it is not hammered.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::JobOptions;
use crate::config::SourceConfig;
use crate::handlers::App;
use crate::sources::sync::{lease_owner, sync_source, SyncOutcome};
use crate::sources::AnySource;

/// When to try next after a sync: the next scheduled tick after now, but
/// after `failures` consecutive failures no sooner than the job runner's
/// backoff (doubling from `retry_base`, capped) or the peer's Retry-After.
pub fn next_attempt(
    source: &SourceConfig,
    backoff: &JobOptions,
    now: DateTime<Utc>,
    failures: u32,
    retry_after: Option<Duration>,
) -> DateTime<Utc> {
    let tick = source
        .schedule
        .next_after(now)
        .unwrap_or(now + chrono::Duration::hours(1));
    if failures == 0 {
        return tick;
    }
    let backoff = backoff.backoff(i64::from(failures.saturating_sub(1)), retry_after);
    tick.max(now + chrono::Duration::from_std(backoff).unwrap_or_default())
}

/// Runs every source's timer until `stop`.
pub async fn run(app: Arc<App>, readers: Vec<Arc<AnySource>>, mut stop: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for (source, reader) in app.config.sources.clone().into_iter().zip(readers) {
        tasks.spawn(run_one(app.clone(), source, reader, stop.clone()));
    }
    let _ = stop.wait_for(|s| *s).await;
    // A sync in flight holds only a lease that lapses; nothing is half-written.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn run_one(
    app: Arc<App>,
    source: SourceConfig,
    reader: Arc<AnySource>,
    mut stop: watch::Receiver<bool>,
) {
    let owner = lease_owner("daemon");
    let mut failures: u32 = 0;
    loop {
        let outcome = sync_source(&app.store, &app.config, &source, &reader, &owner, false).await;
        app.outbox.wake();
        let retry_after = match &outcome {
            Ok(SyncOutcome::Failed { retry_after, .. }) => {
                failures += 1;
                *retry_after
            }
            Ok(SyncOutcome::Held { .. }) | Err(_) => {
                failures += 1;
                None
            }
            Ok(SyncOutcome::Busy) => None,
            Ok(_) => {
                failures = 0;
                None
            }
        };
        match &outcome {
            Ok(o) => tracing::debug!(source = source.id, outcome = %o, "source sync finished"),
            Err(err) => {
                tracing::error!(source = source.id, error = %err, "source sync could not use the database")
            }
        }
        let next = next_attempt(&source, &app.job_options, Utc::now(), failures, retry_after);
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tracing::debug!(source = source.id, next = %next, "next source sync");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Schedule, SourceKind};

    fn every(secs: u64) -> SourceConfig {
        SourceConfig {
            id: "hr".into(),
            name: None,
            schedule: Schedule::Every(Duration::from_secs(secs)),
            authoritative: false,
            app: "hr".into(),
            kind: SourceKind::File { path: "x".into() },
        }
    }

    #[test]
    fn healthy_sources_follow_the_schedule_and_failing_ones_back_off() {
        let now = Utc::now();
        let o = JobOptions {
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            ..JobOptions::default()
        };
        let s = every(900);
        let in_secs = |t: DateTime<Utc>| (t - now).num_seconds();
        assert_eq!(in_secs(next_attempt(&s, &o, now, 0, None)), 900);
        // A short schedule is slowed by the backoff: 1m, 2m, 4m … capped at 6h.
        let fast = every(10);
        assert_eq!(in_secs(next_attempt(&fast, &o, now, 0, None)), 10);
        assert_eq!(in_secs(next_attempt(&fast, &o, now, 1, None)), 60);
        assert_eq!(in_secs(next_attempt(&fast, &o, now, 3, None)), 240);
        assert_eq!(in_secs(next_attempt(&fast, &o, now, 30, None)), 6 * 3600);
        // A peer's Retry-After wins when longer.
        let hint = Some(Duration::from_secs(600));
        assert_eq!(in_secs(next_attempt(&fast, &o, now, 1, hint)), 600);
        // Never sooner than the schedule's own next tick.
        assert_eq!(in_secs(next_attempt(&s, &o, now, 1, None)), 900);
    }
}
