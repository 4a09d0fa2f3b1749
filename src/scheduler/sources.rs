//! Identity-source timers: each source syncs once at start-up, then on its
//! `schedule`. Sources run concurrently, one sync per source at a time; a
//! tick missed while a sync ran long (or the daemon was down) is skipped,
//! not replayed; a failing source backs off so it is not hammered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::JobOptions;
use crate::config::SourceConfig;
use crate::handlers::{App, Live};
use crate::store;
use crate::sync::{lease_owner, sync_source, SyncOutcome};

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

/// Runs every source's timer until `stop`, following reloads: a source added
/// gets a timer, a removed one loses it (see [`run_one`] for changed ones).
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut live = app.watch_live();
    let mut timers: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let config = live.borrow_and_update().config.clone();
        timers.retain(|id, timer| {
            let keep = config.source(id).is_some();
            if !keep {
                tracing::info!(
                    source = id,
                    "source removed from the config; its timer stops"
                );
                // A sync in flight holds only a lease that lapses; nothing is half-written.
                timer.abort();
            }
            keep
        });
        for source in &config.sources {
            if !timers.contains_key(&source.id) {
                let timer = tasks.spawn(store::background(run_one(
                    app.clone(),
                    source.id.clone(),
                    live.clone(),
                    stop.clone(),
                )));
                timers.insert(source.id.clone(), timer);
            }
        }
        tokio::select! {
            changed = live.changed() => if changed.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
            // Reap finished tasks so the set does not grow across reloads.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// One source's timer. After a reload that leaves the source's settings as
/// they were it keeps its next tick (with the rebuilt reader, so a rotated
/// token is used); changed settings sync now.
async fn run_one(
    app: Arc<App>,
    id: String,
    mut live: watch::Receiver<Live>,
    mut stop: watch::Receiver<bool>,
) {
    let owner = lease_owner("daemon");
    let mut failures: u32 = 0;
    loop {
        let current = live.borrow_and_update().clone();
        let (Some(source), Some(reader)) = (current.config.source(&id), current.sources.get(&id))
        else {
            // Removed by a reload; the supervisor aborts this task.
            let _ = stop.wait_for(|s| *s).await;
            return;
        };
        let outcome = sync_source(&app.store, &current.config, source, reader, &owner, false).await;
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
            Ok(o) => tracing::debug!(source = id, outcome = %o, "source sync finished"),
            Err(err) => {
                tracing::error!(source = id, error = %err, "source sync could not use the database")
            }
        }
        let next = next_attempt(source, &app.job_options, Utc::now(), failures, retry_after);
        tracing::debug!(source = id, next = %next, "next source sync");
        let settings = source.clone();
        loop {
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => break,
                _ = stop.wait_for(|s| *s) => return,
                changed = live.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let unchanged = live.borrow().config.source(&id) == Some(&settings);
                    if !unchanged {
                        tracing::info!(source = id, "source settings changed; syncing now");
                        break;
                    }
                }
            }
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
