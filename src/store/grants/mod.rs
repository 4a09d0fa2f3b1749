//! Grants: access that exists because a ticket was approved, from the start
//! of provisioning to its end. Each lifecycle step is one IMMEDIATE
//! transaction that also writes its audit rows, messages and timers, and —
//! where a job drove it — marks that job done, so a crash re-runs a step
//! rather than losing or doubling it.
//!
//! The provisioner call itself happens between transactions. Before each call
//! [`Store::grant_attempt`] commits `attempts += 1`; an "already present" on
//! a later attempt is then known to be our own earlier call that applied
//! before a crash, and is revoked at expiry like any grant of ours.
//!
//! This file holds the grant types, references, row reading and the plain
//! reads; `provisioning.rs` starts, records and finishes provisioning (and
//! retries it), `ending.rs` ends, revokes and extends grants.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::audit::append_audit_tx;
use super::jobs::schedule_job_tx;
use super::tickets::Ticket;
use super::{opt_ts_col, ts_col, AuditEvent, Result, Store};
use crate::domain::ticket::ticket_ref;

mod ending;
mod provisioning;

/// Job kinds the grant lifecycle schedules; the scheduler dispatches on them.
/// Job kinds of the grant lifecycle (kept at this path; defined in `domain::jobs`).
pub mod job {
    pub use crate::domain::jobs::{EXPIRY_WARNING, PROVISION, REVOKE};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Provisioning started, not confirmed yet.
    Pending,
    Active,
    Expired,
    Revoked,
    Failed,
}

impl GrantStatus {
    pub const ALL: [GrantStatus; 5] = [
        GrantStatus::Pending,
        GrantStatus::Active,
        GrantStatus::Expired,
        GrantStatus::Revoked,
        GrantStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Pending => "pending",
            GrantStatus::Active => "active",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
            GrantStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<GrantStatus> {
        GrantStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    pub id: i64,
    pub ticket_id: i64,
    pub app_id: String,
    pub role_id: String,
    pub entitlement: String,
    pub person_email: String,
    pub slack_id: Option<String>,
    pub status: GrantStatus,
    pub manual: bool,
    pub preexisting: bool,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub granted_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<String>,
    pub idempotency_key: String,
    /// The `[[provisioners]]` id that made it; `None` for a manual grant, or
    /// one made before this was recorded.
    pub provisioner_id: Option<String>,
    /// The target's own ids for what was made, as that provisioner wrote
    /// them (opaque here); `None` when it gave none.
    pub target: Option<String>,
}

impl Grant {
    /// `G-7`.
    pub fn reference(&self) -> String {
        grant_ref(self.id)
    }

    /// The key of every attempt to revoke this grant.
    pub fn revoke_key(&self) -> String {
        format!("{}/revoke", self.idempotency_key)
    }
}

pub fn grant_ref(id: i64) -> String {
    format!("G-{id}")
}

pub fn parse_grant_ref(text: &str) -> Option<i64> {
    let digits = text
        .trim()
        .trim_start_matches(['G', 'g'])
        .trim_start_matches('-');
    digits.parse().ok().filter(|id: &i64| *id > 0)
}

/// What one provisioner call came to, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantResult {
    Applied,
    AlreadyPresent,
    Failed(String),
}

/// Who made a grant: the provisioner id and the target's ids it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedBy {
    pub provisioner_id: String,
    pub target: Option<String>,
}

/// Where provisioning of a ticket stands when its job starts.
#[derive(Debug)]
pub enum ProvisionStart {
    /// Go on with these grants (pending ones still need a call).
    Proceed { ticket: Ticket, grants: Vec<Grant> },
    /// The ticket is not waiting for provisioning (already active, cancelled…).
    NotApplicable(Ticket),
}

/// A grant to end and the ticket it belongs to.
#[derive(Debug)]
pub struct RevokeTarget {
    pub grant: Grant,
    pub ticket: Ticket,
}

#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub status: Option<GrantStatus>,
    pub requester_slack_id: Option<String>,
    pub ticket_id: Option<i64>,
    pub limit: Option<usize>,
}

const GRANT_COLUMNS: &str = "id, ticket_id, app_id, role_id, entitlement, person_email, slack_id, \
     status, manual, preexisting, attempts, last_error, created_at, granted_at, expires_at, \
     ended_at, ended_by, idempotency_key, provisioner_id, target";

fn grant_row(r: &Row<'_>) -> rusqlite::Result<Grant> {
    let status: String = r.get(7)?;
    Ok(Grant {
        id: r.get(0)?,
        ticket_id: r.get(1)?,
        app_id: r.get(2)?,
        role_id: r.get(3)?,
        entitlement: r.get(4)?,
        person_email: r.get(5)?,
        slack_id: r.get(6)?,
        status: GrantStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                7,
                rusqlite::types::Type::Text,
                "invalid grant status".into(),
            )
        })?,
        manual: r.get(8)?,
        preexisting: r.get(9)?,
        attempts: r.get(10)?,
        last_error: r.get(11)?,
        created_at: ts_col(r, 12)?,
        granted_at: opt_ts_col(r, 13)?,
        expires_at: opt_ts_col(r, 14)?,
        ended_at: opt_ts_col(r, 15)?,
        ended_by: r.get(16)?,
        idempotency_key: r.get(17)?,
        provisioner_id: r.get(18)?,
        target: r.get(19)?,
    })
}

fn load_grant(conn: &rusqlite::Connection, id: i64) -> Result<Option<Grant>> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], grant_row)
        .optional()?)
}

fn grants_of(conn: &rusqlite::Connection, ticket_id: i64) -> Result<Vec<Grant>> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE ticket_id = ?1 ORDER BY id");
    Ok(conn
        .prepare_cached(&sql)?
        .query_map([ticket_id], grant_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// One role of a ticket as the provisioner sees it.
#[derive(Debug, Clone)]
pub struct GrantSpec {
    pub role_id: String,
    pub entitlement: String,
}

/// (Re)sets the revoke timer of every active grant of the ticket and the
/// requester's warning.
fn schedule_expiry(
    tx: &Transaction<'_>,
    ticket_id: i64,
    expires_at: DateTime<Utc>,
    warning: std::time::Duration,
) -> Result<()> {
    for grant in grants_of(tx, ticket_id)?
        .iter()
        .filter(|g| g.status == GrantStatus::Active)
    {
        schedule_job_tx(
            tx,
            job::REVOKE,
            &grant.reference(),
            expires_at,
            &serde_json::json!({ "reason": "expired" }),
        )?;
    }
    let warn_at = expires_at - chrono::Duration::from_std(warning).unwrap_or_default();
    if warn_at > Utc::now() {
        schedule_job_tx(
            tx,
            job::EXPIRY_WARNING,
            &ticket_ref(ticket_id),
            warn_at,
            &serde_json::Value::Null,
        )?;
    }
    Ok(())
}

fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    subject: String,
    detail: serde_json::Value,
) -> Result<()> {
    append_audit_tx(tx, &AuditEvent::new(actor, action, subject, detail))?;
    Ok(())
}

impl Store {
    pub async fn grant(&self, id: i64) -> Result<Option<Grant>> {
        self.call(move |conn| load_grant(conn, id)).await
    }

    pub async fn grants_of_ticket(&self, ticket_id: i64) -> Result<Vec<Grant>> {
        self.call(move |conn| grants_of(conn, ticket_id)).await
    }

    /// Newest first.
    pub async fn list_grants(&self, filter: GrantFilter) -> Result<Vec<Grant>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {GRANT_COLUMNS} FROM grants
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR ticket_id = ?2)
                   AND (?3 IS NULL OR ticket_id IN (SELECT id FROM tickets WHERE requester_slack_id = ?3))
                 ORDER BY id DESC LIMIT ?4"
            );
            let limit = filter
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
            Ok(conn
                .prepare_cached(&sql)?
                .query_map(
                    rusqlite::params![
                        filter.status.map(GrantStatus::as_str),
                        filter.ticket_id,
                        filter.requester_slack_id,
                        limit
                    ],
                    grant_row,
                )?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
