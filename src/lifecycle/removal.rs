//! Manual grants at their end: nobody but a person can take away what a
//! person granted, so the owners are asked to remove it and the grant stays
//! `active` (asked again every `requests.reminder_every`) until one of them
//! clicks *Removed*; *Could not remove* alerts the admins.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::{owner_ids, store_error, JobResult};
use crate::alerts;
use crate::app::App;
use crate::domain::jobs;
use crate::slack::views::grant as views;
use crate::store::{AuditEvent, Job, NewMessage, RevokeTarget, StoreError};

/// Asks the owners to remove the grant (`why`: what ended it) and sets the
/// reminder. Re-runnable: the first ask is sent once per grant.
pub async fn ask(app: &Arc<App>, target: &RevokeTarget, why: &str) -> JobResult {
    let RevokeTarget { grant, .. } = target;
    if let Err(err) = app
        .store
        .append_audit(AuditEvent::new(
            "accessd",
            "grant.removal_asked",
            grant.reference(),
            json!({ "why": why }),
        ))
        .await
    {
        return store_error(app, err);
    }
    if let Err(err) = post(app, target, why, false).await {
        return store_error(app, err);
    }
    match schedule(app, &grant.reference(), why).await {
        Ok(()) => JobResult::Done,
        Err(err) => store_error(app, err),
    }
}

/// The reminder: asked again while the grant is still active.
pub async fn remind(app: &Arc<App>, job: &Job, grant_id: i64) -> JobResult {
    let target = match app.store.revoke_target(grant_id).await {
        Ok(Some(target)) => target,
        // Ended meanwhile (Removed was clicked): nothing to remind of.
        Ok(None) => return JobResult::Done,
        Err(err) => return store_error(app, err),
    };
    let why = job
        .payload
        .get("why")
        .and_then(|v| v.as_str())
        .unwrap_or("expired")
        .to_string();
    if let Err(err) = post(app, &target, &why, true).await {
        return store_error(app, err);
    }
    match schedule(app, &target.grant.reference(), &why).await {
        Ok(()) => JobResult::Done,
        Err(err) => store_error(app, err),
    }
}

async fn post(
    app: &Arc<App>,
    target: &RevokeTarget,
    why: &str,
    reminder: bool,
) -> Result<(), StoreError> {
    let config = app.config();
    let RevokeTarget { grant, ticket } = target;
    let owners = owner_ids(app, &grant.app_id).await;
    if owners.is_empty() {
        // Nobody to ask: the admins must see it, or the access stays forever.
        let (text, blocks) = views::revoke_failed_alert(
            &config,
            ticket,
            grant,
            "a manual grant ended and the app has no owner accessd can reach in Slack to remove it",
        );
        if let Some(message) = alerts::post(
            config.alerts.channels.provisioning_failed.as_ref(),
            &text,
            blocks,
        ) {
            app.outbox.send(message).await?;
        }
        return Ok(());
    }
    let (text, blocks) = views::manual_removal(&config, ticket, grant, why, reminder);
    for owner in owners.values() {
        let mut message = NewMessage::post(owner, &text, blocks.clone());
        if !reminder {
            message.dedupe_key = Some(format!("removal/{}/{owner}", grant.reference()));
        }
        app.outbox.send(message).await?;
    }
    Ok(())
}

async fn schedule(app: &Arc<App>, grant: &str, why: &str) -> Result<(), StoreError> {
    let every = app.config().requests.reminder_every;
    let at = Utc::now() + chrono::Duration::from_std(every).unwrap_or(chrono::Duration::days(1));
    app.store
        .schedule_job(
            jobs::REMOVAL_REMIND.into(),
            grant.into(),
            at,
            json!({ "why": why }),
        )
        .await?;
    Ok(())
}

/// Stops the reminders once someone answered.
pub async fn answered(app: &App, grant: &str) -> Result<(), StoreError> {
    app.store
        .cancel_job(jobs::REMOVAL_REMIND.into(), grant.into())
        .await?;
    Ok(())
}
