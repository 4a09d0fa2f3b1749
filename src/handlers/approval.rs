//! Approve / Reject: the click (re-authorised, then the modal), and the
//! modal's submission (re-authorised again inside the transaction that records
//! the decision, so racing clicks serialise and a forged payload changes
//! nothing). The decision is committed before the envelope is acked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use slack_morphism::prelude::*;

use super::tell::{failed, open_modal, place_of, refuse, tell, Where};
use super::who::{involved, manager_of};
use crate::app::App;
use crate::config::Config;
use crate::domain::jobs;
use crate::domain::policy::{self, Authority, Requester};
use crate::domain::ticket;
use crate::domain::ticket::{Transition, Verdict};
use crate::lifecycle;
use crate::lifecycle::notices;
use crate::slack::envelope::Reply;
use crate::slack::ids::*;
use crate::slack::modal::{checked_duration, value_of};
use crate::slack::views::request::notice;
use crate::slack::views::text::mention;
use crate::slack::views::ticket::{approve_modal, reject_modal, requester_update};
use crate::store::{
    Actor, AuditEvent, Decided, DecisionInput, Effects, JobChange, NewMessage, Ticket,
};

/// Why a click on Approve or Reject is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The config in force no longer allows the ticket at all; it is closed.
    Policy(String),
    /// This person may not decide it now.
    Actor(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Policy(why) | Refusal::Actor(why) => f.write_str(why),
        }
    }
}

/// Whether `actor` may decide `ticket` now: re-computed from the current
/// config and the requester, never taken from the ticket or the payload. A
/// ticket the current policy no longer allows is refused to everyone
/// (admins included); the plan frozen in the ticket never stands in for a
/// plan that cannot be computed. `manager` is the requester's manager from
/// the identity sources.
pub fn may_decide(
    config: &Config,
    ticket: &Ticket,
    actor_email: &str,
    manager: Option<&str>,
) -> Result<(), Refusal> {
    let closed = |why: String| {
        Refusal::Policy(format!(
            "{} can no longer be decided: {why}",
            ticket.reference()
        ))
    };
    let app = policy::still_allowed(
        config,
        &ticket.app_id,
        &ticket.roles,
        &ticket.requester_email,
    )
    .map_err(closed)?;
    let requester = Requester {
        email: &ticket.requester_email,
        manager,
    };
    let mut plan =
        policy::plan(config, app, &ticket.roles, &requester).map_err(|e| closed(e.to_string()))?;
    // A stage that fell back (approvers unreachable in Slack) keeps its frozen
    // approvers, as long as they are still fallback approvers.
    if let (Some(frozen), true) = (
        ticket.plan.stages.get(ticket.stage),
        ticket.stage < plan.stages.len(),
    ) {
        if frozen.fallback {
            let fallback = config.expand(&config.requests.fallback_approvers);
            plan.stages[ticket.stage].approvers = frozen
                .approvers
                .iter()
                .filter(|e| fallback.contains(*e))
                .cloned()
                .collect();
        }
    }
    // Separation of duties: whoever decided one stage decides no other.
    if let Some(earlier) = ticket.approvals.iter().find(|a| {
        a.stage != ticket.stage
            && a.approver_email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(actor_email))
    }) {
        return Err(Refusal::Actor(format!(
            "You decided stage {} of {}; someone else must decide stage {}.",
            earlier.stage + 1,
            ticket.reference(),
            ticket.stage + 1
        )));
    }
    match policy::authority(
        config,
        &plan,
        ticket.stage,
        &ticket.requester_email,
        actor_email,
    ) {
        Authority::Approver | Authority::Admin => Ok(()),
        Authority::Requester => Err(Refusal::Actor(format!(
            "You cannot decide your own request {}.",
            ticket.reference()
        ))),
        Authority::None => Err(Refusal::Actor(format!(
            "You are not an approver of {} at its current stage.",
            ticket.reference()
        ))),
    }
}

/// Closes a ticket the config in force no longer allows, telling everyone.
async fn close_by_policy(app: &Arc<App>, config: &Config, ticket: &Ticket, why: String) {
    let ids = app.identity.slack_ids_of(ticket.plan.approvers()).await;
    let effects_config = config.clone();
    let reason = why.clone();
    let effects = move |t: &Ticket| notices::closed_by_policy(&effects_config, t, &ids, &reason);
    match app.store.cancel_by_policy(ticket.id, why, effects).await {
        Ok(_) => app.outbox.wake(),
        Err(err) => {
            tracing::error!(error = %err, ticket = ticket.reference(), "could not close a ticket the policy no longer allows");
        }
    }
}

/// The answer to a click on a ticket that does not exist, or that the clicker
/// has no part in (the same words, so a crafted id tells nothing).
const GONE: &str = "That request no longer exists, or is not yours to decide.";

/// "already approved by <@U2>" for a ticket that is no longer pending.
fn already(ticket: &Ticket) -> String {
    let by: Vec<String> = ticket
        .final_decision()
        .map(|a| vec![mention(&a.approver_slack_id)])
        .unwrap_or_default();
    if by.is_empty() {
        format!("{} is already {}.", ticket.reference(), ticket.status)
    } else {
        format!(
            "{} is already {} by {}.",
            ticket.reference(),
            ticket.status,
            by.join(", ")
        )
    }
}

fn parse_id(value: &str) -> Option<i64> {
    ticket::parse_ticket_ref(value)
}

/// A click on Approve or Reject (in a DM or on the Home tab).
pub async fn clicked(
    app: &Arc<App>,
    action_id: &str,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let config = app.config();
    let user = super::user_of(&event);
    let place = place_of(&event);
    let trigger_id = event.trigger_id.0.clone();
    let verdict = if action_id == APPROVE {
        Verdict::Approve
    } else {
        Verdict::Reject
    };
    let app = app.clone();
    let value = value.to_string();
    // Everything here only reads; the decision itself is taken on the modal.
    Reply::empty().then(async move {
        let Some(ticket) = (match parse_id(&value) {
            Some(id) => app.store.ticket(id).await.ok().flatten(),
            None => None,
        }) else {
            return refuse(&app, &user, &place, GONE, None).await;
        };
        let email = match app.identity.email_of(&user).await {
            Ok(Some(email)) => email,
            _ => {
                let why = "accessd cannot tell who you are (no email on your Slack account).";
                return refuse(&app, &user, &place, why, None).await;
            }
        };
        if !involved(&config, &ticket, &email) {
            let why = "has no part in the ticket";
            let audit = refused_click(&email, &user, &ticket, verdict, why);
            return refuse(&app, &user, &place, GONE, Some(audit)).await;
        }
        if !ticket.status.is_pending() {
            return tell(&app, &user, &place, &already(&ticket)).await;
        }
        let manager = manager_of(&app, &ticket.requester_email).await;
        if let Err(refusal) = may_decide(&config, &ticket, &email, manager.as_deref()) {
            let why = refusal.to_string();
            let audit = refused_click(&email, &user, &ticket, verdict, &why);
            if let Refusal::Policy(why) = refusal {
                close_by_policy(&app, &config, &ticket, why).await;
            }
            return refuse(&app, &user, &place, &why, Some(audit)).await;
        }
        let cap = decision_cap(&config, &ticket);
        let view = match verdict {
            Verdict::Approve => approve_modal(&config, &ticket, cap),
            Verdict::Reject => reject_modal(&config, &ticket),
        };
        open_modal(&app, &trigger_id, view, "decision").await;
    })
}

/// The audit row of a click on Approve or Reject that was refused, and why.
fn refused_click(
    email: &str,
    user: &str,
    ticket: &Ticket,
    verdict: Verdict,
    why: &str,
) -> AuditEvent {
    AuditEvent::new(
        email,
        "ticket.decision_refused",
        ticket.reference(),
        json!({ "slack_id": user, "verdict": verdict.as_str(), "reason": why, "at": "click" }),
    )
}

/// The longest duration an approver may set: the frozen plan's cap, lowered
/// if the config lowered it since.
fn decision_cap(config: &Config, ticket: &Ticket) -> Duration {
    let frozen = Duration::from_secs(ticket.plan.max_duration_secs.max(1));
    let now = config
        .app(&ticket.app_id)
        .and_then(|a| policy::duration_cap(a, &ticket.roles));
    now.map_or(frozen, |cap| cap.min(frozen))
}

/// The approve or reject modal was submitted: the decision.
pub async fn submitted(app: &Arc<App>, submission: SlackInteractionViewSubmissionEvent) -> Reply {
    let config = app.config();
    let user = submission.user.id.0.clone();
    let (callback, metadata) = match &submission.view.view {
        SlackView::Modal(m) => (
            m.callback_id
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            m.private_metadata.clone().unwrap_or_default(),
        ),
        SlackView::Home(_) => return Reply::empty(),
    };
    let verdict = if callback == APPROVE_MODAL {
        Verdict::Approve
    } else {
        Verdict::Reject
    };
    let Some(id) = parse_id(&metadata) else {
        return Reply::update(notice(GONE));
    };
    let ticket = match app.store.ticket(id).await {
        Ok(Some(ticket)) => ticket,
        Ok(None) => return Reply::update(notice(GONE)),
        Err(err) => {
            return failed(
                app,
                err,
                "read a ticket",
                "accessd could not record your decision; nothing changed. Please try again.",
                Where::Modal,
            )
            .await
        }
    };
    let email = match app.identity.email_of(&user).await {
        Ok(Some(email)) => email,
        _ => {
            return Reply::update(notice(
                "accessd cannot tell who you are (no email on your Slack account).",
            ))
        }
    };
    let comment =
        value_of(&submission, COMMENT_BLOCK, COMMENT_ACTION).filter(|c| !c.trim().is_empty());
    let mut duration_secs = None;
    if verdict == Verdict::Approve {
        if let Some(text) = value_of(&submission, DURATION_BLOCK, DURATION_ACTION) {
            match checked_duration(&text, decision_cap(&config, &ticket)) {
                Ok(d) => {
                    duration_secs = i64::try_from(d.as_secs())
                        .ok()
                        .filter(|d| *d != ticket.duration_secs)
                }
                Err(why) => return Reply::field_errors(&[(DURATION_BLOCK, why)]),
            }
        }
    }
    // Addresses for the DMs the transition may send; resolved before the
    // transaction (cached), used inside it.
    let ids = app.identity.slack_ids_of(ticket.plan.approvers()).await;
    let email_seen = email.clone();
    let input = DecisionInput {
        actor: Actor {
            slack_id: user.clone(),
            email: email.clone(),
        },
        verdict,
        comment,
        duration_secs,
    };
    let check_config = config.clone();
    let manager = manager_of(app, &ticket.requester_email).await;
    // Set when the check refuses because the policy no longer allows the
    // ticket, which then closes it.
    let closed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let closed_by_check = closed.clone();
    let check = move |t: &Ticket| match may_decide(&check_config, t, &email, manager.as_deref()) {
        Err(Refusal::Policy(why)) => {
            *closed_by_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
            Err(why)
        }
        other => other.map_err(|r| r.to_string()),
    };
    let effects_config = config;
    let effect_ids = ids.clone();
    let effects = move |t: &Ticket, transition: Transition| {
        decision_effects(&effects_config, t, transition, &effect_ids)
    };
    match app.store.decide(id, input, check, effects).await {
        Ok(Decided::Applied { ticket, transition }) => {
            app.outbox.wake();
            app.jobs.wake();
            let refresh = app.clone();
            let mut users = vec![user, ticket.requester_slack_id.clone()];
            if let Transition::NextStage { stage } = transition {
                users.extend(
                    ticket.plan.stages[stage]
                        .approvers
                        .iter()
                        .filter_map(|e| ids.get(e).cloned()),
                );
            }
            Reply::clear().then(async move {
                let users: Vec<&str> = users.iter().map(String::as_str).collect();
                refresh.home_refresh.request_all(&users);
            })
        }
        Ok(Decided::AlreadyDecided(ticket)) if !involved(&app.config(), &ticket, &email_seen) => {
            Reply::update(notice(GONE))
        }
        Ok(Decided::AlreadyDecided(ticket)) => Reply::update(notice(&already(&ticket))),
        Ok(Decided::AlreadyVoted(ticket)) => Reply::update(notice(&format!(
            "You already decided on {}; it is waiting for the other approvers.",
            ticket.reference()
        ))),
        Ok(Decided::Refused { reason, ticket }) => {
            let closed = closed.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(why) = closed {
                close_by_policy(app, &app.config(), &ticket, why).await;
            }
            Reply::update(notice(&reason))
        }
        Err(err) => {
            failed(
                app,
                err,
                "record a decision",
                "accessd could not record your decision; nothing changed. Please try again.",
                Where::Modal,
            )
            .await
        }
    }
}

/// Messages a decision sends: every approver copy updated; the next stage
/// asked; the requester told when their request moved on or ended.
fn decision_effects(
    config: &Config,
    ticket: &Ticket,
    transition: Transition,
    ids: &HashMap<String, String>,
) -> Effects {
    let mut effects = Effects::default();
    notices::update_approver_copies(config, ticket, ids, &mut effects);
    let reference = ticket.reference();
    match transition {
        Transition::Counted { .. } => {}
        Transition::NextStage { .. } => {
            effects.jobs = lifecycle::reminder_timers(config, ticket);
        }
        Transition::Approved => effects.jobs.push(JobChange::schedule(
            jobs::PROVISION,
            &reference,
            chrono::Utc::now(),
        )),
        Transition::Rejected => {}
    }
    if !ticket.status.is_pending() {
        effects.jobs.extend([
            JobChange::cancel(jobs::REMIND, &reference),
            JobChange::cancel(jobs::STALE, &reference),
        ]);
    }
    match transition {
        Transition::Counted { .. } => {}
        Transition::NextStage { stage } => {
            let asked = notices::stage_messages(config, ticket, stage, ids, &mut effects);
            let (text, blocks) = requester_update(config, ticket, &asked);
            effects
                .messages
                .push(NewMessage::post(&ticket.requester_slack_id, &text, blocks));
        }
        Transition::Approved | Transition::Rejected => {
            let (text, blocks) = requester_update(config, ticket, &[]);
            effects
                .messages
                .push(NewMessage::post(&ticket.requester_slack_id, &text, blocks));
        }
    }
    effects
}
