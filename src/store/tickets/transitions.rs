//! What happens to a pending ticket: an approver's decision and the
//! transition it applies, the requester's cancel and nudge, approver
//! reminders, and expiry as stale.

use chrono::{DateTime, Utc};
use rusqlite::Transaction;

use super::{load_required, set_status, Actor, Changed, Decided, DecisionInput, Ticket};
use crate::domain::jobs::REMIND;
use crate::domain::ticket::{self, Status, Transition, Verdict};
use crate::store::audit::append_audit_tx;
use crate::store::effects::{write_effects, Effects};
use crate::store::jobs::{complete_job_tx, JobChange};
use crate::store::{ts, write_tx, AuditEvent, NewMessage, Result, Store, StoreError};

/// Only the requester cancels or nudges; anyone else is refused, audited.
fn refuse_non_requester(
    tx: Transaction<'_>,
    ticket: Ticket,
    actor: &Actor,
    verb: &str,
) -> Result<Changed> {
    let reason = format!("only the requester can {verb} a request");
    append_audit_tx(
        &tx,
        &AuditEvent::new(
            actor.email.clone(),
            format!("ticket.{verb}_refused"),
            ticket.reference(),
            serde_json::json!({ "slack_id": actor.slack_id, "reason": reason }),
        ),
    )?;
    tx.commit()?;
    Ok(Changed::Refused { ticket, reason })
}

impl Store {
    /// Closes a pending ticket the config in force no longer allows (its app
    /// or role gone, its requester denied): `cancelled`, with `reason`
    /// audited. Not pending any more → `NotApplicable`.
    pub async fn cancel_by_policy(
        &self,
        id: i64,
        reason: String,
        effects: impl FnOnce(&Ticket) -> Effects + Send + 'static,
    ) -> Result<Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, id)?;
            let Ok(status) = ticket::cancel(ticket.status) else {
                return Ok(Changed::NotApplicable(ticket));
            };
            set_status(&tx, id, status, ticket.stage, Utc::now())?;
            let after = load_required(&tx, id)?;
            let mut effects = effects(&after);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    "accessd",
                    "ticket.cancelled_by_policy",
                    after.reference(),
                    serde_json::json!({ "reason": reason, "before": ticket.status.as_str() }),
                ),
            );
            write_effects(&tx, &effects)?;
            tx.commit()?;
            Ok(Changed::Done(after))
        })
        .await
    }

    /// Records a decision and applies its transition, all or nothing.
    pub async fn decide(
        &self,
        id: i64,
        input: DecisionInput,
        check: impl FnOnce(&Ticket) -> std::result::Result<(), String> + Send + 'static,
        effects: impl FnOnce(&Ticket, Transition) -> Effects + Send + 'static,
    ) -> Result<Decided> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, id)?;
            if !ticket.status.is_pending() {
                return Ok(Decided::AlreadyDecided(ticket));
            }
            if let Err(reason) = check(&ticket) {
                append_audit_tx(
                    &tx,
                    &AuditEvent::new(
                        input.actor.email.clone(),
                        "ticket.decision_refused",
                        ticket.reference(),
                        serde_json::json!({
                            "slack_id": input.actor.slack_id,
                            "verdict": input.verdict.as_str(),
                            "reason": reason,
                            "status": ticket.status.as_str(),
                            "stage": ticket.stage,
                        }),
                    ),
                )?;
                tx.commit()?;
                return Ok(Decided::Refused { ticket, reason });
            }
            if ticket
                .approvals
                .iter()
                .any(|a| a.stage == ticket.stage && a.approver_slack_id == input.actor.slack_id)
            {
                return Ok(Decided::AlreadyVoted(ticket));
            }
            let now = Utc::now();
            tx.prepare_cached(
                "INSERT INTO approvals (ticket_id, stage, approver_slack_id, approver_email, decision, comment,
                                        duration_secs, decided_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(rusqlite::params![
                id,
                ticket.stage as i64,
                input.actor.slack_id,
                input.actor.email,
                input.verdict.as_str(),
                input.comment,
                input.duration_secs,
                ts(now),
            ])?;
            let approvals = ticket.approvals_in_stage(ticket.stage).count()
                + usize::from(input.verdict == Verdict::Approve);
            let transition = match ticket::decide(ticket.status, ticket.stage, &ticket.plan, approvals, input.verdict) {
                Ok(transition) => transition,
                Err(status) => {
                    return Err(StoreError::InvalidInput(format!("ticket {id} is {status}")));
                }
            };
            let stage = match transition {
                Transition::NextStage { stage } => stage,
                _ => ticket.stage,
            };
            set_status(&tx, id, transition.status(), stage, now)?;
            // The shortest duration an approver chose stands: once one has
            // shortened it, a later approver may shorten it further, never
            // lengthen it back.
            let shortened = ticket
                .approvals
                .iter()
                .any(|a| a.verdict == Verdict::Approve && a.duration_secs.is_some());
            let chosen = input
                .duration_secs
                .map(|d| if shortened { d.min(ticket.duration_secs) } else { d });
            if let (Some(duration), Verdict::Approve) = (chosen, input.verdict) {
                tx.prepare_cached("UPDATE tickets SET duration_secs = ?2 WHERE id = ?1")?
                    .execute(rusqlite::params![id, duration])?;
            }
            let after = load_required(&tx, id)?;
            let mut effects = effects(&after, transition);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    input.actor.email.clone(),
                    format!("ticket.{}", input.verdict.as_str()),
                    after.reference(),
                    serde_json::json!({
                        "slack_id": input.actor.slack_id,
                        "stage": ticket.stage,
                        "before": ticket.status.as_str(),
                        "after": after.status.as_str(),
                        "comment": input.comment,
                        "duration_secs": after.duration_secs,
                    }),
                ),
            );
            write_effects(&tx, &effects)?;
            tx.commit()?;
            Ok(Decided::Applied {
                ticket: after,
                transition,
            })
        })
        .await
    }

    /// The requester withdraws a pending ticket.
    pub async fn cancel_ticket(
        &self,
        id: i64,
        actor: Actor,
        effects: impl FnOnce(&Ticket) -> Effects + Send + 'static,
    ) -> Result<Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, id)?;
            if ticket.requester_slack_id != actor.slack_id {
                return refuse_non_requester(tx, ticket, &actor, "cancel");
            }
            let Ok(status) = ticket::cancel(ticket.status) else {
                return Ok(Changed::NotApplicable(ticket));
            };
            set_status(&tx, id, status, ticket.stage, Utc::now())?;
            let after = load_required(&tx, id)?;
            let mut effects = effects(&after);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    actor.email,
                    "ticket.cancel",
                    after.reference(),
                    serde_json::json!({ "slack_id": actor.slack_id, "before": ticket.status.as_str(), "after": status.as_str() }),
                ),
            );
            write_effects(&tx, &effects)?;
            tx.commit()?;
            Ok(Changed::Done(after))
        })
        .await
    }

    /// The requester asks the current approvers again, at most once per `cooldown`.
    pub async fn nudge_ticket(
        &self,
        id: i64,
        actor: Actor,
        cooldown: std::time::Duration,
        effects: impl FnOnce(&Ticket) -> Effects + Send + 'static,
    ) -> Result<Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, id)?;
            if ticket.requester_slack_id != actor.slack_id {
                return refuse_non_requester(tx, ticket, &actor, "nudge");
            }
            if !ticket.status.is_pending() {
                return Ok(Changed::NotApplicable(ticket));
            }
            let now = Utc::now();
            // A cooldown too large for chrono means "never again", not "none".
            let cooldown = chrono::Duration::from_std(cooldown).unwrap_or(chrono::Duration::MAX);
            if let Some(last) = ticket.last_nudge_at {
                let next_at = last
                    .checked_add_signed(cooldown)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                if next_at > now {
                    return Ok(Changed::TooSoon { next_at, ticket });
                }
            }
            tx.prepare_cached(
                "UPDATE tickets SET last_nudge_at = ?2, updated_at = ?2 WHERE id = ?1",
            )?
            .execute(rusqlite::params![id, ts(now)])?;
            let after = load_required(&tx, id)?;
            let mut effects = effects(&after);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    actor.email,
                    "ticket.nudge",
                    after.reference(),
                    serde_json::json!({ "slack_id": actor.slack_id, "stage": after.stage }),
                ),
            );
            write_effects(&tx, &effects)?;
            tx.commit()?;
            Ok(Changed::Done(after))
        })
        .await
    }

    /// Queues reminder DMs for a still-pending ticket and sets the next
    /// reminder, in one transaction (the running reminder job is replaced).
    pub async fn send_reminders(
        &self,
        id: i64,
        messages: Vec<NewMessage>,
        next_at: DateTime<Utc>,
    ) -> Result<()> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, id)?;
            if !ticket.status.is_pending() {
                return Ok(());
            }
            let reminded: Vec<&str> = messages.iter().map(|m| m.channel.as_str()).collect();
            write_effects(
                &tx,
                &Effects {
                    messages: messages.clone(),
                    audit: vec![AuditEvent::new(
                        "accessd",
                        "ticket.remind",
                        ticket.reference(),
                        serde_json::json!({ "stage": ticket.stage, "approvers": reminded }),
                    )],
                    jobs: vec![JobChange::schedule(REMIND, &ticket.reference(), next_at)],
                    ..Effects::default()
                },
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A ticket nobody decided within `stale_after` ends as `stale`.
    pub async fn expire_pending(
        &self,
        id: i64,
        job_id: i64,
        effects: impl FnOnce(&Ticket) -> Effects + Send + 'static,
    ) -> Result<Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, id)?;
            complete_job_tx(&tx, job_id)?;
            if !ticket.status.is_pending() {
                tx.commit()?;
                return Ok(Changed::NotApplicable(ticket));
            }
            set_status(&tx, id, Status::Stale, ticket.stage, Utc::now())?;
            let after = load_required(&tx, id)?;
            let mut effects = effects(&after);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    "accessd",
                    "ticket.stale",
                    after.reference(),
                    serde_json::json!({ "stage": ticket.stage, "created_at": ts(ticket.created_at) }),
                ),
            );
            write_effects(&tx, &effects)?;
            tx.commit()?;
            Ok(Changed::Done(after))
        })
        .await
    }
}
