//! Outbox queries: durable outgoing Slack Web API calls, enqueued in the same transaction as the change they report, then sent, retried or declared dead by the outbox worker.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction};
use serde::Serialize;

use super::alerts::record_alert_message_tx;
use super::reviews::record_page_tx;
use super::{json_col, opt_ts_col, ts, ts_col, write_tx, Result, Store, StoreError};
pub use crate::slack_api::RESPOND;

/// A Slack Web API call to make later.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Web API method, e.g. `chat.postMessage`.
    pub method: String,
    /// Pacing key (Slack limits ~1 message/s per channel).
    pub channel: String,
    pub payload: serde_json::Value,
    /// When set, a second message with the same key is not enqueued (ever:
    /// sent and dead messages keep their key).
    pub dedupe_key: Option<String>,
    /// Recorded from Slack's answer once the message is sent.
    pub on_sent: Option<OnSent>,
    /// Higher is delivered first ([`ALERT`] for alerts); ordinary is 0.
    pub priority: i64,
}

/// The lane of alerts: ahead of every ordinary notification.
pub const ALERT: i64 = 10;

impl NewMessage {
    /// An ephemeral answer to `user` through an interaction's `response_url`;
    /// paced with that user. The original message is left as it was.
    pub fn respond(response_url: &str, user: &str, text: &str, blocks: serde_json::Value) -> Self {
        Self {
            method: RESPOND.into(),
            channel: user.into(),
            payload: serde_json::json!({
                "response_url": response_url,
                "user": user,
                "body": { "response_type": "ephemeral", "replace_original": false,
                          "text": text, "blocks": blocks },
            }),
            dedupe_key: None,
            on_sent: None,
            priority: 0,
        }
    }

    /// A `chat.postMessage` to a channel or, with a user id, to the app's DM
    /// with that user. `text` is the notification fallback for the blocks.
    pub fn post(channel: &str, text: &str, blocks: serde_json::Value) -> Self {
        Self {
            method: "chat.postMessage".into(),
            channel: channel.into(),
            payload: serde_json::json!({ "channel": channel, "text": text, "blocks": blocks }),
            dedupe_key: None,
            on_sent: None,
            priority: 0,
        }
    }

    /// A `chat.update` of an earlier message; paced with the DM's user.
    pub fn update(
        pacing_key: &str,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: serde_json::Value,
    ) -> Self {
        Self {
            method: "chat.update".into(),
            channel: pacing_key.into(),
            payload: serde_json::json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks }),
            dedupe_key: None,
            on_sent: None,
            priority: 0,
        }
    }

    /// Delivered in the alerts' lane, ahead of ordinary notifications.
    pub fn as_alert(mut self) -> Self {
        self.priority = ALERT;
        self
    }

    pub fn with_on_sent(mut self, on_sent: OnSent) -> Self {
        self.on_sent = Some(on_sent);
        self
    }
}

/// What to remember from Slack's answer to a sent message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSent {
    /// The DM asking `approver_slack_id` to decide on a ticket: kept so every
    /// copy can be updated with the outcome.
    ApproverMessage {
        ticket_id: i64,
        approver_slack_id: String,
    },
    /// The DM asking an app owner to grant or remove access by hand: kept so
    /// every owner's copy shows who did it.
    TaskMessage {
        ticket_id: i64,
        owner_slack_id: String,
    },
    /// An alert's channel post: kept so the finding knows where it was shown.
    AlertMessage { key: String },
    /// One page of a reviewer's items: kept so decisions update it in place.
    ReviewPage {
        campaign_id: i64,
        reviewer_email: String,
        page: i64,
    },
}

/// A pending call handed to the outbox worker.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub method: String,
    pub channel: String,
    pub payload: serde_json::Value,
    /// Failed attempts so far.
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    /// Not sent before this (retry backoff, Retry-After).
    pub next_attempt_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    pub pending: i64,
    pub dead: i64,
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// Enqueues inside the caller's transaction, due at once. `None` when a
/// message with the same `dedupe_key` already exists.
pub(crate) fn enqueue_tx(tx: &Transaction<'_>, msg: &NewMessage) -> Result<Option<i64>> {
    let now = ts(Utc::now());
    let payload = serde_json::to_string(&msg.payload)?;
    let on_sent = msg
        .on_sent
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?;
    // ON CONFLICT names the key, so only a dedupe hit is ignored; any other
    // constraint failure still errors.
    let id = tx
        .prepare_cached(
            "INSERT INTO outbox (method, channel, payload, dedupe_key, status, attempts, next_attempt_at, created_at, on_sent, priority)
             VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?6, ?7)
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING id",
        )?
        .query_row(
            rusqlite::params![
                msg.method,
                msg.channel,
                payload,
                msg.dedupe_key,
                now,
                on_sent,
                msg.priority
            ],
            |r| r.get(0),
        )
        .optional()?;
    Ok(id)
}

/// `restated` marks a DM rewritten by a decision while it was being sent:
/// the copy Slack now shows may be the old one, so it is updated at once.
fn record_on_sent(
    tx: &Transaction<'_>,
    raw: &str,
    response: &serde_json::Value,
    sent_payload: &serde_json::Value,
) -> Result<()> {
    let on_sent: OnSent = serde_json::from_str(raw)?;
    let restated = serde_json::from_str::<serde_json::Value>(raw)?
        .pointer("/approver_message/restated")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    // Every kind records where the message landed; without both there is
    // nothing to record.
    let channel = response.get("channel").and_then(|v| v.as_str());
    let message_ts = response.get("ts").and_then(|v| v.as_str());
    let (Some(channel), Some(message_ts)) = (channel, message_ts) else {
        return Ok(());
    };
    match &on_sent {
        OnSent::ApproverMessage {
            ticket_id,
            approver_slack_id,
        } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO approver_messages (ticket_id, approver_slack_id, channel, ts)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(rusqlite::params![ticket_id, approver_slack_id, channel, message_ts])?;
            if restated {
                let text = sent_payload
                    .get("text")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                let blocks = sent_payload.get("blocks").cloned().unwrap_or_default();
                enqueue_tx(
                    tx,
                    &NewMessage::update(approver_slack_id, channel, message_ts, text, blocks),
                )?;
            }
        }
        OnSent::TaskMessage {
            ticket_id,
            owner_slack_id,
        } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO approver_messages (ticket_id, approver_slack_id, channel, ts, purpose)
                 VALUES (?1, ?2, ?3, ?4, 'task')",
            )?
            .execute(rusqlite::params![ticket_id, owner_slack_id, channel, message_ts])?;
        }
        OnSent::AlertMessage { key } => {
            record_alert_message_tx(tx, key, channel, message_ts)?;
        }
        OnSent::ReviewPage {
            campaign_id,
            reviewer_email,
            page,
        } => {
            record_page_tx(tx, *campaign_id, reviewer_email, *page, channel, message_ts)?;
        }
    }
    Ok(())
}

fn not_pending(id: i64) -> StoreError {
    StoreError::NotFound {
        what: "pending outbox message",
        id,
    }
}

impl Store {
    /// Enqueues one message in its own transaction. `None` on a dedupe hit.
    pub async fn enqueue(&self, msg: NewMessage) -> Result<Option<i64>> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let id = enqueue_tx(&tx, &msg)?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// Pending messages due at `now`, oldest first (id order is enqueue order,
    /// which keeps each channel's messages in order).
    pub async fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>> {
        self.pending_messages(Some(now), limit).await
    }

    /// The oldest pending messages, due or not: the worker holds a channel back
    /// while its oldest message waits for a retry, so nothing overtakes it.
    pub async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxItem>> {
        self.pending_messages(None, limit).await
    }

    async fn pending_messages(
        &self,
        due_by: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT id, method, channel, payload, attempts, created_at, next_attempt_at FROM outbox
                 WHERE status = 'pending' AND (?1 IS NULL OR next_attempt_at <= ?1)
                 ORDER BY priority DESC, id LIMIT ?2",
            )?;
            let rows = st.query_map(rusqlite::params![due_by.map(ts), limit], |r| {
                Ok(OutboxItem {
                    id: r.get(0)?,
                    method: r.get(1)?,
                    channel: r.get(2)?,
                    payload: json_col(r, 3)?,
                    attempts: r.get(4)?,
                    created_at: ts_col(r, 5)?,
                    next_attempt_at: ts_col(r, 6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Slack accepted the call; keeps its response (e.g. the `ts` of a posted
    /// message, needed for later `chat.update`).
    pub async fn outbox_sent(&self, id: i64, response: serde_json::Value) -> Result<()> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let (on_sent, payload): (Option<String>, String) = tx
                .prepare_cached(
                    "SELECT on_sent, payload FROM outbox WHERE id = ?1 AND status = 'pending'",
                )?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| not_pending(id))?;
            let text = serde_json::to_string(&response)?;
            tx.prepare_cached(
                "UPDATE outbox SET status = 'sent', sent_at = ?2, response = ?3, last_error = NULL
                 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(rusqlite::params![id, ts(Utc::now()), text])?;
            if let Some(on_sent) = on_sent {
                record_on_sent(&tx, &on_sent, &response, &serde_json::from_str(&payload)?)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A failed attempt to try again at `at` (attempts += 1).
    pub async fn outbox_retry(&self, id: i64, at: DateTime<Utc>, error: String) -> Result<()> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
                     WHERE id = ?1 AND status = 'pending'",
                )?
                .execute(rusqlite::params![id, ts(at), error])?;
            if n == 1 {
                Ok(())
            } else {
                Err(not_pending(id))
            }
        })
        .await
    }

    /// A final failure (attempts += 1): the message is kept for inspection and
    /// counted in [`OutboxStats::dead`], never sent.
    pub async fn outbox_dead(&self, id: i64, error: String) -> Result<()> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?2
                     WHERE id = ?1 AND status = 'pending'",
                )?
                .execute(rusqlite::params![id, error])?;
            if n == 1 {
                Ok(())
            } else {
                Err(not_pending(id))
            }
        })
        .await
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats> {
        self.call(|conn| outbox_stats_on(conn)).await
    }
}

/// Shared with the `/metrics` gauges, which read it in their own store call.
pub(crate) fn outbox_stats_on(conn: &rusqlite::Connection) -> Result<OutboxStats> {
    Ok(conn.query_row(
        "SELECT
           (SELECT count(*) FROM outbox WHERE status = 'pending'),
           (SELECT count(*) FROM outbox WHERE status = 'dead'),
           (SELECT min(created_at) FROM outbox WHERE status = 'pending')",
        [],
        |r| {
            Ok(OutboxStats {
                pending: r.get(0)?,
                dead: r.get(1)?,
                oldest_pending: opt_ts_col(r, 2)?,
            })
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use serde_json::json;

    fn msg(channel: &str, text: &str, key: Option<&str>) -> NewMessage {
        NewMessage {
            method: "chat.postMessage".into(),
            channel: channel.into(),
            payload: json!({ "channel": channel, "text": text }),
            dedupe_key: key.map(Into::into),
            on_sent: None,
            priority: 0,
        }
    }

    fn ids(items: &[OutboxItem]) -> Vec<i64> {
        items.iter().map(|i| i.id).collect()
    }

    #[tokio::test]
    async fn due_items_come_in_enqueue_order_with_their_payload() {
        let (_dir, store) = temp_store();
        let a = store.enqueue(msg("C2", "a", None)).await.unwrap().unwrap();
        let b = store.enqueue(msg("C1", "b", None)).await.unwrap().unwrap();
        let c = store.enqueue(msg("C2", "c", None)).await.unwrap().unwrap();
        assert!(a < b && b < c);
        let now = Utc::now() + chrono::Duration::seconds(1);
        let due = store.outbox_due(now, 10).await.unwrap();
        assert_eq!(ids(&due), vec![a, b, c]);
        assert_eq!(due[1].payload, json!({ "channel": "C1", "text": "b" }));
        assert_eq!(due[1].method, "chat.postMessage");
        assert_eq!(due[1].channel, "C1");
        assert_eq!(due[1].attempts, 0);
        assert_eq!(ids(&store.outbox_due(now, 2).await.unwrap()), vec![a, b]);
        // Nothing is due before it was enqueued.
        let past = at("2000-01-01T00:00:00Z");
        assert!(store.outbox_due(past, 10).await.unwrap().is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn retry_moves_the_item_and_counts_attempts() {
        let (_dir, store) = temp_store();
        let a = store.enqueue(msg("C", "a", None)).await.unwrap().unwrap();
        let b = store.enqueue(msg("C", "b", None)).await.unwrap().unwrap();
        let now = Utc::now() + chrono::Duration::seconds(1);
        let later = now + chrono::Duration::seconds(30);
        store
            .outbox_retry(a, later, "ratelimited".into())
            .await
            .unwrap();

        assert_eq!(ids(&store.outbox_due(now, 10).await.unwrap()), vec![b]);
        store
            .outbox_sent(b, json!({ "ok": true, "ts": "1.2" }))
            .await
            .unwrap();
        // a waits for its retry: not due now, due at `later`.
        assert!(store.outbox_due(now, 10).await.unwrap().is_empty());
        let due = store.outbox_due(later, 10).await.unwrap();
        assert_eq!(ids(&due), vec![a]);
        assert_eq!(due[0].attempts, 1);
        let (err, resp): (String, String) = store
            .call(move |c| {
                Ok(c.query_row(
                    "SELECT (SELECT last_error FROM outbox WHERE id = ?1),
                            (SELECT response FROM outbox WHERE id = ?2)",
                    [a, b],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(err, "ratelimited");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&resp).unwrap()["ts"],
            "1.2"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn dead_and_sent_items_leave_the_queue_and_stats_count_them() {
        let (_dir, store) = temp_store();
        let empty = store.outbox_stats().await.unwrap();
        assert_eq!(
            empty,
            OutboxStats {
                pending: 0,
                dead: 0,
                oldest_pending: None
            }
        );

        let a = store.enqueue(msg("C", "a", None)).await.unwrap().unwrap();
        let b = store.enqueue(msg("C", "b", None)).await.unwrap().unwrap();
        let c = store.enqueue(msg("C", "c", None)).await.unwrap().unwrap();
        store
            .outbox_dead(a, "channel_not_found".into())
            .await
            .unwrap();
        store.outbox_sent(b, json!({ "ok": true })).await.unwrap();

        let stats = store.outbox_stats().await.unwrap();
        assert_eq!(stats.pending, 1);
        assert_eq!(stats.dead, 1);
        let created_c = store
            .outbox_due(Utc::now() + chrono::Duration::seconds(1), 10)
            .await
            .unwrap();
        assert_eq!(ids(&created_c), vec![c]);
        assert_eq!(stats.oldest_pending, Some(created_c[0].created_at));

        // A finished message cannot be finished again.
        assert!(matches!(
            store.outbox_sent(a, json!({})).await,
            Err(StoreError::NotFound { id, .. }) if id == a
        ));
        assert!(matches!(
            store.outbox_retry(b, Utc::now(), "x".into()).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.outbox_dead(9999, "x".into()).await,
            Err(StoreError::NotFound { .. })
        ));
        store.close().await;
    }

    #[tokio::test]
    async fn dedupe_key_enqueues_once_and_null_keys_do_not_collide() {
        let (_dir, store) = temp_store();
        let first = store
            .enqueue(msg("C", "a", Some("T-1:created")))
            .await
            .unwrap();
        assert!(first.is_some());
        let again = store
            .enqueue(msg("C", "a2", Some("T-1:created")))
            .await
            .unwrap();
        assert_eq!(again, None);
        // Still deduped after the first one was sent.
        store.outbox_sent(first.unwrap(), json!({})).await.unwrap();
        assert_eq!(
            store
                .enqueue(msg("C", "a3", Some("T-1:created")))
                .await
                .unwrap(),
            None
        );
        assert!(store.enqueue(msg("C", "b", None)).await.unwrap().is_some());
        assert!(store.enqueue(msg("C", "c", None)).await.unwrap().is_some());
        assert!(store
            .enqueue(msg("C", "d", Some("other")))
            .await
            .unwrap()
            .is_some());
        let total: i64 = store
            .call(|c| Ok(c.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(total, 4);
        store.close().await;
    }

    #[tokio::test]
    async fn enqueue_tx_rolls_back_with_its_transaction() {
        let (_dir, store) = temp_store();
        let r: Result<()> = store
            .call(|c| {
                let tx = write_tx(c)?;
                enqueue_tx(&tx, &msg("C", "a", Some("k")))?;
                Err(StoreError::InvalidInput("state change refused".into()))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(store.outbox_stats().await.unwrap().pending, 0);
        // The key was not burnt by the rolled-back attempt.
        assert!(store
            .enqueue(msg("C", "a", Some("k")))
            .await
            .unwrap()
            .is_some());
        store.close().await;
    }

    #[tokio::test]
    async fn pending_items_survive_a_restart() {
        let (dir, store) = temp_store();
        let a = store.enqueue(msg("C", "a", None)).await.unwrap().unwrap();
        store.close().await;
        let store = Store::open(&dir.path().join("accessd.db")).unwrap();
        let due = store
            .outbox_due(Utc::now() + chrono::Duration::seconds(1), 10)
            .await
            .unwrap();
        assert_eq!(ids(&due), vec![a]);
        store.close().await;
    }
}
