//! SQLite store: the `Store` handle, opening (file permissions, pragmas, migrations), the worker thread that owns the read-write connection, timestamp/JSON column helpers and the store's error type.
//!
//! rusqlite is blocking, so one dedicated OS thread owns the read-write
//! [`Connection`] and runs closures sent to it over a bounded channel; each
//! caller awaits its answer on a oneshot. One writer also means SQLite never
//! has to arbitrate between writers of this process. Other processes (the
//! CLI while the daemon runs) are arbitrated by WAL + `busy_timeout`.
//!
//! Code outside `store/` uses only the typed async methods. The CLI uses a
//! current-thread tokio runtime rather than blocking twins of every method:
//! `Store::open` and `Store::migrate` are plain sync functions, everything else
//! is `block_on(store.method())`.

pub mod alerts;
pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod dedupe;
pub(crate) mod drafts;
pub(crate) mod effects;
pub mod grants;
pub mod identity;
pub(crate) mod jobs;
pub(crate) mod leases;
pub(crate) mod links;
pub(crate) mod metrics;
pub(crate) mod migrations;
pub(crate) mod outbox;
pub mod reviews;
pub(crate) mod tickets;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, Row, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

pub use alerts::{ActionOutcome, AlertAction, AlertRow, NewAlert};
pub use audit::{AuditBreak, AuditBreakKind, AuditEvent, AuditHead, AuditRow, AuditVerification};
pub use effects::{Effects, RestatedDm};
pub use grants::{Grant, GrantFilter, GrantStatus, GrantedBy, ProvisionStart, RevokeTarget};
pub use identity::{Offboarded, SourceState, SyncRecord};
pub use jobs::{Job, JobChange};
pub use links::UserLink;
pub use metrics::{MetricsGauges, MetricsSource};
pub use migrations::MigrationReport;
pub use outbox::{NewMessage, OnSent, OutboxItem, OutboxStats, ALERT, RESPOND};
pub use reviews::{
    Campaign, NewCampaign, NewReviewItem, ReviewChange, ReviewItem, ReviewerProgress,
};
pub use tickets::{
    Actor, Approval, ApproverMessage, Changed, Created, Decided, DecisionInput, NewTicket, Ticket,
    TicketFilter,
};

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("the store is closed")]
    Closed,
    #[error(
        "database schema version {db} is newer than this accessd supports ({supported}); \
         run the accessd release that wrote it, or restore a backup"
    )]
    TooNew { db: i64, supported: i64 },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("could not enable WAL journal mode (SQLite kept {0:?}); is the database on a network filesystem?")]
    WalUnavailable(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: i64 },
    #[error("refusing to overwrite existing file {}", .0.display())]
    DestinationExists(PathBuf),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("database content is invalid: {0}")]
    Corrupt(String),
    #[error("a store operation panicked (see the log); it was rolled back")]
    Panicked,
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// Bounded so a flood of callers waits (asynchronously) instead of growing memory.
const QUEUE_DEPTH: usize = 1024;
/// Store calls this slow hurt the 5 ms ack budget; worth a warning.
const SLOW_CALL: Duration = Duration::from_millis(250);

type Work = Box<dyn FnOnce(&mut Connection) + Send + 'static>;

tokio::task_local! {
    /// Set for tasks whose store calls may wait for the envelope path's.
    static BACKGROUND: ();
}

/// Runs `f` with its store calls in the background lane: the store thread
/// takes them only when no other call is waiting, so delivery, jobs and
/// syncs never queue ahead of a click's commit. Tasks `f` spawns are not in
/// the lane unless they are wrapped too.
pub async fn background<F: std::future::Future>(f: F) -> F::Output {
    BACKGROUND.scope((), f).await
}

enum Msg {
    Work { work: Work, background: bool },
    Close,
}

struct Shared {
    tx: mpsc::Sender<Msg>,
    /// Turns true once the worker has run all queued work and closed the connection.
    done: watch::Receiver<bool>,
    path: PathBuf,
}

/// Cheap, cloneable handle to the database. The worker thread stops when
/// every handle is dropped or [`Store::close`] is called, after finishing the
/// work already queued.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if missing, 0600) the database, sets the pragmas,
    /// applies pending migrations and starts the worker thread.
    pub fn open(path: &Path) -> Result<Store> {
        // Absolute, so a later chdir cannot point backups at another file.
        let path = std::path::absolute(path)
            .map_err(|e| StoreError::io(format!("resolving {}", path.display()), e))?;
        let mut conn = open_connection(&path)?;
        let report = migrations::apply(&mut conn)?;
        if report.from != report.to {
            tracing::info!(from = report.from, to = report.to, path = %path.display(), "database migrated");
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (done_tx, done_rx) = watch::channel(false);
        std::thread::Builder::new()
            .name("accessd-store".into())
            .spawn(move || worker(conn, rx, done_tx))
            .map_err(|e| StoreError::io("starting the store thread", e))?;
        Ok(Store {
            shared: Arc::new(Shared {
                tx,
                done: done_rx,
                path,
            }),
        })
    }

    /// `accessd db migrate`: brings the database to this binary's schema
    /// version without starting anything else.
    pub fn migrate(path: &Path) -> Result<MigrationReport> {
        let mut conn = open_connection(path)?;
        let report = migrations::apply(&mut conn)?;
        close_connection(conn);
        Ok(report)
    }

    /// Path of the database file (absolute).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Stops taking new work, lets the worker finish what is queued, closes
    /// the connection and returns once that is done. Later calls on any
    /// clone fail with [`StoreError::Closed`]. Calling it twice is fine.
    pub async fn close(&self) {
        // A send error means the worker already stopped accepting work.
        let _ = self.shared.tx.send(Msg::Close).await;
        let mut done = self.shared.done.clone();
        // Err: the worker's sender is gone, i.e. the thread has ended anyway.
        let _ = done.wait_for(|finished| *finished).await;
    }

    /// Runs `f` on the store thread with the read-write connection. Writes
    /// that belong together must use one call and [`write_tx`] so they commit
    /// (or roll back) together.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            // The caller may have gone away; the work is done (and committed) anyway.
            let _ = reply_tx.send(run_guarded(conn, f));
        });
        let background = BACKGROUND.try_with(|_| ()).is_ok();
        self.shared
            .tx
            .send(Msg::Work { work, background })
            .await
            .map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The applied schema version (`PRAGMA user_version`).
    pub async fn schema_version(&self) -> Result<i64> {
        self.call(|conn| migrations::user_version(conn)).await
    }

    /// `SELECT 1` through the worker: proves the thread is alive and the file readable.
    pub async fn ping(&self) -> Result<()> {
        self.call(|conn| {
            let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0))?;
            if one == 1 {
                Ok(())
            } else {
                Err(StoreError::Corrupt(format!("SELECT 1 returned {one}")))
            }
        })
        .await
    }
}

fn worker(mut conn: Connection, mut rx: mpsc::Receiver<Msg>, done: watch::Sender<bool>) {
    // Background work waits here while anything else is queued; each call
    // awaits its reply, so this holds at most one item per background task.
    let mut background: std::collections::VecDeque<Work> = std::collections::VecDeque::new();
    loop {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(mpsc::error::TryRecvError::Empty) => match background.pop_front() {
                Some(work) => {
                    work(&mut conn);
                    continue;
                }
                None => match rx.blocking_recv() {
                    Some(msg) => msg,
                    None => break,
                },
            },
            // Every sender dropped, or closed and drained.
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match msg {
            Msg::Work {
                work,
                background: false,
            } => work(&mut conn),
            Msg::Work {
                work,
                background: true,
            } => background.push_back(work),
            // Refuse new work but keep draining what is already queued.
            Msg::Close => rx.close(),
        }
    }
    for work in background {
        work(&mut conn);
    }
    close_connection(conn);
    done.send_replace(true);
}

fn close_connection(conn: Connection) {
    // Closing the last connection checkpoints the WAL; a failure leaves a
    // valid WAL that the next open recovers, so it is only logged.
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the database connection failed");
    }
}

fn run_guarded<R>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<R>,
) -> Result<R> {
    let started = Instant::now();
    // A panicking closure must not take the store thread (and with it every
    // later call) down; its Transaction, if any, rolls back while unwinding.
    let result = catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
        tracing::error!("store operation panicked");
        Err(StoreError::Panicked)
    });
    // A closure that issued a raw BEGIN and bailed out would leave the
    // connection inside a transaction that swallows every later write.
    if !conn.is_autocommit() {
        tracing::error!("store operation left a transaction open; rolling it back");
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "rollback failed");
        }
    }
    let elapsed = started.elapsed();
    if elapsed > SLOW_CALL {
        tracing::warn!(
            elapsed_ms = elapsed.as_millis() as u64,
            "slow store operation"
        );
    }
    result
}

/// Starts a write transaction. IMMEDIATE takes the write lock up front, so a
/// read-then-write (audit chain, upserts) cannot fail half-way with
/// SQLITE_BUSY when another process wrote in between; `busy_timeout` applies.
pub(crate) fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection> {
    prepare_file(path)?;
    // No SQLITE_OPEN_URI: a path is a path.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<()> {
    // First, so switching to WAL waits for another process's lock instead of failing.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::WalUnavailable(mode));
    }
    // FULL: an acknowledged click must survive power loss (WAL + NORMAL could
    // lose the last commits). foreign_keys is per connection, off by default.
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Creates the parent directory and an empty 0600 database file if missing:
/// the file holds identity data, and SQLite gives its -wal/-shm files the
/// main file's mode.
fn prepare_file(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut dir = DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            dir.mode(0o700);
        }
        dir.create(parent)
            .map_err(|e| StoreError::io(format!("creating {}", parent.display()), e))?;
    }
    match create_private_file(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            warn_if_shared(path);
            Ok(())
        }
        Err(e) => Err(StoreError::io(format!("creating {}", path.display()), e)),
    }
}

/// `create_new` + mode 0600 in one syscall, so the file is never readable by
/// others, not even briefly; refuses to follow an existing file.
pub(crate) fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        // The umask can only remove bits; set it exactly anyway.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    {
        options.open(path)
    }
}

fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "database file is readable by other users; it holds identity data (chmod 600)");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

// ---------------------------------------------------------------------------
// Column helpers shared by the aggregate modules.

/// Oldest/newest instants storable: timestamps are compared as strings, which
/// only works while the year has exactly four digits.
const MIN_TS_SECS: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
const MAX_TS_SECS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

/// The one timestamp format of the database (see 0001_initial.sql). Instants
/// outside years 0000..=9999 are clamped, which keeps "far future" meaning
/// "never" instead of sorting before today.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    let secs = t.timestamp();
    let t = if secs > MAX_TS_SECS {
        DateTime::from_timestamp(MAX_TS_SECS, 999_000_000).unwrap_or(t)
    } else if secs < MIN_TS_SECS {
        DateTime::from_timestamp(MIN_TS_SECS, 0).unwrap_or(t)
    } else {
        t
    };
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(s: &str) -> std::result::Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

pub(crate) fn ts_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(idx)?;
    parse_ts(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

pub(crate) fn opt_ts_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        parse_ts(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    })
    .transpose()
}

pub(crate) fn json_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::domain::policy::{Plan, StagePlan};

    pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("accessd.db")).expect("open store");
        (dir, store)
    }

    pub(crate) fn at(s: &str) -> DateTime<Utc> {
        parse_ts(s).expect("test timestamp")
    }

    /// One stage per entry of `required` (how many approvals it needs), each
    /// with the same three approvers.
    pub(crate) fn plan(required: &[usize]) -> Plan {
        Plan {
            stages: required
                .iter()
                .map(|r| StagePlan {
                    approvers: vec!["a@x.com".into(), "b@x.com".into(), "c@x.com".into()],
                    required: *r,
                    fallback: false,
                    source: "test".into(),
                })
                .collect(),
            auto_approve: false,
            max_duration_secs: 86_400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_background_work_waits_for_other_calls_and_still_runs() {
        let (_dir, store) = temp_store();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let call = |name: &'static str, hold: Duration| {
            let (store, order) = (store.clone(), order.clone());
            async move {
                store
                    .call(move |_| {
                        std::thread::sleep(hold);
                        order.lock().unwrap().push(name);
                        Ok(())
                    })
                    .await
                    .unwrap()
            }
        };
        // Holds the store thread while the rest queue up behind it.
        let busy = tokio::spawn(background(call("busy", Duration::from_millis(300))));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let later = tokio::spawn(background(call("background", Duration::ZERO)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let click = tokio::spawn(call("click", Duration::ZERO));
        for task in [busy, later, click] {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["busy", "click", "background"]);
        store.close().await;
    }

    #[tokio::test]
    async fn pragmas_are_set_on_the_worker_connection() {
        let (_dir, store) = temp_store();
        let (mode, sync, fk, busy) = store
            .call(|c| {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                let fk: i64 = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
                let busy: i64 = c.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
                Ok((mode, sync, fk, busy))
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(fk, 1);
        assert_eq!(busy, 5000);
        store.close().await;
    }

    #[tokio::test]
    async fn wal_mode_persists_in_the_file() {
        let (dir, store) = temp_store();
        store.close().await;
        let raw = Connection::open(dir.path().join("accessd.db")).unwrap();
        let mode: String = raw
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn foreign_keys_are_enforced() {
        let (_dir, store) = temp_store();
        let err = store
            .call(|c| {
                c.execute(
                    "INSERT INTO approvals (ticket_id, stage, approver_slack_id, decision, decided_at)
                     VALUES (999, 0, 'U1', 'approve', '2026-01-01T00:00:00.000Z')",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        store.close().await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn creates_parent_dir_and_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/nested/accessd.db");
        let store = Store::open(&path).unwrap();
        store
            .call(|c| {
                c.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')", [])?;
                Ok(())
            })
            .await
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        let wal = path.with_file_name("accessd.db-wal");
        assert!(wal.exists(), "WAL file expected while open");
        assert_eq!(mode(&wal), 0o600, "SQLite copies the main file's mode");
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        store.close().await;
    }

    #[tokio::test]
    async fn close_finishes_queued_work_then_refuses_new_work() {
        let (dir, store) = temp_store();
        // Hold the worker busy so the calls below are still queued when close() comes.
        let (started_tx, started_rx) = oneshot::channel();
        let blocker = {
            let s = store.clone();
            tokio::spawn(async move {
                s.call(move |_| {
                    let _ = started_tx.send(());
                    std::thread::sleep(Duration::from_millis(200));
                    Ok(())
                })
                .await
            })
        };
        started_rx.await.unwrap();
        let mut queued = Vec::new();
        for i in 0..50 {
            let s = store.clone();
            queued.push(tokio::spawn(async move {
                s.call(move |c| {
                    c.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, 'x')",
                        [format!("k{i}")],
                    )?;
                    Ok(())
                })
                .await
            }));
        }
        // Let every spawned task put its work in the queue (the worker is asleep).
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.close().await;
        blocker.await.unwrap().unwrap();
        for q in queued {
            q.await
                .unwrap()
                .expect("work queued before close() must run");
        }
        assert!(matches!(store.ping().await, Err(StoreError::Closed)));
        // close() returned only after the queued work was committed and the
        // connection closed (WAL checkpointed away).
        assert!(!dir.path().join("accessd.db-wal").exists());
        let raw = Connection::open(dir.path().join("accessd.db")).unwrap();
        let n: i64 = raw
            .query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 50);
        // close() twice is harmless.
        store.close().await;
    }

    #[tokio::test]
    async fn dropping_every_handle_stops_the_worker() {
        let (_dir, store) = temp_store();
        let mut done = store.shared.done.clone();
        let clone = store.clone();
        drop(store);
        clone.ping().await.unwrap();
        drop(clone);
        tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d))
            .await
            .expect("worker did not stop")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_calls_from_many_tasks_all_complete() {
        let (_dir, store) = temp_store();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move {
                    s.enqueue(NewMessage {
                        method: "chat.postMessage".into(),
                        channel: format!("C{}", i % 7),
                        payload: serde_json::json!({ "text": i }),
                        dedupe_key: Some(format!("k{i}")),
                        on_sent: None,
                        priority: 0,
                    })
                    .await?;
                    s.append_audit(AuditEvent::new(
                        format!("U{i}"),
                        "test.concurrent",
                        format!("T-{i}"),
                        serde_json::json!({ "i": i }),
                    ))
                    .await?;
                    s.mark_seen(format!("E{i}"), None).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(store.outbox_stats().await.unwrap().pending, 200);
        let v = store.verify_audit().await.unwrap();
        assert_eq!(v.rows, 200);
        assert!(v.first_broken.is_none(), "{v:?}");
        store.close().await;
    }

    #[tokio::test]
    async fn a_panicking_call_does_not_kill_the_store() {
        let (_dir, store) = temp_store();
        let r: Result<()> = store
            .call(|c| {
                let tx = write_tx(c)?;
                tx.execute("INSERT INTO meta (key, value) VALUES ('p', 'x')", [])?;
                panic!("boom");
            })
            .await;
        assert!(matches!(r, Err(StoreError::Panicked)));
        store.ping().await.unwrap();
        let n: i64 = store
            .call(|c| Ok(c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 0, "the panicking call's transaction was rolled back");
        store.close().await;
    }

    #[tokio::test]
    async fn a_leaked_raw_transaction_is_rolled_back() {
        let (_dir, store) = temp_store();
        let r: Result<()> = store
            .call(|c| {
                c.execute_batch("BEGIN; INSERT INTO meta (key, value) VALUES ('leak', 'x');")?;
                Err(StoreError::InvalidInput("bail out".into()))
            })
            .await;
        assert!(r.is_err());
        let (n, autocommit) = store
            .call(|c| {
                let n: i64 = c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?;
                Ok((n, c.is_autocommit()))
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert!(autocommit);
        store.close().await;
    }

    #[test]
    fn timestamps_sort_as_strings_and_clamp() {
        let a = ts(at("2026-01-02T03:04:05.678Z"));
        assert_eq!(a, "2026-01-02T03:04:05.678Z");
        assert_eq!(parse_ts(&a).unwrap(), at("2026-01-02T03:04:05.678Z"));
        let far = ts(DateTime::<Utc>::MAX_UTC);
        assert_eq!(far, "9999-12-31T23:59:59.999Z");
        assert!(far > a);
        let early = ts(DateTime::<Utc>::MIN_UTC);
        assert_eq!(early, "0000-01-01T00:00:00.000Z");
        assert!(early < a);
        // Same shape SQLite's strftime('%Y-%m-%dT%H:%M:%fZ') writes.
        let c = Connection::open_in_memory().unwrap();
        let sql: String = c
            .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(sql.len(), a.len());
        parse_ts(&sql).unwrap();
    }
}
