//! Provisioning a ticket's grants: starting it (one grant row per role),
//! counting and recording each provisioner call, finishing it (live with an
//! expiry, or failed), settling manual tasks, and `accessd tickets retry`.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction};

use super::{
    audit, grants_of, job, load_grant, schedule_expiry, Grant, GrantResult, GrantSpec, GrantStatus,
    GrantedBy, ProvisionStart,
};
use crate::domain::ticket::{Kind, Status};
use crate::store::effects::{write_effects, Effects};
use crate::store::jobs::{complete_job_tx, schedule_job_tx};
use crate::store::tickets::{load_required, set_status, Actor, Ticket};
use crate::store::{ts, write_tx, AuditEvent, Changed, Result, Store, StoreError};

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

impl Store {
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
        self.record_grant_by(grant_id, result, None).await
    }

    /// [`Store::record_grant`], also keeping who made it (`by`), in the
    /// same transaction: the revoke must find them.
    pub async fn record_grant_by(
        &self,
        grant_id: i64,
        result: GrantResult,
        by: Option<GrantedBy>,
    ) -> Result<Grant> {
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
                    if let Some(by) = &by {
                        tx.prepare_cached(
                            "UPDATE grants SET provisioner_id = ?2, target = ?3 WHERE id = ?1",
                        )?
                        .execute(rusqlite::params![grant_id, by.provisioner_id, by.target])?;
                    }
                    serde_json::json!({
                        "result": if result == GrantResult::Applied { "applied" } else { "already_present" },
                        "preexisting": preexisting,
                        "attempts": grant.attempts,
                        "provisioner": by.as_ref().map(|b| &b.provisioner_id),
                        "target": by.as_ref().and_then(|b| b.target.as_ref()),
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
    ) -> Result<Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, ticket_id)?;
            let grants = grants_of(&tx, ticket_id)?;
            let open = ticket.status == Status::Provisioning
                && grants.iter().any(|g| g.manual && g.status == GrantStatus::Pending);
            if !open {
                return Ok(Changed::NotApplicable(ticket));
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
                return Ok(Changed::Refused { ticket, reason });
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
            Ok(Changed::Done(after))
        })
        .await
    }

    /// `accessd tickets retry`: a failed ticket goes back to `approved` with
    /// its provisioning job due now; its failed grants are tried again with
    /// the same idempotency keys.
    pub async fn retry_ticket(&self, ticket_id: i64, actor: String) -> Result<Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, ticket_id)?;
            if ticket.status != Status::Failed || ticket.kind == Kind::Extension {
                return Ok(Changed::NotApplicable(ticket));
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
            Ok(Changed::Done(after))
        })
        .await
    }
}
