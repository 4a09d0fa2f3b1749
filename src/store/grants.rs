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

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::audit::append_audit_tx;
use super::effects::{write_effects, Effects};
use super::jobs::{complete_job_tx, schedule_job_tx};
use super::tickets::{load_required, set_status, Actor, Ticket};
use super::{opt_ts_col, ts, ts_col, write_tx, AuditEvent, Result, Store, StoreError};
use crate::domain::ticket::{Kind, Status};

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
     ended_at, ended_by, idempotency_key";

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

/// Sets the ticket's access live: every active grant expires `duration`
/// from now (the clock starts at the grant), each gets its revoke timer, and
/// the requester's warning is set `warning` before the end.
fn go_live(
    tx: &Transaction<'_>,
    ticket: &Ticket,
    now: DateTime<Utc>,
    warning: std::time::Duration,
) -> Result<DateTime<Utc>> {
    let expires_at = now + chrono::Duration::seconds(ticket.duration_secs);
    tx.prepare_cached(
        "UPDATE grants SET expires_at = ?2 WHERE ticket_id = ?1 AND status = 'active'",
    )?
    .execute(rusqlite::params![ticket.id, ts(expires_at)])?;
    tx.prepare_cached("UPDATE tickets SET expires_at = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![ticket.id, ts(expires_at)])?;
    schedule_expiry(tx, ticket.id, expires_at, warning)?;
    Ok(expires_at)
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
            &crate::domain::ticket::ticket_ref(ticket_id),
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

    /// Moves an approved ticket to `provisioning` and creates its grant rows
    /// (one per role); a ticket already provisioning (the job is re-running
    /// after a crash or a retry) proceeds with the rows it has. `effects` runs
    /// only on the first start.
    pub async fn start_provisioning(
        &self,
        ticket_id: i64,
        specs: Vec<GrantSpec>,
        manual: bool,
        effects: impl FnOnce(&Ticket, &[Grant]) -> Effects + Send + 'static,
    ) -> Result<ProvisionStart> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, ticket_id)?;
            match ticket.status {
                Status::Provisioning => {
                    let grants = grants_of(&tx, ticket_id)?;
                    return Ok(ProvisionStart::Proceed { ticket, grants });
                }
                Status::Approved => {}
                _ => return Ok(ProvisionStart::NotApplicable(ticket)),
            }
            let now = Utc::now();
            for spec in &specs {
                tx.prepare_cached(
                    "INSERT INTO grants (ticket_id, app_id, role_id, entitlement, person_email, slack_id,
                                         status, manual, created_at, idempotency_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9)
                     ON CONFLICT (ticket_id, role_id) DO UPDATE SET status = 'pending', last_error = NULL
                     WHERE status = 'failed'",
                )?
                .execute(rusqlite::params![
                    ticket_id,
                    ticket.app_id,
                    spec.role_id,
                    spec.entitlement,
                    ticket.requester_email,
                    ticket.requester_slack_id,
                    manual,
                    ts(now),
                    format!("accessd/{}/{}", ticket.reference(), spec.role_id),
                ])?;
            }
            set_status(&tx, ticket_id, Status::Provisioning, ticket.stage, now)?;
            let ticket = load_required(&tx, ticket_id)?;
            let grants = grants_of(&tx, ticket_id)?;
            let mut effects = effects(&ticket, &grants);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    "accessd",
                    "ticket.provisioning",
                    ticket.reference(),
                    serde_json::json!({
                        "grants": grants.iter().map(|g| serde_json::json!({
                            "grant": g.reference(), "role": g.role_id, "entitlement": g.entitlement,
                        })).collect::<Vec<_>>(),
                        "manual": manual,
                    }),
                ),
            );
            write_effects(&tx, &effects)?;
            tx.commit()?;
            Ok(ProvisionStart::Proceed { ticket, grants })
        })
        .await
    }

    /// Counts one more provisioner call for a pending grant, committed before
    /// the call is made; returns the attempt number.
    pub async fn grant_attempt(&self, grant_id: i64) -> Result<i64> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE grants SET attempts = attempts + 1 WHERE id = ?1 AND status = 'pending'
                 RETURNING attempts",
            )?
            .query_row([grant_id], |r| r.get(0))
            .optional()?
            .ok_or(StoreError::NotFound {
                what: "pending grant",
                id: grant_id,
            })
        })
        .await
    }

    /// Records one grant call's result. "Already present" on the first
    /// attempt means the access predates the ticket (kept at expiry); on a
    /// later one it is our own earlier call.
    pub async fn record_grant(&self, grant_id: i64, result: GrantResult) -> Result<Grant> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let grant = load_grant(&tx, grant_id)?.ok_or(StoreError::NotFound {
                what: "grant",
                id: grant_id,
            })?;
            if grant.status != GrantStatus::Pending {
                return Ok(grant);
            }
            let now = ts(Utc::now());
            let detail = match &result {
                GrantResult::Applied | GrantResult::AlreadyPresent => {
                    let preexisting = result == GrantResult::AlreadyPresent && grant.attempts <= 1;
                    tx.prepare_cached(
                        "UPDATE grants SET status = 'active', granted_at = ?2, preexisting = ?3, last_error = NULL
                         WHERE id = ?1",
                    )?
                    .execute(rusqlite::params![grant_id, now, preexisting])?;
                    serde_json::json!({
                        "result": if result == GrantResult::Applied { "applied" } else { "already_present" },
                        "preexisting": preexisting,
                        "attempts": grant.attempts,
                    })
                }
                GrantResult::Failed(message) => {
                    tx.prepare_cached(
                        "UPDATE grants SET status = 'failed', last_error = ?2 WHERE id = ?1",
                    )?
                    .execute(rusqlite::params![grant_id, message])?;
                    serde_json::json!({ "result": "failed", "error": message, "attempts": grant.attempts })
                }
            };
            audit(&tx, "accessd", "grant.provision", grant.reference(), detail)?;
            let after = load_grant(&tx, grant_id)?.ok_or(StoreError::NotFound {
                what: "grant",
                id: grant_id,
            })?;
            tx.commit()?;
            Ok(after)
        })
        .await
    }

    /// Ends provisioning once no grant of the ticket is pending: `active`
    /// with its expiry set from now when every grant is active, else
    /// `failed` (grants that did apply stay active and expire on time).
    /// Marks `job_id` done in the same transaction.
    pub async fn finish_provisioning(
        &self,
        ticket_id: i64,
        job_id: Option<i64>,
        warning: std::time::Duration,
        effects: impl FnOnce(&Ticket, &[Grant]) -> Effects + Send + 'static,
    ) -> Result<Ticket> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, ticket_id)?;
            if ticket.status != Status::Provisioning {
                if let Some(job) = job_id {
                    complete_job_tx(&tx, job)?;
                }
                tx.commit()?;
                return Ok(ticket);
            }
            let grants = grants_of(&tx, ticket_id)?;
            if grants.iter().any(|g| g.status == GrantStatus::Pending) {
                return Err(StoreError::InvalidInput(format!(
                    "{} still has grants being provisioned",
                    ticket.reference()
                )));
            }
            let now = Utc::now();
            let failures: Vec<String> = grants
                .iter()
                .filter(|g| g.status == GrantStatus::Failed)
                .map(|g| {
                    format!(
                        "{}: {}",
                        g.role_id,
                        g.last_error.as_deref().unwrap_or("failed")
                    )
                })
                .collect();
            let expires_at = go_live(&tx, &ticket, now, warning)?;
            if failures.is_empty() {
                set_status(&tx, ticket_id, Status::Active, ticket.stage, now)?;
                tx.prepare_cached("UPDATE tickets SET failure = NULL WHERE id = ?1")?
                    .execute([ticket_id])?;
            } else {
                set_status(&tx, ticket_id, Status::Failed, ticket.stage, now)?;
                tx.prepare_cached("UPDATE tickets SET failure = ?2 WHERE id = ?1")?
                    .execute(rusqlite::params![ticket_id, failures.join("; ")])?;
            }
            let after = load_required(&tx, ticket_id)?;
            let grants = grants_of(&tx, ticket_id)?;
            let mut effects = effects(&after, &grants);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    "accessd",
                    if failures.is_empty() {
                        "ticket.active"
                    } else {
                        "ticket.failed"
                    },
                    after.reference(),
                    serde_json::json!({
                        "expires_at": ts(expires_at),
                        "failure": after.failure,
                    }),
                ),
            );
            write_effects(&tx, &effects)?;
            if let Some(job) = job_id {
                complete_job_tx(&tx, job)?;
            }
            tx.commit()?;
            Ok(after)
        })
        .await
    }

    /// An app owner did (`done = true`) or could not do a manual task. The
    /// actor is re-authorised by `check` inside the transaction.
    pub async fn settle_manual_task(
        &self,
        ticket_id: i64,
        actor: Actor,
        done: bool,
        warning: std::time::Duration,
        check: impl FnOnce(&Ticket) -> std::result::Result<(), String> + Send + 'static,
        effects: impl FnOnce(&Ticket, &[Grant]) -> Effects + Send + 'static,
    ) -> Result<super::Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, ticket_id)?;
            let grants = grants_of(&tx, ticket_id)?;
            let open = ticket.status == Status::Provisioning
                && grants.iter().any(|g| g.manual && g.status == GrantStatus::Pending);
            if !open {
                return Ok(super::Changed::NotApplicable(ticket));
            }
            if let Err(reason) = check(&ticket) {
                audit(
                    &tx,
                    &actor.email,
                    "ticket.task_refused",
                    ticket.reference(),
                    serde_json::json!({ "slack_id": actor.slack_id, "reason": reason }),
                )?;
                tx.commit()?;
                return Ok(super::Changed::Refused { ticket, reason });
            }
            let now = Utc::now();
            if done {
                tx.prepare_cached(
                    "UPDATE grants SET status = 'active', granted_at = ?2 WHERE ticket_id = ?1 AND status = 'pending'",
                )?
                .execute(rusqlite::params![ticket_id, ts(now)])?;
                go_live(&tx, &ticket, now, warning)?;
                set_status(&tx, ticket_id, Status::Active, ticket.stage, now)?;
            } else {
                let why = format!("the app owner {} could not grant it", actor.email);
                tx.prepare_cached(
                    "UPDATE grants SET status = 'failed', last_error = ?2 WHERE ticket_id = ?1 AND status = 'pending'",
                )?
                .execute(rusqlite::params![ticket_id, why])?;
                set_status(&tx, ticket_id, Status::Failed, ticket.stage, now)?;
                tx.prepare_cached("UPDATE tickets SET failure = ?2 WHERE id = ?1")?
                    .execute(rusqlite::params![ticket_id, why])?;
            }
            let after = load_required(&tx, ticket_id)?;
            let grants = grants_of(&tx, ticket_id)?;
            let mut effects = effects(&after, &grants);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    actor.email.clone(),
                    if done { "ticket.task_done" } else { "ticket.task_failed" },
                    after.reference(),
                    serde_json::json!({ "slack_id": actor.slack_id }),
                ),
            );
            write_effects(&tx, &effects)?;
            tx.commit()?;
            Ok(super::Changed::Done(after))
        })
        .await
    }

    /// The grant a revoke job is about, if it is still live.
    pub async fn revoke_target(&self, grant_id: i64) -> Result<Option<RevokeTarget>> {
        self.call(move |conn| {
            let Some(grant) = load_grant(conn, grant_id)? else {
                return Ok(None);
            };
            if grant.status != GrantStatus::Active {
                return Ok(None);
            }
            let ticket = load_required(conn, grant.ticket_id)?;
            Ok(Some(RevokeTarget { grant, ticket }))
        })
        .await
    }

    /// Ends a grant (`Expired` or `Revoked`); once the ticket has no live
    /// grant left it takes the same status, and so do extensions of it.
    /// Marks `job_id` done in the same transaction.
    pub async fn end_grant(
        &self,
        grant_id: i64,
        job_id: Option<i64>,
        end: GrantStatus,
        ended_by: String,
        effects: impl FnOnce(&Ticket, &Grant) -> Effects + Send + 'static,
    ) -> Result<Option<(Ticket, Grant)>> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let Some(grant) = load_grant(&tx, grant_id)? else {
                return Ok(None);
            };
            if grant.status != GrantStatus::Active {
                if let Some(job) = job_id {
                    complete_job_tx(&tx, job)?;
                }
                tx.commit()?;
                return Ok(None);
            }
            let now = Utc::now();
            tx.prepare_cached(
                "UPDATE grants SET status = ?2, ended_at = ?3, ended_by = ?4 WHERE id = ?1",
            )?
            .execute(rusqlite::params![grant_id, end.as_str(), ts(now), ended_by])?;
            let ticket = load_required(&tx, grant.ticket_id)?;
            let live: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM grants WHERE ticket_id = ?1 AND status IN ('active', 'pending')",
                )?
                .query_row([ticket.id], |r| r.get(0))?;
            let status = if end == GrantStatus::Expired {
                Status::Expired
            } else {
                Status::Revoked
            };
            if live == 0 && matches!(ticket.status, Status::Active | Status::Failed) {
                set_status(&tx, ticket.id, status, ticket.stage, now)?;
                tx.prepare_cached(
                    "UPDATE tickets SET status = ?2, updated_at = ?3
                     WHERE parent_ticket = ?1 AND kind = 'extension' AND status = 'active'",
                )?
                .execute(rusqlite::params![ticket.id, status.as_str(), ts(now)])?;
                super::jobs::cancel_job_tx(&tx, job::EXPIRY_WARNING, &ticket.reference())?;
            }
            let ticket = load_required(&tx, ticket.id)?;
            let grant = load_grant(&tx, grant_id)?.ok_or(StoreError::NotFound {
                what: "grant",
                id: grant_id,
            })?;
            let mut effects = effects(&ticket, &grant);
            effects.audit.insert(
                0,
                AuditEvent::new(
                    "accessd",
                    format!("grant.{}", end.as_str()),
                    grant.reference(),
                    serde_json::json!({
                        "ticket": ticket.reference(),
                        "by": grant.ended_by,
                        "preexisting": grant.preexisting,
                    }),
                ),
            );
            write_effects(&tx, &effects)?;
            if let Some(job) = job_id {
                complete_job_tx(&tx, job)?;
            }
            tx.commit()?;
            Ok(Some((ticket, grant)))
        })
        .await
    }

    /// Asks for the ticket's live grants to be revoked now (Release now, an
    /// admin, an approver after break-glass): their revoke timers move to now
    /// with `reason`. `check` re-authorises the actor inside the transaction.
    pub async fn revoke_now(
        &self,
        ticket_id: i64,
        grant_id: Option<i64>,
        actor: Actor,
        reason: String,
        check: impl FnOnce(&Ticket) -> std::result::Result<(), String> + Send + 'static,
    ) -> Result<super::Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, ticket_id)?;
            let grants: Vec<Grant> = grants_of(&tx, ticket_id)?
                .into_iter()
                .filter(|g| g.status == GrantStatus::Active && grant_id.is_none_or(|id| id == g.id))
                .collect();
            if grants.is_empty() {
                return Ok(super::Changed::NotApplicable(ticket));
            }
            if let Err(why) = check(&ticket) {
                audit(
                    &tx,
                    &actor.email,
                    "grant.revoke_refused",
                    ticket.reference(),
                    serde_json::json!({ "slack_id": actor.slack_id, "reason": why }),
                )?;
                tx.commit()?;
                return Ok(super::Changed::Refused { ticket, reason: why });
            }
            let now = Utc::now();
            for grant in &grants {
                schedule_job_tx(
                    &tx,
                    job::REVOKE,
                    &grant.reference(),
                    now,
                    &serde_json::json!({ "reason": reason, "by": actor.email }),
                )?;
                audit(
                    &tx,
                    &actor.email,
                    "grant.revoke_requested",
                    grant.reference(),
                    serde_json::json!({ "ticket": ticket.reference(), "reason": reason, "slack_id": actor.slack_id }),
                )?;
            }
            tx.commit()?;
            Ok(super::Changed::Done(ticket))
        })
        .await
    }

    /// Applies an approved extension: the parent's live grants and the parent
    /// move their expiry to `duration` past the later of now and the current
    /// expiry, without provisioning again. An extension whose parent's access
    /// already ended fails. Marks `job_id` done in the same transaction.
    pub async fn apply_extension(
        &self,
        extension_id: i64,
        job_id: Option<i64>,
        warning: std::time::Duration,
        effects: impl FnOnce(&Ticket, Option<&Ticket>) -> Effects + Send + 'static,
    ) -> Result<Ticket> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let extension = load_required(&tx, extension_id)?;
            if extension.kind != Kind::Extension || extension.status != Status::Approved {
                if let Some(job) = job_id {
                    complete_job_tx(&tx, job)?;
                }
                tx.commit()?;
                return Ok(extension);
            }
            let now = Utc::now();
            let parent = match extension.parent {
                Some(id) => Some(load_required(&tx, id)?),
                None => None,
            };
            let live = parent.as_ref().filter(|p| p.status == Status::Active);
            let parent_after = if let Some(parent) = live {
                let base = parent.expires_at.map_or(now, |e| e.max(now));
                let expires_at = base + chrono::Duration::seconds(extension.duration_secs);
                tx.prepare_cached(
                    "UPDATE grants SET expires_at = ?2 WHERE ticket_id = ?1 AND status = 'active'",
                )?
                .execute(rusqlite::params![parent.id, ts(expires_at)])?;
                tx.prepare_cached(
                    "UPDATE tickets SET expires_at = ?2, updated_at = ?3 WHERE id = ?1",
                )?
                .execute(rusqlite::params![parent.id, ts(expires_at), ts(now)])?;
                tx.prepare_cached("UPDATE tickets SET expires_at = ?2 WHERE id = ?1")?
                    .execute(rusqlite::params![extension_id, ts(expires_at)])?;
                schedule_expiry(&tx, parent.id, expires_at, warning)?;
                set_status(&tx, extension_id, Status::Active, extension.stage, now)?;
                Some(load_required(&tx, parent.id)?)
            } else {
                set_status(&tx, extension_id, Status::Failed, extension.stage, now)?;
                tx.prepare_cached("UPDATE tickets SET failure = ?2 WHERE id = ?1")?
                    .execute(rusqlite::params![
                        extension_id,
                        "the access it extends had already ended; request it again"
                    ])?;
                None
            };
            let after = load_required(&tx, extension_id)?;
            let mut effects = effects(&after, parent_after.as_ref());
            effects.audit.insert(
                0,
                AuditEvent::new(
                    "accessd",
                    "ticket.extend",
                    after.reference(),
                    serde_json::json!({
                        "parent": parent.as_ref().map(Ticket::reference),
                        "expires_at": parent_after.as_ref().and_then(|p| p.expires_at).map(ts),
                        "status": after.status.as_str(),
                    }),
                ),
            );
            write_effects(&tx, &effects)?;
            if let Some(job) = job_id {
                complete_job_tx(&tx, job)?;
            }
            tx.commit()?;
            Ok(after)
        })
        .await
    }

    /// `accessd tickets retry`: a failed ticket goes back to `approved` with
    /// its provisioning job due now; its failed grants are tried again with
    /// the same idempotency keys.
    pub async fn retry_ticket(&self, ticket_id: i64, actor: String) -> Result<super::Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, ticket_id)?;
            if ticket.status != Status::Failed || ticket.kind == Kind::Extension {
                return Ok(super::Changed::NotApplicable(ticket));
            }
            let now = Utc::now();
            set_status(&tx, ticket_id, Status::Approved, ticket.stage, now)?;
            schedule_job_tx(
                &tx,
                job::PROVISION,
                &ticket.reference(),
                now,
                &serde_json::Value::Null,
            )?;
            audit(
                &tx,
                &actor,
                "ticket.retry",
                ticket.reference(),
                serde_json::json!({ "failure": ticket.failure }),
            )?;
            let after = load_required(&tx, ticket_id)?;
            tx.commit()?;
            Ok(super::Changed::Done(after))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
