//! Audit log: append-only, hash-chained rows (one per state change, in the change's own transaction), chain verification and export.
//!
//! `hash = hex(sha256(prev_hash \n seq \n at \n actor \n action \n subject \n detail))`
//! over the stored text, with 64 zeros as the first row's `prev_hash`.
//! Fields are joined by newlines, so actor, action and subject may not
//! contain one (`detail` is compact JSON, which never does); otherwise two
//! different rows could hash the same.

use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{json_col, ts, ts_col, write_tx, Result, Store, StoreError};

pub(crate) const GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Something that happened, to be appended to the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Who did it: a Slack user id, an email, `system`, `cli:<user>`.
    pub actor: String,
    /// What happened, e.g. `ticket.approved`.
    pub action: String,
    /// What it happened to, e.g. `T-42`.
    pub subject: String,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        AuditEvent {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            detail,
        }
    }
}

/// One stored row, for `accessd audit export`. `at` re-formatted with
/// millisecond precision and `Z` is exactly the text that was hashed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Rows present.
    pub rows: i64,
    pub last_seq: Option<i64>,
    /// Hash of the last row; recording it elsewhere lets a later check notice
    /// a truncated tail even if `sqlite_sequence` was edited too.
    pub last_hash: Option<String>,
    /// The first place the chain is broken; `None` when intact.
    pub first_broken: Option<AuditBreak>,
}

impl AuditVerification {
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditBreak {
    /// The first row that does not check out (for `Truncated`: the first missing seq).
    pub seq: i64,
    pub kind: AuditBreakKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditBreakKind {
    /// The row's content does not match its own hash.
    Altered,
    /// The row's `prev_hash` is not the previous row's hash.
    BrokenLink,
    /// Rows before this one are missing (deleted).
    Gap,
    /// Rows after the last one are missing (the highest seq ever written is larger).
    Truncated,
    /// The chain holds, but the anchored head's row is gone (the log was
    /// cut back to before it, or emptied, with `sqlite_sequence` edited too).
    HeadMissing,
    /// The chain holds, but the anchored row's hash is not the anchored one:
    /// the chain was recomputed after a change at or before it.
    HeadRewritten,
}

/// A row's place in the chain as recorded elsewhere (`accessd audit head`,
/// the anchor posted to Slack): later, the chain must still hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

impl fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            AuditBreakKind::Altered => "row content does not match its hash",
            AuditBreakKind::BrokenLink => "prev_hash does not match the previous row",
            AuditBreakKind::Gap => "rows before it were deleted",
            AuditBreakKind::Truncated => "rows from here on were deleted",
            AuditBreakKind::HeadMissing => "the anchored row is gone",
            AuditBreakKind::HeadRewritten => "the anchored row's hash changed",
        };
        write!(f, "audit chain broken at seq {}: {what}", self.seq)
    }
}

pub(crate) fn chain_hash(
    prev_hash: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> String {
    let seq = seq.to_string();
    let mut h = Sha256::new();
    for (i, part) in [prev_hash, &seq, at, actor, action, subject, detail]
        .iter()
        .enumerate()
    {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

fn check_field(name: &str, value: &str) -> Result<()> {
    if value.contains('\n') {
        return Err(StoreError::InvalidInput(format!(
            "audit {name} must not contain a newline: {value:?}"
        )));
    }
    Ok(())
}

/// Highest seq ever used: AUTOINCREMENT keeps it in sqlite_sequence even when
/// the last rows are gone.
fn highest_seq_used(conn: &Connection) -> Result<i64> {
    let recorded: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(recorded.unwrap_or(0))
}

/// Appends `ev` inside the caller's transaction (which must be a write
/// transaction, see [`super::write_tx`], so no other writer can slip a row in
/// between reading the chain's tail and appending). Returns the new seq.
pub(crate) fn append_audit_tx(tx: &Transaction<'_>, ev: &AuditEvent) -> Result<i64> {
    check_field("actor", &ev.actor)?;
    check_field("action", &ev.action)?;
    check_field("subject", &ev.subject)?;
    let detail = serde_json::to_string(&ev.detail)?;
    let (last_seq, prev_hash): (i64, String) = tx
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS_HASH.to_owned()));
    // The seq is part of the hash, so it is chosen here rather than by SQLite,
    // using the same rule AUTOINCREMENT would: a deleted tail leaves a gap.
    let seq = last_seq.max(highest_seq_used(tx)?) + 1;
    let at = ts(Utc::now());
    let hash = chain_hash(
        &prev_hash,
        seq,
        &at,
        &ev.actor,
        &ev.action,
        &ev.subject,
        &detail,
    );
    tx.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![
        seq, at, ev.actor, ev.action, ev.subject, detail, prev_hash, hash
    ])?;
    Ok(seq)
}

fn verify_conn(conn: &Connection, anchor: Option<&AuditHead>) -> Result<AuditVerification> {
    let mut st =
        conn.prepare("SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log ORDER BY seq")?;
    let mut rows = st.query([])?;
    let mut count = 0_i64;
    let mut last: Option<(i64, String)> = None;
    let mut first_broken = None;
    let mut anchored_hash: Option<String> = None;
    // Streams row by row: the log can be large.
    while let Some(row) = rows.next()? {
        count += 1;
        let seq: i64 = row.get(0)?;
        if anchor.is_some_and(|a| a.seq == seq) {
            anchored_hash = Some(row.get(7)?);
        }
        if first_broken.is_some() {
            last = Some((seq, row.get(7)?));
            continue;
        }
        let at: String = row.get(1)?;
        let actor: String = row.get(2)?;
        let action: String = row.get(3)?;
        let subject: String = row.get(4)?;
        let detail: String = row.get(5)?;
        let prev_hash: String = row.get(6)?;
        let hash: String = row.get(7)?;
        let (expected_seq, expected_prev) = match &last {
            Some((s, h)) => (s + 1, h.as_str()),
            None => (1, GENESIS_HASH),
        };
        let kind = if seq != expected_seq {
            Some(AuditBreakKind::Gap)
        } else if prev_hash != expected_prev {
            Some(AuditBreakKind::BrokenLink)
        } else if [&actor, &action, &subject].iter().any(|f| f.contains('\n'))
            || chain_hash(&prev_hash, seq, &at, &actor, &action, &subject, &detail) != hash
        {
            // Newlines are refused at append, so one here was written by hand.
            Some(AuditBreakKind::Altered)
        } else {
            None
        };
        first_broken = kind.map(|kind| AuditBreak { seq, kind });
        last = Some((seq, hash));
    }
    let last_seq = last.as_ref().map(|(s, _)| *s);
    if first_broken.is_none() {
        let highest = highest_seq_used(conn)?;
        if highest > last_seq.unwrap_or(0) {
            first_broken = Some(AuditBreak {
                seq: last_seq.unwrap_or(0) + 1,
                kind: AuditBreakKind::Truncated,
            });
        }
    }
    if let (None, Some(anchor)) = (&first_broken, anchor) {
        let kind = match anchored_hash {
            None => Some(AuditBreakKind::HeadMissing),
            Some(hash) if hash != anchor.hash => Some(AuditBreakKind::HeadRewritten),
            Some(_) => None,
        };
        first_broken = kind.map(|kind| AuditBreak {
            seq: anchor.seq,
            kind,
        });
    }
    Ok(AuditVerification {
        rows: count,
        last_seq,
        last_hash: last.map(|(_, h)| h),
        first_broken,
    })
}

impl Store {
    /// Appends one event in its own transaction. Returns its seq.
    pub async fn append_audit(&self, ev: AuditEvent) -> Result<i64> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let seq = append_audit_tx(&tx, &ev)?;
            tx.commit()?;
            Ok(seq)
        })
        .await
    }

    /// Walks the whole chain (`accessd audit verify`). A broken chain is a
    /// result, not an error: see [`AuditVerification::first_broken`].
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        self.verify_audit_against(None).await
    }

    /// [`Store::verify_audit`], and the chain must still hold `anchor` (a
    /// head recorded off the host): a log cut back and its sequence reset,
    /// or recomputed from a changed row on, verifies on its own but not
    /// against an older head.
    pub async fn verify_audit_against(
        &self,
        anchor: Option<AuditHead>,
    ) -> Result<AuditVerification> {
        self.call(move |conn| {
            // One read transaction: a consistent snapshot even while appends go on.
            let tx = conn.transaction()?;
            let v = verify_conn(&tx, anchor.as_ref())?;
            tx.finish()?;
            Ok(v)
        })
        .await
    }

    /// The newest row's seq and hash (`accessd audit head`, the anchor);
    /// `None` for an empty log.
    pub async fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.call(|conn| {
            Ok(conn
                .query_row(
                    "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| {
                        Ok(AuditHead {
                            seq: r.get(0)?,
                            hash: r.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Rows with `at >= since` (all when `None`), in seq order.
    pub async fn audit_rows(&self, since: Option<DateTime<Utc>>) -> Result<Vec<AuditRow>> {
        self.audit_page(since, 0, i64::MAX, usize::MAX).await
    }

    /// Up to `limit` rows with `at >= since` and `after < seq <= upto`, in
    /// seq order: export reads the log in pages so its memory stays flat, and
    /// fixes `upto` first so rows appended meanwhile do not join half-way.
    pub async fn audit_page(
        &self,
        since: Option<DateTime<Utc>>,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<AuditRow>> {
        self.call(move |conn| {
            let since = since.map(ts).unwrap_or_default();
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut st = conn.prepare(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log
                 WHERE at >= ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
            )?;
            let rows = st.query_map(rusqlite::params![since, after, upto, limit], |r| {
                Ok(AuditRow {
                    seq: r.get(0)?,
                    at: ts_col(r, 1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    subject: r.get(4)?,
                    detail: json_col(r, 5)?,
                    prev_hash: r.get(6)?,
                    hash: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// The newest row's seq; 0 for an empty log.
    pub async fn audit_last_seq(&self) -> Result<i64> {
        self.call(|conn| {
            Ok(
                conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use serde_json::json;

    async fn store_with_rows(n: usize) -> (tempfile::TempDir, Store) {
        let (dir, store) = temp_store();
        for i in 1..=n {
            let seq = store
                .append_audit(AuditEvent::new(
                    "U1",
                    "ticket.created",
                    format!("T-{i}"),
                    json!({ "i": i, "reason": "needs\naccess" }),
                ))
                .await
                .unwrap();
            assert_eq!(seq, i as i64);
        }
        (dir, store)
    }

    /// Tampering needs the triggers gone, as an attacker with file access would do.
    async fn tamper(store: &Store, sql: &'static str) {
        store
            .call(move |c| {
                c.execute_batch(
                    "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
                )?;
                c.execute_batch(sql)?;
                Ok(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn appended_rows_chain_and_verify() {
        let (_dir, store) = store_with_rows(5).await;
        let rows = store.audit_rows(None).await.unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].prev_hash, GENESIS_HASH);
        for w in rows.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        // The documented formula, recomputed from the exported row.
        let r = &rows[2];
        let detail = serde_json::to_string(&r.detail).unwrap();
        let at = r.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let expected = hex::encode(Sha256::digest(
            format!(
                "{}\n{}\n{}\n{}\n{}\n{}\n{}",
                r.prev_hash, r.seq, at, r.actor, r.action, r.subject, detail
            )
            .as_bytes(),
        ));
        assert_eq!(r.hash, expected);
        assert_eq!(r.detail["reason"], "needs\naccess");

        let v = store.verify_audit().await.unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert_eq!(v.rows, 5);
        assert_eq!(v.last_seq, Some(5));
        assert_eq!(v.last_hash.as_deref(), Some(rows[4].hash.as_str()));
        store.close().await;
    }

    #[tokio::test]
    async fn an_empty_log_verifies() {
        let (_dir, store) = temp_store();
        let v = store.verify_audit().await.unwrap();
        assert_eq!(
            v,
            AuditVerification {
                rows: 0,
                last_seq: None,
                last_hash: None,
                first_broken: None
            }
        );
        store.close().await;
    }

    #[tokio::test]
    async fn triggers_block_update_and_delete() {
        let (_dir, store) = store_with_rows(2).await;
        for sql in [
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 2",
            "DELETE FROM audit_log",
        ] {
            let err = store
                .call(move |c| Ok(c.execute(sql, [])?))
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("audit_log is append-only"),
                "{sql}: {err}"
            );
        }
        let v = store.verify_audit().await.unwrap();
        assert!(v.is_intact());
        assert_eq!(v.rows, 2);
        store.close().await;
    }

    #[tokio::test]
    async fn altered_content_is_found() {
        let (_dir, store) = store_with_rows(4).await;
        tamper(
            &store,
            "UPDATE audit_log SET detail = '{\"i\":99}' WHERE seq = 2",
        )
        .await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(
            v.first_broken,
            Some(AuditBreak {
                seq: 2,
                kind: AuditBreakKind::Altered
            })
        );
        assert_eq!(v.rows, 4);
        store.close().await;
    }

    #[tokio::test]
    async fn a_rewritten_row_breaks_the_next_link() {
        let (_dir, store) = store_with_rows(4).await;
        // Rewrite row 2 consistently (content and its own hash): only the link
        // from row 3 can tell.
        store
            .call(|c| {
                c.execute_batch("DROP TRIGGER audit_log_no_update;")?;
                let (prev, at): (String, String) = c.query_row(
                    "SELECT prev_hash, at FROM audit_log WHERE seq = 2",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let hash = chain_hash(&prev, 2, &at, "U1", "ticket.created", "T-2", "{\"i\":2,\"forged\":true}");
                c.execute(
                    "UPDATE audit_log SET detail = '{\"i\":2,\"forged\":true}', hash = ?1 WHERE seq = 2",
                    [hash],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let v = store.verify_audit().await.unwrap();
        assert_eq!(
            v.first_broken,
            Some(AuditBreak {
                seq: 3,
                kind: AuditBreakKind::BrokenLink
            })
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_deleted_row_leaves_a_gap() {
        let (_dir, store) = store_with_rows(4).await;
        tamper(&store, "DELETE FROM audit_log WHERE seq = 2").await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(
            v.first_broken,
            Some(AuditBreak {
                seq: 3,
                kind: AuditBreakKind::Gap
            })
        );
        assert_eq!(v.rows, 3);
        store.close().await;
    }

    #[tokio::test]
    async fn a_deleted_first_row_leaves_a_gap() {
        let (_dir, store) = store_with_rows(3).await;
        tamper(&store, "DELETE FROM audit_log WHERE seq = 1").await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(
            v.first_broken,
            Some(AuditBreak {
                seq: 2,
                kind: AuditBreakKind::Gap
            })
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_deleted_tail_is_found_and_not_papered_over_by_new_appends() {
        let (_dir, store) = store_with_rows(4).await;
        tamper(&store, "DELETE FROM audit_log WHERE seq >= 3").await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(
            v.first_broken,
            Some(AuditBreak {
                seq: 3,
                kind: AuditBreakKind::Truncated
            })
        );
        // The next append does not reuse seq 3, so the hole stays visible.
        let seq = store
            .append_audit(AuditEvent::new("system", "x", "y", json!({})))
            .await
            .unwrap();
        assert_eq!(seq, 5);
        let v = store.verify_audit().await.unwrap();
        assert_eq!(
            v.first_broken,
            Some(AuditBreak {
                seq: 5,
                kind: AuditBreakKind::Gap
            })
        );
        store.close().await;
    }

    #[tokio::test]
    async fn newlines_in_key_fields_are_refused() {
        let (_dir, store) = temp_store();
        let err = store
            .append_audit(AuditEvent::new(
                "U1\nticket.approved",
                "x",
                "T-1",
                json!(null),
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)));
        assert_eq!(store.verify_audit().await.unwrap().rows, 0);
        store.close().await;
    }

    #[tokio::test]
    async fn pages_cover_the_log_once_up_to_the_seq_fixed_at_the_start() {
        let (_dir, store) = store_with_rows(5).await;
        let upto = store.audit_last_seq().await.unwrap();
        assert_eq!(upto, 5);
        // A row appended after the export began is not part of it.
        store
            .append_audit(AuditEvent::new("U9", "late", "T-9", json!(null)))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = store.audit_page(None, after, upto, 2).await.unwrap();
            let Some(last) = page.last() else { break };
            assert!(page.len() <= 2);
            after = last.seq;
            seen.extend(page.iter().map(|r| r.seq));
        }
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        assert_eq!(store.audit_last_seq().await.unwrap(), 6);
        store.close().await;
    }

    #[tokio::test]
    async fn audit_rows_since_filters_by_time() {
        let (_dir, store) = store_with_rows(2).await;
        // Stored times have millisecond precision: keep the cut clear of both sides.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let cut = Utc::now();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .append_audit(AuditEvent::new(
                "U2",
                "ticket.approved",
                "T-1",
                json!({ "c": "ok" }),
            ))
            .await
            .unwrap();
        let rows = store.audit_rows(Some(cut)).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].seq, rows[0].actor.as_str()), (3, "U2"));
        assert_eq!(store.audit_rows(None).await.unwrap().len(), 3);
        store.close().await;
    }

    #[tokio::test]
    async fn audit_row_rolls_back_with_the_state_change() {
        let (_dir, store) = temp_store();
        let r: Result<()> = store
            .call(|c| {
                let tx = write_tx(c)?;
                append_audit_tx(
                    &tx,
                    &AuditEvent::new("U1", "ticket.approved", "T-1", json!({})),
                )?;
                Err(StoreError::InvalidInput("transition refused".into()))
            })
            .await;
        assert!(r.is_err());
        let v = store.verify_audit().await.unwrap();
        assert_eq!(v.rows, 0);
        assert!(
            v.is_intact(),
            "a rolled-back append must not look like truncation: {v:?}"
        );
        store.close().await;
    }
}
