//! What each party is told when a ticket moves: the DMs that announce a new
//! ticket and ask each stage, the `chat.update`s that keep every approver copy
//! in step, reminders, and the timers a pending ticket runs on. Pure builders (config, ticket, Slack ids → the
//! messages and effects to commit with the change); handlers and jobs both
//! use them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::config::Config;
use crate::domain::jobs;
use crate::domain::ticket::Status;
use crate::slack::views::ticket::{approver_message, policy_closed, reminder, requester_update};
use crate::store::{AuditEvent, Effects, JobChange, NewMessage, OnSent, RestatedDm, Ticket};

/// The DMs that announce a new ticket: to each approver of its first stage
/// (their copies are recorded for later updates) and to the requester.
pub fn creation_effects(
    config: &Config,
    ticket: &Ticket,
    ids: &HashMap<String, String>,
) -> Effects {
    let mut effects = Effects::default();
    let asked = stage_messages(config, ticket, ticket.stage, ids, &mut effects);
    if ticket.status.is_pending() {
        effects.jobs = reminder_timers(config, ticket);
    } else {
        effects.jobs.push(JobChange::schedule(
            jobs::PROVISION,
            &ticket.reference(),
            chrono::Utc::now(),
        ));
    }
    if ticket.status == Status::Approved {
        effects.audit.push(AuditEvent::new(
            ticket.requester_email.clone(),
            "ticket.auto_approve",
            ticket.reference(),
            json!({ "roles": ticket.roles }),
        ));
    }
    effects.audit.push(AuditEvent::new(
        ticket.requester_email.clone(),
        "ticket.create",
        ticket.reference(),
        json!({
            "app": ticket.app_id,
            "roles": ticket.roles,
            "duration_secs": ticket.duration_secs,
            "status": ticket.status.as_str(),
            "stages": ticket.plan.stages,
            "reference": ticket.reference,
        }),
    ));
    let (text, blocks) = requester_update(config, ticket, &asked);
    effects
        .messages
        .push(NewMessage::post(&ticket.requester_slack_id, &text, blocks));
    effects
}

/// Queues the DM to every approver of `stage`; returns their Slack ids.
pub fn stage_messages(
    config: &Config,
    ticket: &Ticket,
    stage: usize,
    ids: &HashMap<String, String>,
    effects: &mut Effects,
) -> Vec<String> {
    let Some(plan) = ticket
        .plan
        .stages
        .get(stage)
        .filter(|_| ticket.status.is_pending())
    else {
        return Vec::new();
    };
    let mut asked = Vec::new();
    for email in &plan.approvers {
        let Some(slack_id) = ids.get(email) else {
            effects.audit.push(AuditEvent::new(
                "accessd",
                "ticket.approver_unreachable",
                ticket.reference(),
                json!({ "approver": email, "stage": stage + 1 }),
            ));
            continue;
        };
        let (text, blocks) = approver_message(config, ticket, stage);
        effects
            .messages
            .push(NewMessage::post(slack_id, &text, blocks).with_on_sent(
                OnSent::ApproverMessage {
                    ticket_id: ticket.id,
                    approver_slack_id: slack_id.clone(),
                },
            ));
        asked.push(slack_id.clone());
    }
    asked
}

/// `chat.update` of every DM sent about the ticket so far.
pub fn update_approver_copies(
    config: &Config,
    ticket: &Ticket,
    ids: &HashMap<String, String>,
    effects: &mut Effects,
) {
    let stage_of = |slack_id: &str| {
        let email = ids
            .iter()
            .find(|(_, id)| id.as_str() == slack_id)
            .map(|(e, _)| e.as_str());
        email
            .and_then(|e| {
                ticket
                    .plan
                    .stages
                    .iter()
                    .position(|s| s.approvers.iter().any(|a| a == e))
            })
            .unwrap_or(ticket.stage)
    };
    for copy in &ticket.approver_messages {
        let (text, blocks) = approver_message(config, ticket, stage_of(&copy.approver_slack_id));
        effects.messages.push(NewMessage::update(
            &copy.approver_slack_id,
            &copy.channel,
            &copy.ts,
            &text,
            blocks,
        ));
    }
    // DMs not yet delivered (or being delivered right now) say the same.
    for slack_id in ids.values() {
        let (text, blocks) = approver_message(config, ticket, stage_of(slack_id));
        effects.restate_dms.push(RestatedDm {
            ticket_id: ticket.id,
            approver_slack_id: slack_id.clone(),
            text,
            blocks,
        });
    }
}

/// A new DM (so Slack notifies) to each approver of the current stage who has
/// not decided yet; recorded like the first, so a decision updates it too.
pub fn reminder_messages(
    config: &Config,
    t: &Ticket,
    ids: &HashMap<String, String>,
) -> Vec<NewMessage> {
    let (text, blocks) = reminder(config, t);
    let voted: Vec<&str> = t
        .approvals
        .iter()
        .filter(|a| a.stage == t.stage)
        .map(|a| a.approver_slack_id.as_str())
        .collect();
    t.plan
        .stages
        .get(t.stage)
        .map(|s| s.approvers.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|email| ids.get(email).filter(|id| !voted.contains(&id.as_str())))
        .map(|slack_id| {
            NewMessage::post(slack_id, &text, blocks.clone()).with_on_sent(
                OnSent::ApproverMessage {
                    ticket_id: t.id,
                    approver_slack_id: slack_id.clone(),
                },
            )
        })
        .collect()
}

/// The reminder and stale timers a new pending ticket (or one that moved to its next stage) gets.
pub fn reminder_timers(config: &Config, ticket: &Ticket) -> Vec<JobChange> {
    let now = Utc::now();
    let after =
        |d: Duration| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX / 2);
    let mut jobs = vec![JobChange::schedule(
        jobs::REMIND,
        &ticket.reference(),
        after(config.requests.reminder_after),
    )];
    if ticket.stage == 0 {
        let stale_at = ticket.created_at
            + chrono::Duration::from_std(config.requests.stale_after)
                .unwrap_or(chrono::Duration::MAX / 2);
        jobs.push(JobChange::schedule(
            jobs::STALE,
            &ticket.reference(),
            stale_at,
        ));
    }
    jobs
}

/// What everyone is told when the config in force closes a pending ticket:
/// every approver copy updated (no buttons), the timers stopped, and the
/// requester told why.
pub fn closed_by_policy(
    config: &Config,
    ticket: &Ticket,
    ids: &HashMap<String, String>,
    why: &str,
) -> Effects {
    let mut effects = Effects::default();
    update_approver_copies(config, ticket, ids, &mut effects);
    effects.jobs.extend([
        JobChange::cancel(jobs::REMIND, &ticket.reference()),
        JobChange::cancel(jobs::STALE, &ticket.reference()),
    ]);
    let (text, blocks) = policy_closed(ticket, why);
    effects
        .messages
        .push(NewMessage::post(&ticket.requester_slack_id, &text, blocks));
    effects
}
