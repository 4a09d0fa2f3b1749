//! Alerts as findings: raising one by its stable fingerprint (posted once
//! while open or acknowledged, again only after it resolved), resolving,
//! acting on one from its channel message (audited), app marks (watch /
//! ignore) and the `#name` → channel id cache.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::audit::append_audit_tx;
use super::jobs::apply_job_change_tx;
use super::outbox::enqueue_tx;
use super::{json_col, opt_ts_col, ts, ts_col, write_tx, AuditEvent, JobChange, NewMessage};
use super::{OnSent, Result, Store};

/// A finding to record, and the post announcing it (`None`: recorded only,
/// e.g. found during a silent baseline or routed nowhere).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub kind: String,
    /// Stable fingerprint: the same finding always has the same key.
    pub key: String,
    pub source_id: Option<String>,
    pub app: Option<String>,
    pub detail: serde_json::Value,
    pub message: Option<NewMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub detail: serde_json::Value,
    pub channel: Option<String>,
    pub ts: Option<String>,
    pub source_id: Option<String>,
    pub app: Option<String>,
    pub acted_by: Option<String>,
    pub acted_at: Option<DateTime<Utc>>,
    pub action: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ALERT_COLUMNS: &str = "id, kind, key, status, detail, channel, ts, source_id, app, \
     acted_by, acted_at, action, created_at, updated_at";

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        key: r.get(2)?,
        status: r.get(3)?,
        detail: json_col(r, 4)?,
        channel: r.get(5)?,
        ts: r.get(6)?,
        source_id: r.get(7)?,
        app: r.get(8)?,
        acted_by: r.get(9)?,
        acted_at: opt_ts_col(r, 10)?,
        action: r.get(11)?,
        created_at: ts_col(r, 12)?,
        updated_at: ts_col(r, 13)?,
    })
}

/// Records the finding; true when it is new or came back after resolving
/// (and its message, if any, was queued).
pub(crate) fn raise_tx(tx: &Transaction<'_>, alert: &NewAlert) -> Result<bool> {
    let now = ts(Utc::now());
    let status: Option<String> = tx
        .prepare_cached("SELECT status FROM alerts WHERE key = ?1")?
        .query_row([&alert.key], |r| r.get(0))
        .optional()?;
    let detail = serde_json::to_string(&alert.detail)?;
    let posts = i64::from(alert.message.is_some());
    match status.as_deref() {
        None => {
            tx.prepare_cached(
                "INSERT INTO alerts (kind, key, status, detail, source_id, app, posts, created_at, updated_at)
                 VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7, ?7)",
            )?
            .execute(params![alert.kind, alert.key, detail, alert.source_id, alert.app, posts, now])?;
        }
        Some("resolved") => {
            tx.prepare_cached(
                "UPDATE alerts SET status = 'open', detail = ?2, acted_by = NULL, acted_at = NULL,
                   action = NULL, resolved_at = NULL, channel = NULL, ts = NULL,
                   posts = posts + ?3, updated_at = ?4
                 WHERE key = ?1",
            )?
            .execute(params![alert.key, detail, posts, now])?;
        }
        Some(_) => return Ok(false),
    }
    if let Some(message) = &alert.message {
        let message = message.clone().with_on_sent(OnSent::AlertMessage {
            key: alert.key.clone(),
        });
        enqueue_tx(tx, &message)?;
    }
    Ok(true)
}

/// Marks a finding resolved (its condition ended); true if it was not already.
pub(crate) fn resolve_tx(tx: &Transaction<'_>, key: &str) -> Result<bool> {
    let now = ts(Utc::now());
    let n = tx
        .prepare_cached(
            "UPDATE alerts SET status = 'resolved', resolved_at = ?2, updated_at = ?2
             WHERE key = ?1 AND status <> 'resolved'",
        )?
        .execute(params![key, now])?;
    Ok(n == 1)
}

/// Where the alert's message landed, from Slack's answer.
pub(crate) fn record_alert_message_tx(
    tx: &Transaction<'_>,
    key: &str,
    channel: &str,
    message_ts: &str,
) -> Result<()> {
    tx.prepare_cached("UPDATE alerts SET channel = ?2, ts = ?3 WHERE key = ?1")?
        .execute(params![key, channel, message_ts])?;
    Ok(())
}

/// One click on an alert's message, applied with everything it causes.
#[derive(Debug, Clone)]
pub struct AlertAction {
    pub key: String,
    /// `acknowledged`, `watch`, `ignore` or `revoke`.
    pub action: String,
    /// Who clicked, as shown to people (an email).
    pub actor: String,
    /// `(app, mark)` to record in `app_marks`.
    pub mark: Option<(String, String)>,
    pub audit: AuditEvent,
    pub messages: Vec<NewMessage>,
    pub jobs: Vec<JobChange>,
}

/// What an alert action came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    Done,
    /// Someone already acted; nothing changed.
    AlreadyDone {
        action: String,
        by: String,
    },
    NotFound,
}

impl Store {
    pub async fn alert(&self, key: String) -> Result<Option<AlertRow>> {
        self.call(move |conn| {
            let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE key = ?1");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([key], alert_row)
                .optional()?)
        })
        .await
    }

    /// Alerts of `kind` (all kinds when `None`) in one of `statuses`, oldest first.
    pub async fn alerts(
        &self,
        kind: Option<String>,
        statuses: Vec<String>,
    ) -> Result<Vec<AlertRow>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM alerts
                 WHERE (?1 IS NULL OR kind = ?1) AND status IN (SELECT value FROM json_each(?2))
                 ORDER BY id"
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(params![kind, serde_json::to_string(&statuses)?], alert_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Raises every finding of `kind` in `current` and resolves the ones of
    /// that kind no longer there; returns (raised, resolved).
    pub async fn sync_findings(
        &self,
        kind: String,
        current: Vec<NewAlert>,
    ) -> Result<(usize, usize)> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let mut raised = 0;
            for alert in &current {
                raised += usize::from(raise_tx(&tx, alert)?);
            }
            let keep: std::collections::HashSet<&str> =
                current.iter().map(|a| a.key.as_str()).collect();
            let open: Vec<String> = tx
                .prepare_cached("SELECT key FROM alerts WHERE kind = ?1 AND status <> 'resolved'")?
                .query_map([&kind], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut resolved = 0;
            for key in open.iter().filter(|k| !keep.contains(k.as_str())) {
                resolved += usize::from(resolve_tx(&tx, key)?);
            }
            tx.commit()?;
            Ok((raised, resolved))
        })
        .await
    }

    /// Applies an action on an open finding: status, who and when, the app
    /// mark, the audit row, the messages and jobs it causes — together.
    pub async fn act_on_alert(&self, act: AlertAction) -> Result<ActionOutcome> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let found: Option<(String, Option<String>, Option<String>)> = tx
                .prepare_cached("SELECT status, action, acted_by FROM alerts WHERE key = ?1")?
                .query_row([&act.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((status, done, by)) = found else {
                return Ok(ActionOutcome::NotFound);
            };
            if let (Some(done), Some(by)) = (done, by) {
                if status != "resolved" {
                    return Ok(ActionOutcome::AlreadyDone { action: done, by });
                }
            }
            let now = ts(Utc::now());
            tx.prepare_cached(
                "UPDATE alerts SET status = CASE WHEN status = 'resolved' THEN status ELSE 'acknowledged' END,
                   action = ?2, acted_by = ?3, acted_at = ?4, updated_at = ?4 WHERE key = ?1",
            )?
            .execute(params![act.key, act.action, act.actor, now])?;
            if let Some((app, mark)) = &act.mark {
                tx.prepare_cached(
                    "INSERT INTO app_marks (app, mark, marked_by, marked_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (app) DO UPDATE SET mark = excluded.mark,
                       marked_by = excluded.marked_by, marked_at = excluded.marked_at",
                )?
                .execute(params![app, mark, act.actor, now])?;
            }
            append_audit_tx(&tx, &act.audit)?;
            for message in &act.messages {
                enqueue_tx(&tx, message)?;
            }
            for job in &act.jobs {
                apply_job_change_tx(&tx, job)?;
            }
            tx.commit()?;
            Ok(ActionOutcome::Done)
        })
        .await
    }

    /// Acknowledges every open finding of `kind` raised before `before`
    /// (the digest's button); returns how many, audited as one row.
    pub async fn acknowledge_findings(
        &self,
        kind: String,
        before: DateTime<Utc>,
        actor: String,
        audit: AuditEvent,
    ) -> Result<usize> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let now = ts(Utc::now());
            let n = tx
                .prepare_cached(
                    "UPDATE alerts SET status = 'acknowledged', action = 'acknowledged',
                       acted_by = ?3, acted_at = ?4, updated_at = ?4
                     WHERE kind = ?1 AND status = 'open' AND created_at <= ?2",
                )?
                .execute(params![kind, ts(before), actor, now])?;
            if n > 0 {
                let mut audit = audit;
                audit.detail["count"] = serde_json::json!(n);
                append_audit_tx(&tx, &audit)?;
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// App id → `watch` / `ignore`, as marked from alert actions.
    pub async fn app_marks(&self) -> Result<HashMap<String, String>> {
        self.call(|conn| {
            let rows = conn
                .prepare_cached("SELECT app, mark FROM app_marks")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<HashMap<_, _>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Remembers resolved `#name` → id pairs (for the CLI, which has no Slack access).
    pub async fn save_channels(&self, channels: Vec<(String, String)>) -> Result<()> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let now = ts(Utc::now());
            for (name, id) in &channels {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO slack_channels (name, id, resolved_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![name, id, now])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn saved_channels(&self) -> Result<HashMap<String, String>> {
        self.call(|conn| {
            let rows = conn
                .prepare_cached("SELECT name, id FROM slack_channels")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<HashMap<_, _>>>()?;
            Ok(rows)
        })
        .await
    }
}
