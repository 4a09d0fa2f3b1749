//! The durable job runner: picks up due rows of the `jobs` table (also
//! overdue ones after downtime, in the order they fell due), runs each on its
//! own task with bounded concurrency, and records retry or failure. What a
//! job *does* lives in [`crate::lifecycle`]; this module only owns timing.
//!
//! Jobs scheduled by another process (the CLI) are noticed within `poll`;
//! handlers in this process call [`Wake::wake`] to start theirs at once.
//!
//! Identity-source polls run on their own timers, in [`sources`]; the Slack
//! user groups the config names are re-read by [`usergroups`].

pub mod sources;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{watch, Semaphore};

use crate::app::App;
pub use crate::app::{JobOptions, Wake};
use crate::lifecycle;
use crate::lifecycle::JobResult;
use crate::store;
use crate::store::Job;

/// Re-reads the Slack user groups the config names every
/// `usergroup_refresh` until `stop`, so their members are fresh when they
/// click (a click re-reads a group itself if this fell behind).
pub async fn usergroups(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let every = app.job_options.usergroup_refresh;
    loop {
        app.refresh_usergroups(std::time::Duration::ZERO, every)
            .await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Runs due jobs until `stop` turns true; in-flight jobs are then awaited
/// (the caller bounds that with the shutdown budget; an interrupted job is
/// still pending and re-runs with the same idempotency key).
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let options = app.job_options.clone();
    let running: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let now = Utc::now();
        let due = match app.store.due_jobs(now, 256).await {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "could not read due jobs");
                Vec::new()
            }
        };
        for job in due {
            if !lock(&running).insert(job.id) {
                continue;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let app = app.clone();
            let running = running.clone();
            tasks.spawn(store::background(async move {
                let id = job.id;
                run_one(&app, job).await;
                lock(&running).remove(&id);
                drop(permit);
                app.jobs.wake();
            }));
        }
        while tasks.try_join_next().is_some() {}
        let wait = match app.store.next_job_at().await {
            Ok(Some(next)) => (next - Utc::now()).to_std().unwrap_or_default(),
            _ => options.poll,
        }
        .min(options.poll);
        // A due job already running would make `wait` zero: wait for a
        // finished task's wake instead of spinning.
        let wait = if wait.is_zero() { options.poll } else { wait };
        tokio::select! {
            _ = app.jobs.woken() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

fn lock(running: &Mutex<HashSet<i64>>) -> std::sync::MutexGuard<'_, HashSet<i64>> {
    running.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run_one(app: &Arc<App>, job: Job) {
    let started = std::time::Instant::now();
    let result = lifecycle::run_job(app, &job).await;
    tracing::debug!(job = job.id, kind = job.kind, subject = job.subject, ?result, elapsed = ?started.elapsed(), "job ran");
    let recorded = match &result {
        JobResult::Done => app.store.complete_job(job.id).await,
        JobResult::Retry { after, error } => {
            tracing::warn!(kind = job.kind, subject = job.subject, attempts = job.attempts + 1, retry_in = ?after, error, "job failed; will retry");
            let at = Utc::now() + chrono::Duration::from_std(*after).unwrap_or_default();
            app.store.retry_job(job.id, at, error.clone()).await
        }
        JobResult::Fail(error) => {
            tracing::error!(
                kind = job.kind,
                subject = job.subject,
                error,
                "job failed for good"
            );
            app.store.fail_job(job.id, error.clone()).await
        }
    };
    if let Err(err) = recorded {
        tracing::error!(job = job.id, error = %err, "could not record a job's result");
    }
    app.outbox.wake();
}
