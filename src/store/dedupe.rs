//! Dedupe of Socket Mode deliveries: the `envelope_id`s and `event_id`s already handled, across connections and restarts.
//!
//! Slack redelivers an envelope it thinks was not acked, possibly on another
//! of our connections, and Events API retries arrive as new envelopes with
//! the same `event_id`; both ids are recorded.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction};

use super::{ts, write_tx, Result, Store};

/// Whether either id was recorded before.
pub(crate) fn seen_before_conn(
    conn: &Connection,
    envelope_id: &str,
    event_id: Option<&str>,
) -> Result<bool> {
    let envelope = conn
        .prepare_cached("SELECT 1 FROM seen_envelopes WHERE envelope_id = ?1")?
        .query_row([envelope_id], |_| Ok(()))
        .optional()?
        .is_some();
    if envelope {
        return Ok(true);
    }
    match event_id {
        Some(event_id) => Ok(conn
            .prepare_cached("SELECT 1 FROM seen_events WHERE event_id = ?1")?
            .query_row([event_id], |_| Ok(()))
            .optional()?
            .is_some()),
        None => Ok(false),
    }
}

/// Records both ids (insert-or-ignore) inside the caller's transaction, so a
/// handler can mark the delivery in the same commit as its state change.
/// Returns true when this was the first sighting (neither id known before):
/// check-and-mark in one step, with no window for a concurrent duplicate.
pub(crate) fn mark_seen_tx(
    tx: &Transaction<'_>,
    envelope_id: &str,
    event_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = ts(now);
    let new_envelope = tx
        .prepare_cached(
            "INSERT INTO seen_envelopes (envelope_id, seen_at) VALUES (?1, ?2)
             ON CONFLICT (envelope_id) DO NOTHING",
        )?
        .execute([envelope_id, now.as_str()])?
        == 1;
    let new_event = match event_id {
        Some(event_id) => {
            tx.prepare_cached(
                "INSERT INTO seen_events (event_id, seen_at) VALUES (?1, ?2)
                 ON CONFLICT (event_id) DO NOTHING",
            )?
            .execute([event_id, now.as_str()])?
                == 1
        }
        None => true,
    };
    Ok(new_envelope && new_event)
}

impl Store {
    /// Read-only: has this envelope, or the event it carries, been seen?
    pub async fn seen_before(&self, envelope_id: String, event_id: Option<String>) -> Result<bool> {
        self.call(move |conn| seen_before_conn(conn, &envelope_id, event_id.as_deref()))
            .await
    }

    /// Records the envelope id and, when given, the event id (already known ids are kept as they are).
    pub async fn mark_seen(&self, envelope_id: String, event_id: Option<String>) -> Result<()> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            mark_seen_tx(&tx, &envelope_id, event_id.as_deref(), Utc::now())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Forgets ids recorded before `older_than` (Slack stops redelivering
    /// after minutes; keep a day or so). Returns the number of rows removed.
    pub async fn prune_seen(&self, older_than: DateTime<Utc>) -> Result<usize> {
        self.call(move |conn| {
            let cutoff = ts(older_than);
            let tx = write_tx(conn)?;
            let envelopes =
                tx.execute("DELETE FROM seen_envelopes WHERE seen_at < ?1", [&cutoff])?;
            let events = tx.execute("DELETE FROM seen_events WHERE seen_at < ?1", [&cutoff])?;
            tx.commit()?;
            Ok(envelopes + events)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;

    #[tokio::test]
    async fn seen_survives_a_restart() {
        let (dir, store) = temp_store();
        assert!(!store
            .seen_before("env-1".into(), Some("Ev1".into()))
            .await
            .unwrap());
        store
            .mark_seen("env-1".into(), Some("Ev1".into()))
            .await
            .unwrap();
        store.close().await;

        let store = Store::open(&dir.path().join("accessd.db")).unwrap();
        assert!(store.seen_before("env-1".into(), None).await.unwrap());
        // A retry of the same event in a fresh envelope is a duplicate too.
        assert!(store
            .seen_before("env-2".into(), Some("Ev1".into()))
            .await
            .unwrap());
        // Unrelated ids are not.
        assert!(!store
            .seen_before("env-3".into(), Some("Ev3".into()))
            .await
            .unwrap());
        assert!(!store.seen_before("env-3".into(), None).await.unwrap());
        store.close().await;
    }

    #[tokio::test]
    async fn mark_seen_is_idempotent_and_keeps_first_time() {
        let (_dir, store) = temp_store();
        store.mark_seen("e".into(), Some("v".into())).await.unwrap();
        let first: String = store
            .call(|c| Ok(c.query_row("SELECT seen_at FROM seen_envelopes", [], |r| r.get(0))?))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store.mark_seen("e".into(), Some("v".into())).await.unwrap();
        let (n, again): (i64, String) = store
            .call(|c| {
                Ok(c.query_row(
                    "SELECT count(*), max(seen_at) FROM seen_envelopes",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(first, again);
        store.close().await;
    }

    #[tokio::test]
    async fn mark_seen_tx_reports_first_sighting() {
        let (_dir, store) = temp_store();
        let results = store
            .call(|c| {
                let now = Utc::now();
                let tx = write_tx(c)?;
                let a = mark_seen_tx(&tx, "e1", Some("v1"), now)?;
                let b = mark_seen_tx(&tx, "e1", Some("v1"), now)?;
                let c2 = mark_seen_tx(&tx, "e2", Some("v1"), now)?; // new envelope, old event
                let d = mark_seen_tx(&tx, "e3", None, now)?;
                tx.commit()?;
                Ok((a, b, c2, d))
            })
            .await
            .unwrap();
        assert_eq!(results, (true, false, false, true));
        store.close().await;
    }

    #[tokio::test]
    async fn prune_removes_only_old_ids() {
        let (_dir, store) = temp_store();
        store
            .call(|c| {
                let tx = write_tx(c)?;
                mark_seen_tx(&tx, "old", Some("old-ev"), at("2026-01-01T00:00:00Z"))?;
                mark_seen_tx(&tx, "new", Some("new-ev"), at("2026-01-03T00:00:00Z"))?;
                tx.commit()?;
                Ok(())
            })
            .await
            .unwrap();
        let removed = store.prune_seen(at("2026-01-02T00:00:00Z")).await.unwrap();
        assert_eq!(removed, 2);
        assert!(!store
            .seen_before("old".into(), Some("old-ev".into()))
            .await
            .unwrap());
        assert!(store.seen_before("new".into(), None).await.unwrap());
        assert!(store
            .seen_before("x".into(), Some("new-ev".into()))
            .await
            .unwrap());
        store.close().await;
    }
}
