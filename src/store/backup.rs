//! Online backup (`accessd db backup PATH`) with SQLite's backup API, from a separate read connection so the store keeps serving while it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{create_private_file, Result, Store, StoreError, BUSY_TIMEOUT};

/// How long a backup waits out locks held by writers before giving up.
const MAX_BUSY_RETRIES: u32 = 200;
const BUSY_PAUSE: Duration = Duration::from_millis(50);

impl Store {
    /// Writes a consistent copy of the database to `dest`, a new 0600 file
    /// (an existing file is never overwritten). The copy is a self-contained
    /// rollback-journal database: the one file is the whole backup.
    pub async fn backup_to(&self, dest: PathBuf) -> Result<()> {
        if self.shared.tx.is_closed() {
            return Err(StoreError::Closed);
        }
        let src = self.shared.path.clone();
        // Its own connection on a blocking thread: the worker keeps serving,
        // and WAL lets writers go on while the backup reads a snapshot.
        tokio::task::spawn_blocking(move || backup_file(&src, &dest))
            .await
            .map_err(|_| StoreError::Panicked)?
    }
}

pub(crate) fn backup_file(src: &Path, dest: &Path) -> Result<()> {
    // A stale -journal/-wal next to the destination would be "recovered" into
    // the fresh copy by SQLite; refuse instead of guessing.
    for suffix in ["", "-journal", "-wal"] {
        let p = with_suffix(dest, suffix);
        if p.symlink_metadata().is_ok() {
            return Err(StoreError::DestinationExists(p));
        }
    }
    // create_new: atomic refusal to overwrite, and 0600 from the first byte.
    match create_private_file(dest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StoreError::DestinationExists(dest.to_owned()))
        }
        Err(e) => return Err(StoreError::io(format!("creating {}", dest.display()), e)),
    }
    let result = copy_into(src, dest);
    if result.is_err() {
        // Leave no half-written file that looks like a backup.
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(dest, suffix));
        }
    }
    result
}

fn copy_into(src: &Path, dest: &Path) -> Result<()> {
    // Read-write flags without CREATE: a read-only connection may be unable to
    // open a WAL database whose -shm does not exist yet. query_only makes sure
    // this connection never writes.
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(BUSY_TIMEOUT)?;
    source.execute_batch("PRAGMA query_only = ON;")?;

    let mut target = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    {
        let backup = Backup::new(&source, &mut target)?;
        let mut busy = 0;
        loop {
            // -1: all pages in one step, i.e. one read snapshot of the source.
            // Copying in slices would restart whenever another connection writes.
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                _ => {
                    // Busy / Locked (and anything newer): wait for the lock holder.
                    busy += 1;
                    if busy > MAX_BUSY_RETRIES {
                        return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("backup: source database stayed locked".into()),
                        )));
                    }
                    std::thread::sleep(BUSY_PAUSE);
                }
            }
        }
    }
    // The copied header says WAL; a backup is easier to handle as one file.
    let mode: String = target.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        tracing::warn!(mode, "backup kept journal mode");
    }
    let check: String = target.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!(
            "backup failed quick_check: {check}"
        )));
    }
    target.close().map_err(|(_, e)| StoreError::Sqlite(e))?;
    drop(source);
    // The directory entry of the new file must survive a crash too.
    #[cfg(unix)]
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use crate::store::{migrations, AuditEvent, NewMessage};
    use serde_json::json;

    async fn fill(store: &Store, n: usize) {
        for i in 0..n {
            store
                .enqueue(NewMessage {
                    method: "chat.postMessage".into(),
                    channel: "C".into(),
                    payload: json!({ "i": i, "pad": "x".repeat(2000) }),
                    dedupe_key: None,
                    on_sent: None,
                    priority: 0,
                })
                .await
                .unwrap();
            store
                .append_audit(AuditEvent::new("U", "a", format!("T-{i}"), json!({})))
                .await
                .unwrap();
        }
    }

    fn count(path: &Path, table: &str) -> i64 {
        let c = Connection::open(path).unwrap();
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn backup_holds_the_same_rows_and_the_source_stays_writable() {
        let (dir, store) = temp_store();
        fill(&store, 300).await; // ~600 KB: several pages, still in the WAL
        let dest = dir.path().join("backup.db");
        store.backup_to(dest.clone()).await.unwrap();

        // The source keeps working after (and was not closed by) the backup.
        fill(&store, 5).await;
        assert_eq!(store.outbox_stats().await.unwrap().pending, 305);

        assert_eq!(count(&dest, "outbox"), 300);
        assert_eq!(count(&dest, "audit_log"), 300);
        // The copy is a complete, migrated store with an intact chain.
        let copy = Store::open(&dest).unwrap();
        assert_eq!(copy.schema_version().await.unwrap(), migrations::LATEST);
        let v = copy.verify_audit().await.unwrap();
        assert!(v.is_intact());
        assert_eq!(v.rows, 300);
        copy.close().await;
        store.close().await;
    }

    #[tokio::test]
    async fn backup_while_writes_go_on_is_consistent() {
        let (dir, store) = temp_store();
        fill(&store, 50).await;
        let writer = {
            let store = store.clone();
            tokio::spawn(async move { fill(&store, 100).await })
        };
        let dest = dir.path().join("during.db");
        store.backup_to(dest.clone()).await.unwrap();
        writer.await.unwrap();
        // Whatever instant the snapshot caught, outbox and audit rows were
        // written in lockstep and the chain must verify.
        let copy = Store::open(&dest).unwrap();
        let v = copy.verify_audit().await.unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert!(v.rows >= 50);
        let pending = copy.outbox_stats().await.unwrap().pending;
        assert!(
            pending == v.rows || pending == v.rows + 1,
            "{pending} vs {}",
            v.rows
        );
        copy.close().await;
        store.close().await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn backup_is_private_single_file_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, store) = temp_store();
        fill(&store, 3).await;
        let dest = dir.path().join("b.db");
        store.backup_to(dest.clone()).await.unwrap();
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(!with_suffix(&dest, "-wal").exists());
        let mode: String = Connection::open(&dest)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");

        // A second backup to the same path is refused and leaves the file alone.
        let before = std::fs::read(&dest).unwrap();
        fill(&store, 3).await;
        let err = store.backup_to(dest.clone()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::DestinationExists(ref p) if *p == dest),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), before);

        // So is an unrelated existing file.
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, "keep me").unwrap();
        assert!(store.backup_to(other.clone()).await.is_err());
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me");
        store.close().await;
    }

    #[tokio::test]
    async fn a_failed_backup_leaves_nothing_behind() {
        let (dir, store) = temp_store();
        let dest = dir.path().join("missing-dir/b.db");
        assert!(store.backup_to(dest.clone()).await.is_err());
        assert!(!dest.exists());
        store.close().await;
        assert!(matches!(
            store.backup_to(dir.path().join("late.db")).await,
            Err(StoreError::Closed)
        ));
    }
}
