//! The `revoke` job (expiry, Release now, an admin or approver revoking) and
//! the `expiry_warning` job. A revoke goes through the provisioner that made
//! the grant, to the account it reported; one that says "already absent" is
//! done; a grant that predates its ticket is ended in accessd but left in
//! the app.

use std::sync::Arc;

use super::store_error;
use super::JobResult;
use crate::alerts;
use crate::app::App;
use crate::domain::ticket::Status;
use crate::provision::{Action, Outcome, Person, Request, Target};
use crate::slack::views::grant as views;
use crate::store;
use crate::store::{Effects, GrantStatus, Job, NewMessage, RevokeTarget};

pub async fn revoke(app: &Arc<App>, job: &Job, grant_id: i64) -> JobResult {
    let config = app.config();
    let target = match app.store.revoke_target(grant_id).await {
        Ok(Some(target)) => target,
        Ok(None) => return JobResult::Done,
        Err(err) => return store_error(app, err),
    };
    let RevokeTarget { grant, ticket } = &target;
    let reason = job
        .payload
        .get("reason")
        .and_then(|v| v.as_str())
        .unwrap_or("expired")
        .to_string();
    let by = job.payload.get("by").and_then(|v| v.as_str());
    let (end, ended_by) = match (reason.as_str(), by) {
        ("expired", _) => (GrantStatus::Expired, "expired".to_string()),
        (reason, Some(by)) => (GrantStatus::Revoked, format!("{reason} by {by}")),
        (reason, None) => (GrantStatus::Revoked, reason.to_string()),
    };
    let live = app.live();
    // The one that granted it; the app's current one only for grants made
    // before that was recorded.
    let provisioner_id = grant.provisioner_id.clone().or_else(|| {
        live.config
            .app(&grant.app_id)
            .and_then(|a| a.provisioner.clone())
    });
    let provisioner = provisioner_id
        .as_deref()
        .and_then(|id| live.provisioners.get(id));
    if !grant.preexisting && !grant.manual {
        let Some(provisioner) = provisioner else {
            let message = match &provisioner_id {
                Some(id) => format!(
                    "{}: the provisioner {id:?} that granted it is no longer configured; restore it, or remove the access by hand",
                    grant.reference(),
                ),
                None => format!(
                    "{}: the app {} has no provisioner any more; remove the access by hand",
                    grant.reference(),
                    grant.app_id,
                ),
            };
            revoke_alert(app, &target, &message).await;
            return JobResult::Fail(message);
        };
        let request = Request {
            action: Action::Revoke,
            idempotency_key: grant.revoke_key(),
            ticket: ticket.reference(),
            app: grant.app_id.clone(),
            role: grant.role_id.clone(),
            entitlement: grant.entitlement.clone(),
            user: Person {
                email: grant.person_email.clone(),
                slack_id: ticket.requester_slack_id.clone(),
            },
            expires_at: grant.expires_at,
            target: grant.target.as_deref().and_then(Target::decode),
            account: None,
        };
        match super::provision::provisioned(app, &provisioner, &request)
            .await
            .0
        {
            Outcome::Applied | Outcome::AlreadyInState => {}
            Outcome::Transient {
                message,
                retry_after,
            } => {
                // Never give up on removing access: keep trying at the capped
                // interval, and tell a person once it is clearly stuck.
                if job.attempts + 1 == app.job_options.max_attempts {
                    revoke_alert(app, &target, &message).await;
                }
                return JobResult::Retry {
                    after: app.job_options.backoff(job.attempts, retry_after),
                    error: message,
                };
            }
            Outcome::Permanent { message } => {
                revoke_alert(app, &target, &message).await;
                return JobResult::Fail(message);
            }
        }
    }
    if grant.manual && !grant.preexisting {
        // Only a person can take it away: it stays active until one says so.
        return super::removal::ask(app, &target, &ended_by).await;
    }
    let ended = app
        .store
        .end_grant(grant_id, Some(job.id), end, ended_by, move |t, g| {
            let mut effects = Effects::default();
            let (text, blocks) = views::ended(&config, t, g);
            effects
                .messages
                .push(NewMessage::post(&t.requester_slack_id, &text, blocks));
            effects
        })
        .await;
    match ended {
        Ok(_) => {
            app.home_refresh.request(&ticket.requester_slack_id);
            JobResult::Done
        }
        Err(err) => store_error(app, err),
    }
}

async fn revoke_alert(app: &Arc<App>, target: &RevokeTarget, error: &str) {
    let config = app.config();
    let (text, blocks) = views::revoke_failed_alert(&config, &target.ticket, &target.grant, error);
    if let Some(message) = alerts::post(
        config.alerts.channels.provisioning_failed.as_ref(),
        &text,
        blocks,
    ) {
        if let Err(err) = app.outbox.send(message).await {
            tracing::error!(error = %err, "could not queue a revoke-failed alert");
        }
    }
}

pub async fn warn(app: &Arc<App>, ticket_id: i64) -> JobResult {
    let ticket = match app.store.ticket(ticket_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return JobResult::Done,
        Err(err) => return store_error(app, err),
    };
    if ticket.status != Status::Active {
        return JobResult::Done;
    }
    let (text, blocks) = views::expiry_warning(&app.config(), &ticket);
    let mut message = NewMessage::post(&ticket.requester_slack_id, &text, blocks);
    // One warning per expiry, even if this job re-runs after a crash.
    message.dedupe_key = Some(format!(
        "expiry_warning/{}/{}",
        ticket.reference(),
        ticket.expires_at.map(store::ts).unwrap_or_default()
    ));
    match app.outbox.send(message).await {
        Ok(_) => JobResult::Done,
        Err(err) => store_error(app, err),
    }
}
