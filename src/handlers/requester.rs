//! What a requester does to their own pending request from the Home tab:
//! **Nudge** (a reminder DM to the current approvers, at most once per
//! `requests.nudge_cooldown`) and **Cancel**.

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::tell::{failed, logged, place_of, tell, Place, Where};
use crate::app::App;
use crate::domain::jobs;
use crate::domain::ticket::parse_ticket_ref;
use crate::lifecycle::notices;
use crate::slack::envelope::Reply;
use crate::slack::views::text::fmt_time;
use crate::slack::views::ticket::requester_update;
use crate::store::JobChange;
use crate::store::Ticket;
use crate::store::{Actor, Changed, Effects, NewMessage};

async fn actor(app: &Arc<App>, user: &str) -> Option<Actor> {
    let email = app.identity.email_of(user).await.ok().flatten()?;
    Some(Actor {
        slack_id: user.to_string(),
        email,
    })
}

/// Who clicked which of their tickets; `None` (after telling them why, when
/// they can be told) if the click cannot be acted on.
struct Click {
    user: String,
    place: Place,
    actor: Actor,
    ticket: Ticket,
}

async fn click(
    app: &Arc<App>,
    value: &str,
    event: &SlackInteractionBlockActionsEvent,
) -> Option<Click> {
    let user = super::user_of(event);
    let place = place_of(event);
    let id = parse_ticket_ref(value)?;
    let Some(actor) = actor(app, &user).await else {
        let why = "accessd cannot tell who you are (no email on your Slack account).";
        tell(app, &user, &place, why).await;
        return None;
    };
    let ticket = app.store.ticket(id).await.ok().flatten()?;
    Some(Click {
        user,
        place,
        actor,
        ticket,
    })
}

pub async fn nudge(app: &Arc<App>, value: &str, event: SlackInteractionBlockActionsEvent) -> Reply {
    let config = app.config();
    let Some(Click {
        user,
        place,
        actor,
        ticket,
    }) = click(app, value, &event).await
    else {
        return Reply::empty();
    };
    let id = ticket.id;
    let ids = app
        .identity
        .slack_ids_of(ticket.plan.stage_approvers(ticket.stage))
        .await;
    let cooldown = config.requests.nudge_cooldown;
    let effects = move |t: &Ticket| Effects {
        messages: notices::reminder_messages(&config, t, &ids),
        ..Effects::default()
    };
    let answer = match app.store.nudge_ticket(id, actor, cooldown, effects).await {
        Ok(Changed::Done(t)) => {
            app.outbox.wake();
            format!("Reminded the approvers of {}.", t.reference())
        }
        Ok(Changed::TooSoon { ticket, next_at }) => {
            format!(
                "You nudged {} recently; you can nudge again {}.",
                ticket.reference(),
                fmt_time(next_at)
            )
        }
        Ok(Changed::NotApplicable(t)) => format!("{} is already {}.", t.reference(), t.status),
        Ok(Changed::Refused { reason, .. }) => reason,
        Err(err) => logged(
            err,
            "nudge",
            "accessd could not send the reminder; please try again.",
        )
        .into(),
    };
    tell(app, &user, &place, &answer).await;
    Reply::empty()
}

pub async fn cancel(
    app: &Arc<App>,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let config = app.config();
    let Some(Click {
        user,
        place,
        actor,
        ticket,
    }) = click(app, value, &event).await
    else {
        return Reply::empty();
    };
    let id = ticket.id;
    let ids = app.identity.slack_ids_of(ticket.plan.approvers()).await;
    let effects = move |t: &Ticket| {
        let mut effects = Effects::default();
        notices::update_approver_copies(&config, t, &ids, &mut effects);
        effects.jobs.extend([
            JobChange::cancel(jobs::REMIND, &t.reference()),
            JobChange::cancel(jobs::STALE, &t.reference()),
        ]);
        let (text, blocks) = requester_update(&config, t, &[]);
        effects
            .messages
            .push(NewMessage::post(&t.requester_slack_id, &text, blocks));
        effects
    };
    match app.store.cancel_ticket(id, actor, effects).await {
        Ok(Changed::Done(_)) => {
            app.outbox.wake();
            let app = app.clone();
            Reply::empty().then(async move { app.home_refresh.request_all(&[user.as_str()]) })
        }
        Ok(Changed::NotApplicable(t)) => {
            tell(
                app,
                &user,
                &place,
                &format!("{} is already {}.", t.reference(), t.status),
            )
            .await;
            Reply::empty()
        }
        Ok(Changed::Refused { reason, .. }) => {
            tell(app, &user, &place, &reason).await;
            Reply::empty()
        }
        Ok(Changed::TooSoon { .. }) => Reply::empty(),
        Err(err) => {
            return failed(
                app,
                err,
                "cancel",
                "accessd could not cancel the request; please try again.",
                Where::Clicked {
                    user: &user,
                    place: &place,
                },
            )
            .await
        }
    }
}
