//! What each durable job does: provisioning after approval, revocation at
//! expiry or on request, the expiry warning, approver reminders and
//! staleness, the findings digest, the audit anchor and revocations asked for
//! from alerts. Every step re-reads the ticket and grant from SQLite, so a job
//! that runs late or twice finds the state as it is and does the right thing.

pub mod anchor;
mod expiry;
pub mod findings;
pub mod notices;
mod provision;
mod reminders;
pub mod removal;
pub mod reviews;
pub mod revoke;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::domain::jobs;
use crate::domain::ticket::parse_ticket_ref;
use crate::store::grants::{job, parse_grant_ref};
use crate::store::Job;
use crate::store::StoreError;

pub use notices::reminder_timers;
pub use reminders::job as reminder_job;

/// What a job run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Finished (the lifecycle may already have marked it done in its own
    /// transaction; marking again is a no-op).
    Done,
    Retry {
        after: Duration,
        error: String,
    },
    /// Given up; kept in the table for inspection.
    Fail(String),
}

pub async fn run_job(app: &Arc<App>, job: &Job) -> JobResult {
    let ticket = || parse_ticket_ref(&job.subject);
    match job.kind.as_str() {
        job::PROVISION => match ticket() {
            Some(id) => provision::run(app, job, id).await,
            None => bad_subject(job),
        },
        job::REVOKE => match parse_grant_ref(&job.subject) {
            Some(id) => expiry::revoke(app, job, id).await,
            None => bad_subject(job),
        },
        job::EXPIRY_WARNING => match ticket() {
            Some(id) => expiry::warn(app, id).await,
            None => bad_subject(job),
        },
        reminders::job::REMIND => match ticket() {
            Some(id) => reminders::remind(app, id).await,
            None => bad_subject(job),
        },
        reminders::job::STALE => match ticket() {
            Some(id) => reminders::stale(app, job, id).await,
            None => bad_subject(job),
        },
        jobs::FINDINGS_DIGEST => findings::digest(app).await,
        jobs::AUDIT_ANCHOR => anchor::post(app).await,
        jobs::REMOVAL_REMIND => match parse_grant_ref(&job.subject) {
            Some(id) => removal::remind(app, job, id).await,
            None => bad_subject(job),
        },
        findings::job::ACCOUNT_REVOKE => findings::account_revoke(app, job).await,
        findings::job::SLACK_DEACTIVATE => findings::slack_deactivate(app, job).await,
        kind if jobs::review::is_review(kind) => reviews::run(app, job).await,
        other => {
            tracing::warn!(kind = other, "unknown job kind; dropped");
            JobResult::Fail(format!("unknown job kind {other}"))
        }
    }
}

fn bad_subject(job: &Job) -> JobResult {
    JobResult::Fail(format!(
        "bad subject {:?} for a {} job",
        job.subject, job.kind
    ))
}

/// Store errors are retried: the database is local, so they are brief.
fn store_error(app: &Arc<App>, err: StoreError) -> JobResult {
    tracing::error!(error = %err, "job could not use the database");
    JobResult::Retry {
        after: app.job_options.retry_base,
        error: err.to_string(),
    }
}

/// Slack ids of the app's owners (emails resolved through the link cache).
async fn owner_ids(app: &Arc<App>, app_id: &str) -> HashMap<String, String> {
    let config = app.config();
    let owners = config
        .app(app_id)
        .map(|a| config.owners_of(a))
        .unwrap_or_default();
    app.identity.slack_ids_of(owners).await
}
