//! Ending grants: the revoke job's target, ending a grant (and with the last
//! one its ticket and extensions), revoke-now requests, and applying an
//! approved extension to the parent's live grants.

use chrono::Utc;

use super::{audit, grants_of, job, load_grant, schedule_expiry, Grant, GrantStatus, RevokeTarget};
use crate::domain::ticket::{extended_end, Kind, Status};
use crate::store::effects::{write_effects, Effects};
use crate::store::jobs::{cancel_job_tx, complete_job_tx, schedule_job_tx};
use crate::store::tickets::{load_required, set_status, Actor, Ticket};
use crate::store::{ts, write_tx, AuditEvent, Changed, Result, Store, StoreError};

impl Store {
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
                cancel_job_tx(&tx, job::EXPIRY_WARNING, &ticket.reference())?;
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
    ) -> Result<Changed> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let ticket = load_required(&tx, ticket_id)?;
            let grants: Vec<Grant> = grants_of(&tx, ticket_id)?
                .into_iter()
                .filter(|g| g.status == GrantStatus::Active && grant_id.is_none_or(|id| id == g.id))
                .collect();
            if grants.is_empty() {
                return Ok(Changed::NotApplicable(ticket));
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
                return Ok(Changed::Refused { ticket, reason: why });
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
            Ok(Changed::Done(ticket))
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
                let expires_at = extended_end(
                    parent.expires_at,
                    now,
                    extension.duration_secs,
                    extension.plan.max_duration_secs,
                );
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
}
