//! Clicks on granted access: the requester's **Extend** (modal → an
//! extension ticket through the same policy) and **Release now**, an
//! approver's **Revoke** of break-glass access, and an app owner's **Mark
//! done** / **Could not do it** on a manual task and **Removed** / **Could
//! not remove** when a manual grant ends. Each is re-authorised from the
//! database and the current config, and committed before the ack.

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::tell::{failed, logged, open_modal, place_of, refuse, tell, Place, Where, NOT_RECORDED};
use super::who::{involved, plan_for, reachable_plan, requester_email, Who};
use crate::alerts;
use crate::app::App;
use crate::config::Config;
use crate::domain::policy;
use crate::domain::ticket::{parse_ticket_ref, Kind, Status};
use crate::lifecycle::{notices, removal};
use crate::slack::envelope::Reply;
use crate::slack::ids::*;
use crate::slack::modal::{checked_duration, value_of};
use crate::slack::views::grant as views;
use crate::slack::views::request::{notice, submitted as submitted_view};
use crate::store::grants::parse_grant_ref;
use crate::store::Grant;
use crate::store::{Actor, Changed, Created, Effects, NewMessage, NewTicket, Ticket};
use crate::store::{AuditEvent, GrantStatus};

/// Who clicked, on which ticket. Answers the user itself when it cannot go on.
async fn clicked_ticket(
    app: &Arc<App>,
    value: &str,
    event: &SlackInteractionBlockActionsEvent,
) -> Option<(Actor, Place, Ticket)> {
    let user = super::user_of(event);
    let place = place_of(event);
    let Ok(Some(email)) = app.identity.email_of(&user).await else {
        let why = "accessd cannot tell who you are (no email on your Slack account).";
        refuse(app, &user, &place, why, None).await;
        return None;
    };
    let ticket = match parse_ticket_ref(value) {
        Some(id) => app.store.ticket(id).await.ok().flatten(),
        None => None,
    };
    // Someone with no part in the ticket hears the same as for one that
    // does not exist: nothing of its status or people.
    let Some(ticket) = ticket.filter(|t| involved(&app.config(), t, &email)) else {
        let why = "That access no longer exists, or is not yours to act on.";
        refuse(app, &user, &place, why, None).await;
        return None;
    };
    Some((
        Actor {
            slack_id: user,
            email,
        },
        place,
        ticket,
    ))
}

fn only_requester(actor: &Actor) -> impl FnOnce(&Ticket) -> Result<(), String> + Send + 'static {
    let slack_id = actor.slack_id.clone();
    move |t: &Ticket| {
        if t.requester_slack_id == slack_id {
            Ok(())
        } else {
            Err(format!("Only the requester can release {}.", t.reference()))
        }
    }
}

/// Approvers of any stage of the ticket, or admins; never the requester.
fn approver_or_admin(
    config: Arc<Config>,
    actor: &Actor,
) -> impl FnOnce(&Ticket) -> Result<(), String> + Send + 'static {
    let email = actor.email.to_lowercase();
    move |t: &Ticket| {
        if t.requester_email.eq_ignore_ascii_case(&email) {
            return Err("You cannot revoke your own access this way; use Release now.".into());
        }
        let approver = t.plan.stages.iter().any(|s| s.approvers.contains(&email));
        if approver || config.is_admin(&email) {
            Ok(())
        } else {
            Err(format!(
                "Only the approvers of {} or an admin can revoke it.",
                t.reference()
            ))
        }
    }
}

/// Owners of the app, or admins; never the requester.
fn owner_or_admin(
    config: Arc<Config>,
    actor: &Actor,
) -> impl FnOnce(&Ticket) -> Result<(), String> + Send + 'static {
    let email = actor.email.to_lowercase();
    move |t: &Ticket| {
        if t.requester_email.eq_ignore_ascii_case(&email) {
            return Err("You cannot complete a task for your own request.".into());
        }
        let owner = config
            .app(&t.app_id)
            .is_some_and(|a| config.owners_of(a).contains(&email));
        if owner || config.is_admin(&email) {
            Ok(())
        } else {
            Err(format!(
                "Only the owners of {} or an admin can do this task.",
                t.app_id
            ))
        }
    }
}

/// Release now (the requester) or Revoke (an approver, after break-glass).
pub async fn revoke(
    app: &Arc<App>,
    action_id: &str,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let Some((actor, place, ticket)) = clicked_ticket(app, value, &event).await else {
        return Reply::empty();
    };
    let user = actor.slack_id.clone();
    let (reason, result) = if action_id == RELEASE {
        let check = only_requester(&actor);
        (
            "released",
            app.store
                .revoke_now(ticket.id, None, actor, "released".into(), check)
                .await,
        )
    } else {
        let check = approver_or_admin(app.config(), &actor);
        (
            "revoked",
            app.store
                .revoke_now(ticket.id, None, actor, "revoked".into(), check)
                .await,
        )
    };
    let answer = match result {
        Ok(Changed::Done(t)) => {
            app.jobs.wake();
            format!(
                "Access of {} is being {reason}; you will see it end shortly.",
                t.reference()
            )
        }
        Ok(Changed::NotApplicable(t)) => format!(
            "{} has no active access to end ({}).",
            t.reference(),
            t.status
        ),
        Ok(Changed::Refused { reason, .. }) => {
            refuse(app, &user, &place, &reason, None).await;
            return Reply::empty();
        }
        Ok(Changed::TooSoon { .. }) => String::new(),
        Err(err) => logged(err, "revoke", NOT_RECORDED).into(),
    };
    tell(app, &user, &place, &answer).await;
    Reply::empty()
}

/// Mark done / Could not do it on a manual task.
pub async fn task(
    app: &Arc<App>,
    action_id: &str,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let config = app.config();
    let Some((actor, place, ticket)) = clicked_ticket(app, value, &event).await else {
        return Reply::empty();
    };
    let user = actor.slack_id.clone();
    let done = action_id == TASK_DONE;
    let check = owner_or_admin(config.clone(), &actor);
    let by = user.clone();
    let warning = config.requests.expiry_warning;
    let effects = move |t: &Ticket, grants: &[Grant]| {
        let mut effects = Effects::default();
        for copy in &t.task_messages {
            let (text, blocks) = views::manual_task(&config, t, Some(&by));
            effects.messages.push(NewMessage::update(
                &copy.approver_slack_id,
                &copy.channel,
                &copy.ts,
                &text,
                blocks,
            ));
        }
        let (text, blocks) = views::provisioned(&config, t, grants);
        effects
            .messages
            .push(NewMessage::post(&t.requester_slack_id, &text, blocks));
        if let (false, Some(failure)) = (done, t.failure.as_deref()) {
            let (text, blocks) = views::provisioning_failed_alert(&config, t, failure);
            effects.messages.extend(alerts::post(
                config.alerts.channels.provisioning_failed.as_ref(),
                &text,
                blocks,
            ));
        }
        effects
    };
    match app
        .store
        .settle_manual_task(ticket.id, actor, done, warning, check, effects)
        .await
    {
        Ok(Changed::Done(t)) => {
            app.outbox.wake();
            app.jobs.wake();
            app.home_refresh.request(&t.requester_slack_id);
        }
        Ok(Changed::NotApplicable(t)) => {
            let text = format!("{} is already {}; nothing to do.", t.reference(), t.status);
            tell(app, &user, &place, &text).await;
        }
        Ok(Changed::Refused { reason, .. }) => refuse(app, &user, &place, &reason, None).await,
        Ok(Changed::TooSoon { .. }) => {}
        Err(err) => {
            return failed(
                app,
                err,
                "settle a manual task",
                NOT_RECORDED,
                Where::Clicked {
                    user: &user,
                    place: &place,
                },
            )
            .await
        }
    }
    Reply::empty()
}

/// The longest extension: the role's (or app's) cap.
fn extension_cap(config: &Config, ticket: &Ticket) -> std::time::Duration {
    config
        .app(&ticket.app_id)
        .map_or(config.requests.max_duration, |a| {
            policy::form_cap(a, &ticket.roles)
        })
}

/// Extend: opens the modal (after the ack; reads only).
pub async fn extend_clicked(
    app: &Arc<App>,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let config = app.config();
    let trigger_id = event.trigger_id.0.clone();
    let app = app.clone();
    let value = value.to_string();
    Reply::empty().then(async move {
        let Some((actor, place, ticket)) = clicked_ticket(&app, &value, &event).await else {
            return;
        };
        if ticket.requester_slack_id != actor.slack_id || ticket.status != Status::Active {
            let why = format!(
                "Only the requester can extend {}, while it is active.",
                ticket.reference()
            );
            return refuse(&app, &actor.slack_id, &place, &why, None).await;
        }
        let view = views::extend_modal(&config, &ticket, extension_cap(&config, &ticket));
        open_modal(&app, &trigger_id, view, "extend").await;
    })
}

/// The extend modal was submitted: an extension ticket, approved like a request.
pub async fn extend_submitted(
    app: &Arc<App>,
    submission: SlackInteractionViewSubmissionEvent,
) -> Reply {
    let config = app.config();
    let user = submission.user.id.0.clone();
    let metadata = match &submission.view.view {
        SlackView::Modal(m) => m.private_metadata.clone().unwrap_or_default(),
        SlackView::Home(_) => return Reply::empty(),
    };
    let parent = match parse_ticket_ref(&metadata) {
        Some(id) => app.store.ticket(id).await.ok().flatten(),
        None => None,
    };
    let Some(parent) =
        parent.filter(|p| p.requester_slack_id == user && p.status == Status::Active)
    else {
        return Reply::update(notice(
            "That access is no longer active, or not yours to extend.",
        ));
    };
    let Some(found) = config.app(&parent.app_id) else {
        return Reply::update(notice("That app is no longer in the catalog."));
    };
    // An extension is a request: whoever may no longer request may not extend.
    if let Who::Refused(why) = requester_email(app, &user).await {
        return Reply::update(notice(&why));
    }
    let text = value_of(&submission, DURATION_BLOCK, DURATION_ACTION).unwrap_or_default();
    let duration = match checked_duration(&text, extension_cap(&config, &parent)) {
        Ok(d) => d,
        Err(why) => return Reply::field_errors(&[(DURATION_BLOCK, why)]),
    };
    let reason = value_of(&submission, REASON_BLOCK, REASON_ACTION).unwrap_or_default();
    if reason.trim().is_empty() {
        return Reply::field_errors(&[(REASON_BLOCK, "Say why you need more time.".into())]);
    }
    let email = parent.requester_email.clone();
    let plan = match plan_for(app, found, &parent.roles, &email).await {
        Ok(plan) => plan,
        Err(err) => return Reply::update(notice(&err.to_string())),
    };
    let ids = app.identity.slack_ids_of(plan.candidates(&config)).await;
    let plan = match reachable_plan(&config, plan, &ids, &[], &email) {
        Ok(plan) => plan,
        Err(why) => return Reply::update(notice(&why)),
    };
    let new = NewTicket {
        requester_slack_id: user.clone(),
        requester_email: email,
        app_id: parent.app_id.clone(),
        roles: parent.roles.clone(),
        reason: reason.trim().to_string(),
        duration_secs: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        status: if plan.auto_approve {
            Status::Approved
        } else {
            Status::Pending
        },
        plan,
        kind: Kind::Extension,
        parent: Some(parent.id),
        // An extension carries on the outside reference of what it extends.
        reference: parent.reference.clone(),
    };
    let effects = move |t: &Ticket| notices::creation_effects(&config, t, &ids);
    match app.store.create_ticket(new, effects).await {
        Ok(Created::New(t)) => {
            app.outbox.wake();
            app.jobs.wake();
            let text = format!(
                "extends {} and was sent to the approvers.",
                parent.reference()
            );
            Reply::update(submitted_view(&t.reference(), &text))
        }
        Ok(Created::Duplicate(open)) => Reply::update(notice(&format!(
            "You already have {} pending for this access.",
            open.reference()
        ))),
        Err(err) => {
            failed(
                app,
                err,
                "create an extension",
                "accessd could not record your request; nothing was sent. Please try again.",
                Where::Modal,
            )
            .await
        }
    }
}

/// **Removed** / **Could not remove** on a manual grant's removal request:
/// an owner of the app or an admin, never the person who holds it (they
/// could keep the access while the record says it is gone). Removed ends
/// the grant; Could not remove alerts the admins and leaves it active.
pub async fn removal(
    app: &Arc<App>,
    action_id: &str,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let config = app.config();
    let grant = match parse_grant_ref(value) {
        Some(id) => app.store.revoke_target(id).await.ok().flatten(),
        None => None,
    };
    let Some((actor, place, ticket)) = clicked_ticket(app, &ticket_key(&grant), &event).await
    else {
        return Reply::empty();
    };
    let user = actor.slack_id.clone();
    let Some(target) = grant.filter(|g| g.grant.manual) else {
        tell(
            app,
            &user,
            &place,
            "That access has already ended; nothing to do.",
        )
        .await;
        return Reply::empty();
    };
    if let Err(why) = owner_or_admin(config.clone(), &actor)(&ticket) {
        refuse(app, &user, &place, &why, None).await;
        return Reply::empty();
    }
    let grant = &target.grant;
    let reference = grant.reference();
    let outcome = if action_id == REMOVAL_DONE {
        let end = match grant.expires_at {
            Some(at) if at > chrono::Utc::now() => GrantStatus::Revoked,
            _ => GrantStatus::Expired,
        };
        let effects_config = config.clone();
        app.store
            .end_grant(
                grant.id,
                None,
                end,
                format!("removed by {}", actor.email),
                move |t, g| {
                    let mut effects = Effects::default();
                    let (text, blocks) = views::ended(&effects_config, t, g);
                    effects
                        .messages
                        .push(NewMessage::post(&t.requester_slack_id, &text, blocks));
                    effects
                },
            )
            .await
            .map(|_| format!("Recorded: {reference} removed. Thank you."))
    } else {
        let recorded = app
            .store
            .append_audit(AuditEvent::new(
                &actor.email,
                "grant.removal_failed",
                reference.clone(),
                serde_json::json!({ "by": actor.email }),
            ))
            .await;
        if recorded.is_ok() {
            let (text, blocks) = views::revoke_failed_alert(
                &config,
                &target.ticket,
                grant,
                &format!("{} could not remove this manual grant by hand", actor.email),
            );
            if let Some(message) = alerts::post(
                config.alerts.channels.provisioning_failed.as_ref(),
                &text,
                blocks,
            ) {
                if let Err(err) = app.outbox.send(message).await {
                    tracing::error!(error = %err, "could not queue a removal-failed alert");
                }
            }
        }
        recorded.map(|_| {
            format!("Recorded: {reference} could not be removed. The accessd admins were alerted; it stays active until someone clicks Removed.")
        })
    };
    let text = match outcome {
        Ok(text) => text,
        Err(err) => {
            return failed(
                app,
                err,
                "record a manual removal",
                NOT_RECORDED,
                Where::Clicked {
                    user: &user,
                    place: &place,
                },
            )
            .await
        }
    };
    if let Err(err) = removal::answered(app, &reference).await {
        tracing::error!(error = %err, grant = reference, "could not stop the removal reminders");
    }
    app.outbox.wake();
    app.home_refresh.request(&target.ticket.requester_slack_id);
    tell(app, &user, &place, &text).await;
    Reply::empty()
}

/// The ticket a removal click is about, as `clicked_ticket` reads it (an
/// unknown grant gives a key that finds nothing, answered as such).
fn ticket_key(grant: &Option<crate::store::RevokeTarget>) -> String {
    grant
        .as_ref()
        .map_or_else(String::new, |g| g.ticket.id.to_string())
}
