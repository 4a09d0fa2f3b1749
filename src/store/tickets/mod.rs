//! Tickets and their approvals: creation, decisions, cancel and nudge, each one
//! IMMEDIATE transaction that also writes its audit rows and queues its Slack
//! messages, so a transition and what it announces commit together.
//!
//! Callers pass two pure closures run inside the transaction: `check` decides
//! whether the actor may act on the ticket as it is *now* (re-read under the
//! write lock, so racing clicks serialise), and `effects` builds the messages
//! and audit rows for the transition that happened.
//!
//! This file holds the ticket types, row reading, creation and the reads;
//! `transitions.rs` holds what happens to a pending ticket afterwards:
//! decisions, cancel, nudge, reminders and going stale.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction};

use super::effects::{write_effects, Effects};
use super::{opt_ts_col, ts, ts_col, write_tx, Result, Store, StoreError};
use crate::domain::policy::Plan;
use crate::domain::ticket::{self, Kind, Status, Transition, Verdict};

mod transitions;

/// A request as submitted.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub requester_slack_id: String,
    pub requester_email: String,
    pub app_id: String,
    pub roles: Vec<String>,
    pub reason: String,
    pub duration_secs: i64,
    pub plan: Plan,
    /// `Pending`, or `Approved` for an auto-approved request or break-glass.
    pub status: Status,
    pub kind: Kind,
    /// The ticket an extension extends.
    pub parent: Option<i64>,
    /// The outside reference it carries (`[requests] reference`).
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: i64,
    pub requester_slack_id: String,
    pub requester_email: String,
    pub app_id: String,
    pub roles: Vec<String>,
    pub reason: String,
    pub duration_secs: i64,
    pub status: Status,
    /// Current approval stage, 0-based.
    pub stage: usize,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub last_nudge_at: Option<DateTime<Utc>>,
    pub kind: Kind,
    pub parent: Option<i64>,
    /// When the access ends (set once granted; moved by extensions).
    pub expires_at: Option<DateTime<Utc>>,
    /// Why provisioning failed, for the requester and `tickets show`.
    pub failure: Option<String>,
    /// For an extension: when the access it extends ends now (read with the
    /// ticket, so an approver sees the current end next to the new one).
    pub extends_until: Option<DateTime<Utc>>,
    /// The plan frozen at creation: how many stages, how many approvals each.
    pub plan: Plan,
    pub approvals: Vec<Approval>,
    pub approver_messages: Vec<ApproverMessage>,
    /// The owners' manual-task DMs, updated once someone acts on the task.
    pub task_messages: Vec<ApproverMessage>,
    /// The outside reference it carries, if any.
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub stage: usize,
    pub approver_slack_id: String,
    pub approver_email: Option<String>,
    pub verdict: Verdict,
    pub comment: Option<String>,
    pub duration_secs: Option<i64>,
    pub decided_at: DateTime<Utc>,
}

/// One DM an approver got about a ticket, addressable for `chat.update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverMessage {
    pub approver_slack_id: String,
    pub channel: String,
    pub ts: String,
}

impl Ticket {
    pub fn reference(&self) -> String {
        ticket::ticket_ref(self.id)
    }

    /// Approvals counted in the current stage.
    pub fn approvals_in_stage(&self, stage: usize) -> impl Iterator<Item = &Approval> {
        self.approvals
            .iter()
            .filter(move |a| a.stage == stage && a.verdict == Verdict::Approve)
    }

    /// The decision that ended the ticket, if one did.
    pub fn final_decision(&self) -> Option<&Approval> {
        match self.status {
            Status::Rejected => self
                .approvals
                .iter()
                .rev()
                .find(|a| a.verdict == Verdict::Reject),
            Status::Pending | Status::Cancelled | Status::Stale => None,
            _ => self
                .approvals
                .iter()
                .rev()
                .find(|a| a.verdict == Verdict::Approve),
        }
    }
}

#[derive(Debug)]
pub enum Created {
    New(Ticket),
    /// The requester already has this app and one of these roles pending.
    Duplicate(Ticket),
}

/// Who clicked, as resolved from Slack's `user.id`.
#[derive(Debug, Clone)]
pub struct Actor {
    pub slack_id: String,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct DecisionInput {
    pub actor: Actor,
    pub verdict: Verdict,
    pub comment: Option<String>,
    /// A new duration set by the approver (already capped by the caller).
    pub duration_secs: Option<i64>,
}

#[derive(Debug)]
pub enum Decided {
    Applied {
        ticket: Ticket,
        transition: Transition,
    },
    /// The ticket was no longer pending: nothing changed.
    AlreadyDecided(Ticket),
    /// This actor already decided this stage.
    AlreadyVoted(Ticket),
    /// `check` refused the actor; audited.
    Refused { ticket: Ticket, reason: String },
}

#[derive(Debug)]
pub enum Changed {
    Done(Ticket),
    NotApplicable(Ticket),
    Refused {
        ticket: Ticket,
        reason: String,
    },
    /// A nudge inside the cooldown: when the next one is allowed.
    TooSoon {
        ticket: Ticket,
        next_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<Status>,
    pub requester_slack_id: Option<String>,
    pub limit: Option<usize>,
}

const TICKET_COLUMNS: &str =
    "id, requester_slack_id, requester_email, app_id, roles, reason, duration_secs, \
     status, stage, created_at, updated_at, decided_at, last_nudge_at, policy, \
     kind, parent_ticket, expires_at, failure, \
     (SELECT p.expires_at FROM tickets p WHERE p.id = tickets.parent_ticket), reference";

fn ticket_row(r: &Row<'_>) -> rusqlite::Result<Ticket> {
    let roles: String = r.get(4)?;
    let status: String = r.get(7)?;
    let stage: i64 = r.get(8)?;
    let policy: Option<String> = r.get(13)?;
    let kind: String = r.get(14)?;
    let corrupt = |what: &str, idx: usize| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("invalid ticket {what}").into(),
        )
    };
    Ok(Ticket {
        id: r.get(0)?,
        requester_slack_id: r.get(1)?,
        requester_email: r.get(2)?,
        app_id: r.get(3)?,
        roles: serde_json::from_str(&roles).map_err(|_| corrupt("roles", 4))?,
        reason: r.get(5)?,
        duration_secs: r.get(6)?,
        status: Status::parse(&status).ok_or_else(|| corrupt("status", 7))?,
        stage: usize::try_from(stage).map_err(|_| corrupt("stage", 8))?,
        created_at: ts_col(r, 9)?,
        updated_at: ts_col(r, 10)?,
        decided_at: opt_ts_col(r, 11)?,
        last_nudge_at: opt_ts_col(r, 12)?,
        kind: Kind::parse(&kind).ok_or_else(|| corrupt("kind", 14))?,
        parent: r.get(15)?,
        expires_at: opt_ts_col(r, 16)?,
        failure: r.get(17)?,
        extends_until: opt_ts_col(r, 18)?,
        reference: r.get(19)?,
        plan: policy
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| corrupt("policy", 13))?
            .unwrap_or(Plan {
                stages: Vec::new(),
                auto_approve: false,
                max_duration_secs: 0,
            }),
        approvals: Vec::new(),
        approver_messages: Vec::new(),
        task_messages: Vec::new(),
    })
}

/// Reads one ticket with its approvals and approver messages.
fn load(conn: &rusqlite::Connection, id: i64) -> Result<Option<Ticket>> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1");
    let Some(mut ticket) = conn
        .prepare_cached(&sql)?
        .query_row([id], ticket_row)
        .optional()?
    else {
        return Ok(None);
    };
    let mut approvals = conn.prepare_cached(
        "SELECT stage, approver_slack_id, approver_email, decision, comment, duration_secs, decided_at
         FROM approvals WHERE ticket_id = ?1 ORDER BY decided_at, id",
    )?;
    ticket.approvals = approvals
        .query_map([id], |r| {
            let stage: i64 = r.get(0)?;
            let decision: String = r.get(3)?;
            Ok(Approval {
                stage: usize::try_from(stage).unwrap_or(usize::MAX),
                approver_slack_id: r.get(1)?,
                approver_email: r.get(2)?,
                verdict: Verdict::parse(&decision).unwrap_or(Verdict::Reject),
                comment: r.get(4)?,
                duration_secs: r.get(5)?,
                decided_at: ts_col(r, 6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut messages = conn.prepare_cached(
        "SELECT approver_slack_id, channel, ts, purpose FROM approver_messages WHERE ticket_id = ?1 ORDER BY id",
    )?;
    let all: Vec<(ApproverMessage, String)> = messages
        .query_map([id], |r| {
            Ok((
                ApproverMessage {
                    approver_slack_id: r.get(0)?,
                    channel: r.get(1)?,
                    ts: r.get(2)?,
                },
                r.get(3)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (message, purpose) in all {
        if purpose == "task" {
            ticket.task_messages.push(message);
        } else {
            ticket.approver_messages.push(message);
        }
    }
    Ok(Some(ticket))
}

pub(crate) fn load_required(conn: &rusqlite::Connection, id: i64) -> Result<Ticket> {
    load(conn, id)?.ok_or(StoreError::NotFound { what: "ticket", id })
}

pub(crate) fn set_status(
    tx: &Transaction<'_>,
    id: i64,
    status: Status,
    stage: usize,
    now: DateTime<Utc>,
) -> Result<()> {
    let decided = (!status.is_pending()).then(|| ts(now));
    tx.prepare_cached(
        "UPDATE tickets SET status = ?2, stage = ?3, updated_at = ?4, decided_at = coalesce(decided_at, ?5)
         WHERE id = ?1",
    )?
    .execute(rusqlite::params![id, status.as_str(), stage as i64, ts(now), decided])?;
    Ok(())
}

/// The requester's pending ticket for `app_id` with a role in common (or, for
/// apps without roles, any pending one). Emails are lowercased as stored:
/// `COLLATE NOCASE` folds only ASCII.
fn pending_duplicate(
    conn: &rusqlite::Connection,
    email: &str,
    app_id: &str,
    roles: &[String],
) -> Result<Option<i64>> {
    let roles = serde_json::to_string(roles)?;
    Ok(conn
        .prepare_cached(
            "SELECT id FROM tickets
             WHERE requester_email = ?1 AND app_id = ?2 AND status = 'pending'
               AND (EXISTS (SELECT 1 FROM json_each(tickets.roles) r, json_each(?3) n WHERE r.value = n.value)
                    OR (json_array_length(tickets.roles) = 0 AND json_array_length(?3) = 0))
             ORDER BY id LIMIT 1",
        )?
        .query_row(rusqlite::params![email.to_lowercase(), app_id, roles], |r| r.get(0))
        .optional()?)
}

impl Store {
    /// The reference of a pending ticket that a new request for `app_id` and
    /// `roles` would duplicate (checked again when the ticket is created).
    pub async fn pending_duplicate(
        &self,
        email: String,
        app_id: String,
        roles: Vec<String>,
    ) -> Result<Option<String>> {
        self.call(move |conn| {
            Ok(pending_duplicate(conn, &email, &app_id, &roles)?.map(ticket::ticket_ref))
        })
        .await
    }

    /// Creates a ticket unless the requester already has one pending for the
    /// same app and an overlapping role.
    pub async fn create_ticket(
        &self,
        new: NewTicket,
        effects: impl FnOnce(&Ticket) -> Effects + Send + 'static,
    ) -> Result<Created> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let roles = serde_json::to_string(&new.roles)?;
            let duplicate = pending_duplicate(&tx, &new.requester_email, &new.app_id, &new.roles)?;
            if let Some(duplicate) = duplicate {
                return Ok(Created::Duplicate(load_required(&tx, duplicate)?));
            }
            let now = Utc::now();
            let decided = (!new.status.is_pending()).then(|| ts(now));
            tx.prepare_cached(
                "INSERT INTO tickets (kind, requester_slack_id, requester_email, app_id, roles, reason,
                                      duration_secs, status, stage, created_at, updated_at, decided_at, policy,
                                      parent_ticket, reference)
                 VALUES (?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8, ?9, ?10, ?12, ?13)",
            )?
            .execute(rusqlite::params![
                new.requester_slack_id,
                new.requester_email.to_lowercase(),
                new.app_id,
                roles,
                new.reason,
                new.duration_secs,
                new.status.as_str(),
                ts(now),
                decided,
                serde_json::to_string(&new.plan)?,
                new.kind.as_str(),
                new.parent,
                new.reference,
            ])?;
            let ticket = load_required(&tx, tx.last_insert_rowid())?;
            write_effects(&tx, &effects(&ticket))?;
            tx.commit()?;
            Ok(Created::New(ticket))
        })
        .await
    }

    pub async fn ticket(&self, id: i64) -> Result<Option<Ticket>> {
        self.call(move |conn| load(conn, id)).await
    }

    /// Newest first.
    pub async fn list_tickets(&self, filter: TicketFilter) -> Result<Vec<Ticket>> {
        self.call(move |conn| {
            let sql = "SELECT id FROM tickets
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR requester_slack_id = ?2)
                 ORDER BY id DESC LIMIT ?3";
            let limit = filter
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
            let ids: Vec<i64> = conn
                .prepare_cached(sql)?
                .query_map(
                    rusqlite::params![
                        filter.status.map(Status::as_str),
                        filter.requester_slack_id,
                        limit
                    ],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<_>>()?;
            ids.into_iter().map(|id| load_required(conn, id)).collect()
        })
        .await
    }

    /// Pending tickets whose current stage lists `email` as an approver and that
    /// `slack_id` has not decided yet (the Home tab's "waiting for you"), oldest first.
    pub async fn waiting_for(
        &self,
        email: String,
        slack_id: String,
        limit: usize,
    ) -> Result<Vec<Ticket>> {
        self.call(move |conn| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let ids: Vec<i64> = conn
                .prepare_cached(
                    "SELECT t.id FROM tickets t
                     WHERE t.status = 'pending' AND t.requester_slack_id != ?2
                       AND EXISTS (SELECT 1 FROM json_each(t.policy, '$.stages[' || t.stage || '].approvers') j
                                   WHERE j.value = lower(?1))
                       AND NOT EXISTS (SELECT 1 FROM approvals a
                                       WHERE a.ticket_id = t.id AND a.stage = t.stage AND a.approver_slack_id = ?2)
                     ORDER BY t.id LIMIT ?3",
                )?
                .query_map(rusqlite::params![email, slack_id, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            ids.into_iter().map(|id| load_required(conn, id)).collect()
        })
        .await
    }

    /// Tickets (of any kind and status) `email` filed since `since`: what the
    /// per-person request limit counts.
    pub async fn tickets_filed_since(&self, email: String, since: DateTime<Utc>) -> Result<u32> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT count(*) FROM tickets WHERE requester_email = ?1 AND created_at >= ?2",
                )?
                .query_row(rusqlite::params![email, ts(since)], |r| r.get(0))?)
        })
        .await
    }

    /// Number of tickets in any status.
    pub async fn count_tickets(&self) -> Result<i64> {
        self.call(|conn| Ok(conn.query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))?))
            .await
    }
}

#[cfg(test)]
mod tests;
