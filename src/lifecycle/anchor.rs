//! The audit anchor: every `[audit] anchor_every`, the audit log's head is
//! posted to `anchor_channel`, so a record of it lives outside the host and
//! `accessd audit verify --head` can catch a log cut back or recomputed.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use super::{store_error, JobResult};
use crate::app::App;
use crate::domain::jobs;
use crate::slack::views::audit;
use crate::store::{NewMessage, StoreError};

/// The one anchor timer's subject.
const SUBJECT: &str = "audit";

/// Posts the head unless it was already posted (the dedupe key is the head
/// itself, so an idle log is not posted again), then sets the next timer.
pub async fn post(app: &Arc<App>) -> JobResult {
    let config = app.config();
    let Some(channel) = config.audit.anchor_channel.as_deref() else {
        // The channel was removed by a reload after this timer was set.
        return JobResult::Done;
    };
    let head = match app.store.audit_head().await {
        Ok(head) => head,
        Err(err) => return store_error(app, err),
    };
    if let Some(head) = head {
        let (text, blocks) = audit::anchor(head.seq, &head.hash);
        let mut message = NewMessage::post(channel, &text, blocks);
        message.dedupe_key = Some(format!("audit-anchor:{}:{}", head.seq, head.hash));
        if let Err(err) = app.outbox.send(message).await {
            return store_error(app, err);
        }
        tracing::info!(seq = head.seq, "audit head anchored");
    }
    match schedule_after(app, config.audit.anchor_every).await {
        Ok(()) => JobResult::Done,
        Err(err) => store_error(app, err),
    }
}

/// Arms the timer at start-up and reload: the head is posted at once (so a
/// restart never leaves the newest rows unanchored for a whole period), or
/// the timer is dropped when no channel is set.
pub async fn schedule(app: &App) -> Result<(), StoreError> {
    if app.config().audit.anchor_channel.is_none() {
        app.store
            .cancel_job(jobs::AUDIT_ANCHOR.into(), SUBJECT.into())
            .await?;
        return Ok(());
    }
    schedule_after(app, std::time::Duration::ZERO).await
}

async fn schedule_after(app: &App, wait: std::time::Duration) -> Result<(), StoreError> {
    let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(1));
    app.store
        .schedule_job(jobs::AUDIT_ANCHOR.into(), SUBJECT.into(), at, Value::Null)
        .await?;
    Ok(())
}
