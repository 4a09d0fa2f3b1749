//! Durable timers (reminders, expiries, polls, digests): at most one pending job per (kind, subject), picked up by the scheduler when due, including after a restart.
//!
//! Re-scheduling a (kind, subject) replaces its pending job by a new row
//! (new id) instead of updating it in place. That closes a lost-update race:
//! if the old job is running while the domain moves it (say a grant is
//! extended while its expiry job runs), the runner's `complete_job(old_id)`
//! finds no pending row and changes nothing, so the new schedule stands.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction};

use super::{json_col, opt_ts_col, ts, ts_col, write_tx, Result, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub run_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    /// Failed runs so far (reset when the job is re-scheduled).
    pub attempts: i64,
}

/// A timer to set or drop together with a state change (see [`Effects`](super::Effects)).
#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    Schedule {
        kind: String,
        subject: String,
        run_at: DateTime<Utc>,
        payload: serde_json::Value,
    },
    Cancel {
        kind: String,
        subject: String,
    },
}

impl JobChange {
    pub fn schedule(kind: &str, subject: &str, run_at: DateTime<Utc>) -> Self {
        JobChange::Schedule {
            kind: kind.into(),
            subject: subject.into(),
            run_at,
            payload: serde_json::Value::Null,
        }
    }

    pub fn with_payload(self, payload: serde_json::Value) -> Self {
        match self {
            JobChange::Schedule {
                kind,
                subject,
                run_at,
                ..
            } => JobChange::Schedule {
                kind,
                subject,
                run_at,
                payload,
            },
            cancel => cancel,
        }
    }

    pub fn cancel(kind: &str, subject: &str) -> Self {
        JobChange::Cancel {
            kind: kind.into(),
            subject: subject.into(),
        }
    }
}

pub(crate) fn apply_job_change_tx(tx: &Transaction<'_>, change: &JobChange) -> Result<()> {
    match change {
        JobChange::Schedule {
            kind,
            subject,
            run_at,
            payload,
        } => {
            schedule_job_tx(tx, kind, subject, *run_at, payload)?;
        }
        JobChange::Cancel { kind, subject } => {
            cancel_job_tx(tx, kind, subject)?;
        }
    }
    Ok(())
}

/// Marks a pending job done inside the caller's transaction, so a job's
/// result and its completion commit together. False when it is no longer
/// pending (re-scheduled or cancelled meanwhile).
pub(crate) fn complete_job_tx(tx: &Transaction<'_>, id: i64) -> Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE jobs SET status = 'done', updated_at = ?2 WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(rusqlite::params![id, ts(Utc::now())])?;
    Ok(n == 1)
}

/// Schedules inside the caller's transaction, so a state change and its timer
/// commit together. Scheduling what is already pending with the same time and
/// payload is a no-op returning the existing id; otherwise the pending job of
/// that (kind, subject) is replaced.
pub(crate) fn schedule_job_tx(
    tx: &Transaction<'_>,
    kind: &str,
    subject: &str,
    run_at: DateTime<Utc>,
    payload: &serde_json::Value,
) -> Result<i64> {
    let run_at = ts(run_at);
    let payload = serde_json::to_string(payload)?;
    let existing: Option<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT id, run_at, payload FROM jobs
             WHERE kind = ?1 AND subject = ?2 AND status = 'pending'",
        )?
        .query_row([kind, subject], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((id, old_run_at, old_payload)) = existing {
        if old_run_at == run_at && old_payload == payload {
            return Ok(id);
        }
        tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?
            .execute([id])?;
    }
    let now = ts(Utc::now());
    let id = tx
        .prepare_cached(
            "INSERT INTO jobs (kind, subject, run_at, payload, status, attempts, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)
             RETURNING id",
        )?
        .query_row(rusqlite::params![kind, subject, run_at, payload, now], |r| {
            r.get(0)
        })?;
    Ok(id)
}

/// Removes the pending job of (kind, subject), if any, inside the caller's
/// transaction (a cancelled ticket drops its reminder). True if one was removed.
pub(crate) fn cancel_job_tx(tx: &Transaction<'_>, kind: &str, subject: &str) -> Result<bool> {
    let n = tx
        .prepare_cached("DELETE FROM jobs WHERE kind = ?1 AND subject = ?2 AND status = 'pending'")?
        .execute([kind, subject])?;
    Ok(n > 0)
}

impl Store {
    /// Creates or replaces the pending job of (kind, subject); returns its id.
    pub async fn schedule_job(
        &self,
        kind: String,
        subject: String,
        run_at: DateTime<Utc>,
        payload: serde_json::Value,
    ) -> Result<i64> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let id = schedule_job_tx(&tx, &kind, &subject, run_at, &payload)?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// Drops the pending job of (kind, subject). True if there was one.
    pub async fn cancel_job(&self, kind: String, subject: String) -> Result<bool> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let removed = cancel_job_tx(&tx, &kind, &subject)?;
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    /// Pending jobs with `run_at <= now`, earliest first (ties by id), so
    /// overdue work after downtime runs in the order it fell due.
    pub async fn due_jobs(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT id, kind, subject, run_at, payload, attempts FROM jobs
                 WHERE status = 'pending' AND run_at <= ?1
                 ORDER BY run_at, id LIMIT ?2",
            )?;
            let rows = st.query_map(rusqlite::params![ts(now), limit], |r| {
                Ok(Job {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    subject: r.get(2)?,
                    run_at: ts_col(r, 3)?,
                    payload: json_col(r, 4)?,
                    attempts: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// When the earliest pending job is due (possibly in the past); `None` if
    /// nothing is pending.
    pub async fn next_job_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.call(|conn| {
            Ok(conn
                .prepare_cached("SELECT min(run_at) FROM jobs WHERE status = 'pending'")?
                .query_row([], |r| opt_ts_col(r, 0))?)
        })
        .await
    }

    /// Marks a pending job done. False when it is no longer pending: it was
    /// re-scheduled or cancelled while it ran, and that newer decision stands.
    pub async fn complete_job(&self, id: i64) -> Result<bool> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE jobs SET status = 'done', updated_at = ?2
                     WHERE id = ?1 AND status = 'pending'",
                )?
                .execute(rusqlite::params![id, ts(Utc::now())])?;
            Ok(n == 1)
        })
        .await
    }

    /// A failed run to try again at `at` (attempts += 1). False when the job
    /// is no longer pending (see [`Store::complete_job`]).
    pub async fn retry_job(&self, id: i64, at: DateTime<Utc>, error: String) -> Result<bool> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE jobs SET run_at = ?2, attempts = attempts + 1, last_error = ?3, updated_at = ?4
                     WHERE id = ?1 AND status = 'pending'",
                )?
                .execute(rusqlite::params![id, ts(at), error, ts(Utc::now())])?;
            Ok(n == 1)
        })
        .await
    }

    /// Gives up on a job (attempts += 1); it stays for inspection. False when
    /// it is no longer pending (see [`Store::complete_job`]).
    pub async fn fail_job(&self, id: i64, error: String) -> Result<bool> {
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE jobs SET status = 'failed', attempts = attempts + 1, last_error = ?2, updated_at = ?3
                     WHERE id = ?1 AND status = 'pending'",
                )?
                .execute(rusqlite::params![id, error, ts(Utc::now())])?;
            Ok(n == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use serde_json::json;

    async fn pending_count(store: &Store) -> i64 {
        store
            .call(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM jobs WHERE status = 'pending'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn scheduling_the_same_kind_and_subject_keeps_one_pending_job() {
        let (_dir, store) = temp_store();
        let t1 = at("2026-03-01T10:00:00Z");
        let t2 = at("2026-03-01T12:00:00Z");
        let a = store
            .schedule_job("expire".into(), "G-1".into(), t1, json!({ "n": 1 }))
            .await
            .unwrap();
        // Identical request: idempotent, same id.
        let a2 = store
            .schedule_job("expire".into(), "G-1".into(), t1, json!({ "n": 1 }))
            .await
            .unwrap();
        assert_eq!(a, a2);
        // Moved: replaced, still one pending job, with the new time and payload.
        let b = store
            .schedule_job("expire".into(), "G-1".into(), t2, json!({ "n": 2 }))
            .await
            .unwrap();
        assert_eq!(pending_count(&store).await, 1);
        let due = store.due_jobs(t2, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, b);
        assert_eq!(due[0].run_at, t2);
        assert_eq!(due[0].payload, json!({ "n": 2 }));
        assert!(store.due_jobs(t1, 10).await.unwrap().is_empty());
        // Another subject or kind is another job.
        store
            .schedule_job("expire".into(), "G-2".into(), t1, json!(null))
            .await
            .unwrap();
        store
            .schedule_job("remind".into(), "G-1".into(), t1, json!(null))
            .await
            .unwrap();
        assert_eq!(pending_count(&store).await, 3);
        store.close().await;
    }

    #[tokio::test]
    async fn due_jobs_are_ordered_by_time_and_limited() {
        let (_dir, store) = temp_store();
        let late = store
            .schedule_job(
                "k".into(),
                "late".into(),
                at("2026-01-01T03:00:00Z"),
                json!(null),
            )
            .await
            .unwrap();
        let early = store
            .schedule_job(
                "k".into(),
                "early".into(),
                at("2026-01-01T01:00:00Z"),
                json!(null),
            )
            .await
            .unwrap();
        let mid = store
            .schedule_job(
                "k".into(),
                "mid".into(),
                at("2026-01-01T02:00:00Z"),
                json!(null),
            )
            .await
            .unwrap();
        store
            .schedule_job(
                "k".into(),
                "future".into(),
                at("2026-01-02T00:00:00Z"),
                json!(null),
            )
            .await
            .unwrap();
        let now = at("2026-01-01T05:00:00Z");
        let ids: Vec<i64> = store
            .due_jobs(now, 10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, vec![early, mid, late]);
        let ids: Vec<i64> = store
            .due_jobs(now, 2)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, vec![early, mid]);
        assert_eq!(
            store.next_job_at().await.unwrap(),
            Some(at("2026-01-01T01:00:00Z"))
        );
        store.close().await;
    }

    #[tokio::test]
    async fn complete_retry_and_fail() {
        let (_dir, store) = temp_store();
        let t = at("2026-01-01T00:00:00Z");
        let a = store
            .schedule_job("k".into(), "a".into(), t, json!(null))
            .await
            .unwrap();
        let b = store
            .schedule_job("k".into(), "b".into(), t, json!(null))
            .await
            .unwrap();
        let c = store
            .schedule_job("k".into(), "c".into(), t, json!(null))
            .await
            .unwrap();

        assert!(store.complete_job(a).await.unwrap());
        let later = at("2026-01-01T00:10:00Z");
        assert!(store.retry_job(b, later, "timeout".into()).await.unwrap());
        assert!(store.fail_job(c, "bad payload".into()).await.unwrap());

        assert!(store.due_jobs(t, 10).await.unwrap().is_empty());
        let due = store.due_jobs(later, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].id, due[0].attempts), (b, 1));
        assert_eq!(store.next_job_at().await.unwrap(), Some(later));

        // Finished jobs stay finished.
        assert!(!store.complete_job(a).await.unwrap());
        assert!(!store.retry_job(c, later, "x".into()).await.unwrap());
        assert!(!store.fail_job(a, "x".into()).await.unwrap());

        // A done (kind, subject) can be scheduled again: a fresh pending job.
        let a2 = store
            .schedule_job("k".into(), "a".into(), t, json!(null))
            .await
            .unwrap();
        assert_ne!(a, a2);
        assert!(store.complete_job(b).await.unwrap());
        assert!(store.complete_job(a2).await.unwrap());
        assert_eq!(store.next_job_at().await.unwrap(), None);
        store.close().await;
    }

    #[tokio::test]
    async fn rescheduling_while_running_is_not_lost() {
        let (_dir, store) = temp_store();
        let t1 = at("2026-01-01T00:00:00Z");
        let t2 = at("2026-01-08T00:00:00Z");
        store
            .schedule_job("expire".into(), "G-7".into(), t1, json!(null))
            .await
            .unwrap();
        let running = store.due_jobs(t1, 1).await.unwrap().remove(0);
        // The grant is extended while the expiry job runs.
        let moved = store
            .schedule_job("expire".into(), "G-7".into(), t2, json!(null))
            .await
            .unwrap();
        assert!(!store.complete_job(running.id).await.unwrap());
        assert!(!store.retry_job(running.id, t1, "x".into()).await.unwrap());
        let due = store.due_jobs(t2, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].id, due[0].run_at), (moved, t2));
        store.close().await;
    }

    #[tokio::test]
    async fn cancel_removes_only_the_pending_job() {
        let (_dir, store) = temp_store();
        let t = at("2026-01-01T00:00:00Z");
        store
            .schedule_job("remind".into(), "T-1".into(), t, json!(null))
            .await
            .unwrap();
        assert!(store
            .cancel_job("remind".into(), "T-1".into())
            .await
            .unwrap());
        assert!(!store
            .cancel_job("remind".into(), "T-1".into())
            .await
            .unwrap());
        assert!(store.due_jobs(t, 10).await.unwrap().is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn the_partial_unique_index_refuses_a_second_pending_job() {
        let (_dir, store) = temp_store();
        let err = store
            .call(|c| {
                for _ in 0..2 {
                    c.execute(
                        "INSERT INTO jobs (kind, subject, run_at, created_at, updated_at)
                         VALUES ('k', 's', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                        [],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        store.close().await;
    }

    #[tokio::test]
    async fn jobs_survive_a_restart() {
        let (dir, store) = temp_store();
        let t = at("2026-01-01T00:00:00Z");
        let id = store
            .schedule_job("k".into(), "s".into(), t, json!({ "x": 1 }))
            .await
            .unwrap();
        store.close().await;
        let store = Store::open(&dir.path().join("accessd.db")).unwrap();
        let due = store.due_jobs(t, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].id, &due[0].payload), (id, &json!({ "x": 1 })));
        store.close().await;
    }
}
