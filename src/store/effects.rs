//! The effects contract every store transition shares: the messages, audit
//! rows, DM restatements and timers a state change writes in its own
//! transaction ([`Effects`]), and [`write_effects`], which writes them.

use rusqlite::Transaction;

use super::audit::append_audit_tx;
use super::jobs::{apply_job_change_tx, JobChange};
use super::outbox::enqueue_tx;
use super::{AuditEvent, NewMessage, Result};

/// Messages and audit rows written with a transition.
#[derive(Debug, Default)]
pub struct Effects {
    pub messages: Vec<NewMessage>,
    pub audit: Vec<AuditEvent>,
    /// What each approver's DM about the ticket should say now. DMs still
    /// queued are rewritten; one being sent right now is marked, so the worker
    /// updates it as soon as Slack says where it landed.
    pub restate_dms: Vec<RestatedDm>,
    /// Timers set or dropped by the transition (reminders, provisioning, expiry).
    pub jobs: Vec<JobChange>,
}

#[derive(Debug, Clone)]
pub struct RestatedDm {
    pub ticket_id: i64,
    pub approver_slack_id: String,
    pub text: String,
    pub blocks: serde_json::Value,
}

pub(crate) fn write_effects(tx: &Transaction<'_>, effects: &Effects) -> Result<()> {
    for change in &effects.jobs {
        apply_job_change_tx(tx, change)?;
    }
    for message in &effects.messages {
        enqueue_tx(tx, message)?;
    }
    for event in &effects.audit {
        append_audit_tx(tx, event)?;
    }
    for dm in &effects.restate_dms {
        tx.prepare_cached(
            "UPDATE outbox
             SET payload = json_set(payload, '$.text', ?3, '$.blocks', json(?4)),
                 on_sent = json_set(on_sent, '$.approver_message.restated', json('true'))
             WHERE status = 'pending' AND method = 'chat.postMessage'
               AND json_extract(on_sent, '$.approver_message.ticket_id') = ?1
               AND json_extract(on_sent, '$.approver_message.approver_slack_id') = ?2",
        )?
        .execute(rusqlite::params![
            dm.ticket_id,
            dm.approver_slack_id,
            dm.text,
            serde_json::to_string(&dm.blocks)?
        ])?;
    }
    Ok(())
}
