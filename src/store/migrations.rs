//! Schema migrations: numbered SQL files embedded in the binary, applied in order inside one transaction, tracked with `PRAGMA user_version`.
//!
//! Add a migration by appending `NNNN_name.sql` to [`MIGRATIONS`]; never edit
//! one that has shipped. A database newer than the binary is refused rather
//! than half-understood. Note that `PRAGMA foreign_keys` cannot change inside
//! a transaction: a future migration that rebuilds a table must cope with
//! foreign keys being ON (or this runner must learn to switch them off first).

use rusqlite::Connection;
use serde::Serialize;

use super::{write_tx, Result, StoreError};

pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "0002_outbox_on_sent",
        sql: include_str!("migrations/0002_outbox_on_sent.sql"),
    },
    Migration {
        version: 3,
        name: "0003_grant_lifecycle",
        sql: include_str!("migrations/0003_grant_lifecycle.sql"),
    },
    Migration {
        version: 4,
        name: "0004_sources_alerts",
        sql: include_str!("migrations/0004_sources_alerts.sql"),
    },
    Migration {
        version: 5,
        name: "0005_reviews",
        sql: include_str!("migrations/0005_reviews.sql"),
    },
    Migration {
        version: 6,
        name: "0006_outbox_priority",
        sql: include_str!("migrations/0006_outbox_priority.sql"),
    },
    Migration {
        version: 7,
        name: "0007_grant_target",
        sql: include_str!("migrations/0007_grant_target.sql"),
    },
    Migration {
        version: 8,
        name: "0008_leases",
        sql: include_str!("migrations/0008_leases.sql"),
    },
    Migration {
        version: 9,
        name: "0009_campaign_notifications",
        sql: include_str!("migrations/0009_campaign_notifications.sql"),
    },
    Migration {
        version: 10,
        name: "0010_ticket_reference",
        sql: include_str!("migrations/0010_ticket_reference.sql"),
    },
];

/// Schema version this binary writes and understands.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// What `accessd db migrate` did: `from == to` means nothing was pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    pub from: i64,
    pub to: i64,
}

pub(crate) fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn check_supported(version: i64) -> Result<()> {
    if version > LATEST {
        return Err(StoreError::TooNew {
            db: version,
            supported: LATEST,
        });
    }
    if version < 0 {
        return Err(StoreError::Corrupt(format!(
            "negative schema version {version}"
        )));
    }
    Ok(())
}

/// Applies every pending migration. All pending ones run in a single
/// transaction: the database is either at the old version or the latest,
/// never in between, and a failure names the migration that broke.
pub(crate) fn apply(conn: &mut Connection) -> Result<MigrationReport> {
    let seen = user_version(conn)?;
    check_supported(seen)?;
    if seen == LATEST {
        return Ok(MigrationReport {
            from: seen,
            to: seen,
        });
    }
    let tx = write_tx(conn)?;
    // Re-read under the write lock: another process (daemon vs. CLI) may have
    // migrated between our first look and taking the lock.
    let from = user_version(&tx)?;
    check_supported(from)?;
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        tx.execute_batch(m.sql)
            .map_err(|source| StoreError::Migration {
                version: m.version,
                name: m.name,
                source,
            })?;
        // user_version lives in the database header and is transactional.
        tx.pragma_update(None, "user_version", m.version)?;
    }
    tx.commit()?;
    Ok(MigrationReport { from, to: LATEST })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use crate::store::Store;

    #[test]
    fn migrations_are_numbered_one_to_n() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{} out of order", m.name);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{} does not match its version",
                m.name
            );
        }
        assert_eq!(LATEST, MIGRATIONS.len() as i64);
    }

    #[test]
    fn migrate_reports_from_and_to_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let first = Store::migrate(&path).unwrap();
        assert_eq!(
            first,
            MigrationReport {
                from: 0,
                to: LATEST
            }
        );
        let again = Store::migrate(&path).unwrap();
        assert_eq!(
            again,
            MigrationReport {
                from: LATEST,
                to: LATEST
            }
        );
    }

    #[tokio::test]
    async fn reopen_keeps_schema_and_data() {
        let (dir, store) = temp_store();
        assert_eq!(store.schema_version().await.unwrap(), LATEST);
        store
            .call(|c| {
                c.execute("INSERT INTO meta (key, value) VALUES ('a', 'b')", [])?;
                Ok(())
            })
            .await
            .unwrap();
        store.close().await;

        let store = Store::open(&dir.path().join("accessd.db")).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), LATEST);
        let v: String = store
            .call(|c| Ok(c.query_row("SELECT value FROM meta WHERE key = 'a'", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(v, "b");
        store.close().await;
    }

    #[tokio::test]
    async fn schema_has_every_table_and_the_audit_triggers() {
        let (_dir, store) = temp_store();
        let names: Vec<String> = store
            .call(|c| {
                let mut st = c.prepare(
                    "SELECT name FROM sqlite_schema WHERE type IN ('table', 'trigger') ORDER BY name",
                )?;
                let rows = st.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
            .unwrap();
        for want in [
            "alerts",
            "approvals",
            "approver_messages",
            "audit_log",
            "audit_log_no_delete",
            "audit_log_no_update",
            "findings",
            "grants",
            "jobs",
            "meta",
            "outbox",
            "request_drafts",
            "review_campaigns",
            "review_items",
            "seen_envelopes",
            "seen_events",
            "snapshots",
            "tickets",
            "user_links",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "missing {want} in {names:?}"
            );
        }
        store.close().await;
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        Store::migrate(&path).unwrap();
        {
            let raw = Connection::open(&path).unwrap();
            raw.pragma_update(None, "user_version", LATEST + 1).unwrap();
        }
        match Store::open(&path) {
            Err(StoreError::TooNew { db, supported }) => {
                assert_eq!((db, supported), (LATEST + 1, LATEST));
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        let err = Store::migrate(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }));
        assert!(err.to_string().contains("newer than this accessd supports"));
        // And nothing was changed by the refusal.
        let raw = Connection::open(&path).unwrap();
        assert_eq!(user_version(&raw).unwrap(), LATEST + 1);
    }

    #[test]
    fn a_failing_migration_leaves_the_version_alone() {
        // Simulate a half-broken state: a table 0001 wants to create exists
        // already, so 0001 fails and must roll back completely.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.db");
        {
            let raw = Connection::open(&path).unwrap();
            raw.execute_batch("CREATE TABLE jobs (x INTEGER);").unwrap();
        }
        let err = Store::migrate(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 1, .. }),
            "{err:?}"
        );
        let raw = Connection::open(&path).unwrap();
        assert_eq!(user_version(&raw).unwrap(), 0);
        let tickets: i64 = raw
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'tickets'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tickets, 0, "partial migration was not rolled back");
    }
}
