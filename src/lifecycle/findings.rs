//! Jobs born of identity findings: the daily findings digest, and the
//! revocation or Slack deactivation an admin asked for from an
//! offboarded-but-active alert.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::revoke::{revoke_access, RevokeAsk};
use super::store_error;
use super::JobResult;
use crate::alerts::{self, kind};
use crate::app::App;
use crate::slack::views::alert;
use crate::slack::views::text::{escape, section};
use crate::sources::slack::{DeactivateError, Deactivated};
use crate::sources::AnySource;
use crate::store::StoreError;
use crate::store::{AuditEvent, Job, NewMessage};

pub mod job {
    pub use crate::domain::jobs::{ACCOUNT_REVOKE, SLACK_DEACTIVATE};
}

/// Posts every open finding, grouped, then sets tomorrow's timer.
pub async fn digest(app: &Arc<App>) -> JobResult {
    let config = app.config();
    let now = Utc::now();
    if let Some(channel) = alerts::channel_for(&config.alerts.channels, kind::FINDINGS_DIGEST) {
        let open = match app.store.alerts(None, vec!["open".into()]).await {
            Ok(open) => open,
            Err(err) => return store_error(app, err),
        };
        let (text, blocks) = alert::digest(&config, &open, now);
        let mut message = NewMessage::post(channel, &text, blocks);
        // One digest per day even if this job re-runs after a crash.
        message.dedupe_key = Some(format!("digest:{}", now.format("%Y-%m-%d")));
        if let Err(err) = app.outbox.send(message).await {
            return store_error(app, err);
        }
    }
    match schedule_digest(app).await {
        Ok(()) => JobResult::Done,
        Err(err) => store_error(app, err),
    }
}

/// Sets the daily digest timer to the next `alerts.digest_at` (a digest
/// missed while the daemon was down is skipped, not sent late).
pub async fn schedule_digest(app: &App) -> Result<(), StoreError> {
    let next = alerts::next_digest(app.config().alerts.digest_at, Utc::now());
    app.store
        .schedule_job(
            alerts::DIGEST_JOB.into(),
            alerts::DIGEST_SUBJECT.into(),
            next,
            Value::Null,
        )
        .await?;
    Ok(())
}

/// Revokes what an offboarded person still has in one app, then reports it
/// in the alert's thread. Re-runnable: see [`super::revoke::revoke_access`].
pub async fn account_revoke(app: &Arc<App>, job: &Job) -> JobResult {
    let text = |k: &str| payload_text(job, k);
    let key = text("key");
    let ask = RevokeAsk {
        app_id: text("app"),
        email: text("email"),
        entitlements: job
            .payload
            .get("entitlements")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        whole_account: true,
        key: format!("alert/{key}"),
        by: text("by"),
        reason: "offboarded".into(),
    };
    let report = match revoke_access(app, job, &ask).await {
        Ok(report) => report,
        Err(result) => return result,
    };
    let mut messages = report.owner_tasks;
    let text = format!(
        "Revocation for {}: {}",
        escape(&ask.email, 200),
        report.lines.join("; ")
    );
    messages.extend(thread_reply(app, &key, &text).await);
    for message in messages {
        if let Err(err) = app.outbox.send(message).await {
            return store_error(app, err);
        }
    }
    JobResult::Done
}

/// Deactivates the Slack account of an offboarded-but-active alert through
/// the `slack` source's SCIM token, audits the outcome and tells the alert's
/// thread. Re-runnable: deactivating twice is deactivating once.
pub async fn slack_deactivate(app: &Arc<App>, job: &Job) -> JobResult {
    let text = |k: &str| payload_text(job, k);
    let (key, source, account, by) = (text("key"), text("source"), text("account"), text("by"));
    let live = app.live();
    let outcome = match live.sources.get(&source).map(|s| s.as_ref()) {
        Some(AnySource::Slack(slack)) if slack.can_deactivate() => slack.deactivate(&account).await,
        _ => Err(DeactivateError {
            message: format!(
                "source {source:?} is no longer a Slack source with a scim_token_file"
            ),
            retry: false,
        }),
    };
    let (line, audit_action) = match &outcome {
        Ok(Deactivated::Done) => (
            format!(":white_check_mark: Deactivated `{}` in Slack (asked by {}).", escape(&account, 50), escape(&by, 200)),
            "alert.slack_deactivated",
        ),
        Ok(Deactivated::NotFound) => (
            format!(":grey_question: Slack's SCIM API knows no user `{}`: nothing was deactivated; check the account in Slack.", escape(&account, 50)),
            "alert.slack_deactivate_failed",
        ),
        // No answer or a server error: try again later, tell nobody yet.
        Err(err) if err.retry && job.attempts + 1 < app.job_options.max_attempts => {
            return JobResult::Retry {
                after: app.job_options.backoff(job.attempts, None),
                error: err.message.clone(),
            };
        }
        Err(DeactivateError { message, .. }) => (
            format!(":x: Could not deactivate `{}` in Slack: {}", escape(&account, 50), escape(message, 400)),
            "alert.slack_deactivate_failed",
        ),
    };
    let detail = json!({ "source": source, "account": account, "by": by,
                         "error": outcome.as_ref().err().map(|e| &e.message) });
    if let Err(err) = app
        .store
        .append_audit(AuditEvent::new(&by, audit_action, &key, detail))
        .await
    {
        return store_error(app, err);
    }
    if let Some(mut reply) = thread_reply(app, &key, &line).await {
        reply.dedupe_key = Some(format!("slack_deactivate:{key}"));
        if let Err(err) = app.outbox.send(reply).await {
            return store_error(app, err);
        }
    }
    match outcome {
        Ok(Deactivated::Done) => JobResult::Done,
        Ok(Deactivated::NotFound) => JobResult::Fail(format!("no SCIM user {account}")),
        Err(err) => JobResult::Fail(err.message),
    }
}

/// A string field of the job's payload; empty when absent.
fn payload_text(job: &Job, key: &str) -> String {
    job.payload
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `text` as a reply in the thread of alert `key`'s post, if it was posted.
async fn thread_reply(app: &App, key: &str, text: &str) -> Option<NewMessage> {
    let alert = app.store.alert(key.to_string()).await.ok().flatten()?;
    let (channel, ts) = alert.channel.zip(alert.ts)?;
    let mut reply = NewMessage::post(&channel, text, json!([section(text)]));
    reply.payload["thread_ts"] = json!(ts);
    Some(reply)
}
