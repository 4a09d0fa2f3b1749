//! Identity data from sources: each source's last good snapshot (kept as
//! rows, updated by applying a sync's diff), its sync state and lease, and
//! the lookups the rest of accessd makes (manager, known email, accounts of
//! an app, offboarded people with active accounts).

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::alerts::{raise_tx, resolve_tx, NewAlert};
use super::{opt_ts_col, ts, write_tx, Result, Store};
use crate::domain::diff::{Change, Summary};
use crate::domain::snapshot::{Account, AccountStatus, Snapshot, SourceApp};

/// What `accessd sources list` shows for one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceState {
    pub id: String,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Consecutive failed (or held) syncs.
    pub failures: i64,
    pub accounts: i64,
    pub apps: i64,
    pub last_summary: Option<serde_json::Value>,
}

/// A good sync to record: the diff against the stored snapshot and the
/// alerts it raises or resolves, all in one transaction.
#[derive(Debug)]
pub struct SyncRecord {
    pub source_id: String,
    pub at: DateTime<Utc>,
    pub changes: Vec<Change>,
    /// The new snapshot's app list (replaces the stored one).
    pub apps: Vec<SourceApp>,
    pub accounts: usize,
    pub summary: Summary,
    pub raise: Vec<NewAlert>,
    /// Alert keys whose condition ended with this sync.
    pub resolve: Vec<String>,
}

/// A person suspended or deprovisioned in an authoritative source with an
/// account still active elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offboarded {
    pub email: String,
    pub authority: String,
    pub authority_status: AccountStatus,
    pub source_id: String,
    pub account: Account,
}

const ACCOUNT_COLUMNS: &str = "app, account_id, email, name, status, manager, entitlements, url";

fn account_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Account> {
    let status: String = r.get(at + 4)?;
    let entitlements: String = r.get(at + 6)?;
    Ok(Account {
        app: r.get(at)?,
        id: r.get(at + 1)?,
        email: r.get(at + 2)?,
        name: r.get(at + 3)?,
        status: AccountStatus::parse(&status).unwrap_or(AccountStatus::Active),
        manager: r.get(at + 5)?,
        entitlements: serde_json::from_str(&entitlements).unwrap_or_default(),
        url: r.get(at + 7)?,
    })
}

fn upsert_account(tx: &Transaction<'_>, source_id: &str, a: &Account) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO identity_accounts (source_id, app, account_id, email, name, status, manager, entitlements, url)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (source_id, app, account_id) DO UPDATE SET
           email = excluded.email, name = excluded.name, status = excluded.status,
           manager = excluded.manager, entitlements = excluded.entitlements, url = excluded.url",
    )?
    .execute(params![
        source_id,
        a.app,
        a.id,
        a.email,
        a.name,
        a.status.as_str(),
        a.manager,
        serde_json::to_string(&a.entitlements)?,
        a.url
    ])?;
    Ok(())
}

impl Store {
    /// The source's last good snapshot; `None` before its first good sync
    /// (the next one is then a silent baseline).
    pub async fn source_snapshot(&self, source_id: String) -> Result<Option<Snapshot>> {
        self.call(move |conn| {
            let synced: Option<Option<String>> = conn
                .query_row(
                    "SELECT last_success_at FROM source_state WHERE source_id = ?1",
                    [&source_id],
                    |r| r.get(0),
                )
                .optional()?;
            if synced.flatten().is_none() {
                return Ok(None);
            }
            let apps = conn
                .prepare_cached(
                    "SELECT app, name, url FROM identity_apps WHERE source_id = ?1 ORDER BY app",
                )?
                .query_map([&source_id], |r| {
                    Ok(SourceApp {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        url: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let sql =
                format!("SELECT {ACCOUNT_COLUMNS} FROM identity_accounts WHERE source_id = ?1");
            let accounts = conn
                .prepare_cached(&sql)?
                .query_map([&source_id], |r| account_row(r, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(Snapshot { apps, accounts }))
        })
        .await
    }

    /// Takes the source's sync lease until `until` unless another owner
    /// holds an unexpired one: one sync per source across the daemon and
    /// the CLI.
    pub async fn take_source_lease(
        &self,
        source_id: String,
        owner: String,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            tx.prepare_cached("INSERT OR IGNORE INTO source_state (source_id) VALUES (?1)")?
                .execute([&source_id])?;
            let taken = tx
                .prepare_cached(
                    "UPDATE source_state SET lease_owner = ?2, lease_until = ?3
                     WHERE source_id = ?1
                       AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until < ?4)",
                )?
                .execute(params![source_id, owner, ts(until), ts(Utc::now())])?;
            tx.commit()?;
            Ok(taken == 1)
        })
        .await
    }

    pub async fn release_source_lease(&self, source_id: String, owner: String) -> Result<()> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE source_state SET lease_owner = NULL, lease_until = NULL
                 WHERE source_id = ?1 AND lease_owner = ?2",
            )?
            .execute(params![source_id, owner])?;
            Ok(())
        })
        .await
    }

    /// A sync that produced no usable snapshot (failed, or held by the mass
    /// change guard): the stored snapshot stays; `alert` is raised (once
    /// while it stays open). Returns the consecutive failure count.
    pub async fn record_source_failure(
        &self,
        source_id: String,
        at: DateTime<Utc>,
        error: String,
        alert: Option<NewAlert>,
    ) -> Result<i64> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            tx.prepare_cached("INSERT OR IGNORE INTO source_state (source_id) VALUES (?1)")?
                .execute([&source_id])?;
            tx.prepare_cached(
                "UPDATE source_state SET last_attempt_at = ?2, last_error_at = ?2, last_error = ?3,
                   failures = failures + 1 WHERE source_id = ?1",
            )?
            .execute(params![source_id, ts(at), error])?;
            tx.prepare_cached(
                "INSERT INTO snapshots (source_id, taken_at, ok, error) VALUES (?1, ?2, 0, ?3)",
            )?
            .execute(params![source_id, ts(at), error])?;
            prune_history(&tx, &source_id)?;
            if let Some(alert) = &alert {
                raise_tx(&tx, alert)?;
            }
            let failures = tx.query_row(
                "SELECT failures FROM source_state WHERE source_id = ?1",
                [&source_id],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(failures)
        })
        .await
    }

    /// Applies a good sync: the diff to the stored snapshot, the app list,
    /// the state, the alerts; one transaction, so a crash leaves either the
    /// old snapshot with no alerts or the new one with all of them.
    /// Returns how many alerts were (re)raised and resolved.
    pub async fn record_source_sync(&self, record: SyncRecord) -> Result<(usize, usize)> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let id = record.source_id.as_str();
            for change in &record.changes {
                match change {
                    Change::AccountRemoved { account } => {
                        tx.prepare_cached(
                            "DELETE FROM identity_accounts WHERE source_id = ?1 AND app = ?2 AND account_id = ?3",
                        )?
                        .execute(params![id, account.app, account.id])?;
                    }
                    Change::AccountAdded { account }
                    | Change::StatusChanged { account, .. }
                    | Change::EntitlementAdded { account, .. }
                    | Change::EntitlementRemoved { account, .. }
                    | Change::AccountUpdated { account } => {
                        upsert_account(&tx, id, account)?
                    }
                    Change::AppDiscovered { .. } => {}
                }
            }
            tx.prepare_cached("DELETE FROM identity_apps WHERE source_id = ?1")?
                .execute([id])?;
            for app in &record.apps {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO identity_apps (source_id, app, name, url) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![id, app.id, app.name, app.url])?;
            }
            let summary = serde_json::to_string(&record.summary)?;
            tx.prepare_cached("INSERT OR IGNORE INTO source_state (source_id) VALUES (?1)")?
                .execute([id])?;
            tx.prepare_cached(
                "UPDATE source_state SET last_attempt_at = ?2, last_success_at = ?2, failures = 0,
                   accounts = ?3, apps = ?4, last_summary = ?5 WHERE source_id = ?1",
            )?
            .execute(params![
                id,
                ts(record.at),
                record.accounts as i64,
                record.apps.len() as i64,
                summary
            ])?;
            let counts = serde_json::json!({
                "accounts": record.accounts, "apps": record.apps.len(), "summary": record.summary,
            });
            tx.prepare_cached(
                "INSERT INTO snapshots (source_id, taken_at, ok, counts) VALUES (?1, ?2, 1, ?3)",
            )?
            .execute(params![id, ts(record.at), counts.to_string()])?;
            prune_history(&tx, id)?;
            let mut resolved = 0;
            for key in &record.resolve {
                resolved += usize::from(resolve_tx(&tx, key)?);
            }
            let mut raised = 0;
            for alert in &record.raise {
                raised += usize::from(raise_tx(&tx, alert)?);
            }
            tx.commit()?;
            Ok((raised, resolved))
        })
        .await
    }

    pub async fn source_states(&self) -> Result<Vec<SourceState>> {
        self.call(|conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT source_id, last_attempt_at, last_success_at, last_error_at, last_error,
                            failures, accounts, apps, last_summary
                     FROM source_state ORDER BY source_id",
                )?
                .query_map([], |r| {
                    let summary: Option<String> = r.get(8)?;
                    Ok(SourceState {
                        id: r.get(0)?,
                        last_attempt_at: opt_ts_col(r, 1)?,
                        last_success_at: opt_ts_col(r, 2)?,
                        last_error_at: opt_ts_col(r, 3)?,
                        last_error: r.get(4)?,
                        failures: r.get(5)?,
                        accounts: r.get(6)?,
                        apps: r.get(7)?,
                        last_summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// The person's manager as the sources give it; authoritative sources
    /// (listed first in `prefer`) win over others.
    pub async fn manager_of(&self, email: String, prefer: Vec<String>) -> Result<Option<String>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT source_id, manager FROM identity_accounts
                 WHERE email = ?1 AND manager IS NOT NULL AND manager <> ''
                 ORDER BY status = 'active' DESC, source_id",
            )?;
            let found: Vec<(String, String)> = stmt
                .query_map([email], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let preferred = found.iter().find(|(s, _)| prefer.contains(s));
            Ok(preferred.or(found.first()).map(|(_, m)| m.to_lowercase()))
        })
        .await
    }

    /// The person's manager as the `sources` given (the authoritative ones)
    /// say; `None` when none of them names one.
    pub async fn authoritative_manager(
        &self,
        email: String,
        sources: Vec<String>,
    ) -> Result<Option<String>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT source_id, manager FROM identity_accounts
                 WHERE email = ?1 AND manager IS NOT NULL AND manager <> ''
                 ORDER BY status = 'active' DESC, source_id",
            )?;
            let found: Vec<(String, String)> = stmt
                .query_map([email], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(found
                .into_iter()
                .find(|(s, _)| sources.contains(s))
                .map(|(_, m)| m.to_lowercase()))
        })
        .await
    }

    /// The first of `sources` (the authoritative ones) whose last good
    /// snapshot lists `email` as suspended or deprovisioned, with that status.
    pub async fn offboarded_in(
        &self,
        email: String,
        sources: Vec<String>,
    ) -> Result<Option<(String, String)>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT source_id, status FROM identity_accounts
                 WHERE email = ?1 AND status IN ('suspended', 'deprovisioned')
                 ORDER BY source_id",
            )?;
            let found: Vec<(String, String)> = stmt
                .query_map([email], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(found.into_iter().find(|(s, _)| sources.contains(s)))
        })
        .await
    }

    /// Whether any source's last good snapshot has an account with `email`.
    pub async fn email_known(&self, email: String) -> Result<bool> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM identity_accounts WHERE email = ?1 LIMIT 1")?
                .query_row([email], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    /// Every account in `app` across sources (for access reviews), by source.
    pub async fn accounts_of_app(&self, app: String) -> Result<Vec<(String, Account)>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT source_id, {ACCOUNT_COLUMNS} FROM identity_accounts WHERE app = ?1
                 ORDER BY email, account_id"
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map([app], |r| Ok((r.get(0)?, account_row(r, 1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Offboarded-but-active findings as they stand now: people whose account
    /// in an `authorities` source is suspended or deprovisioned (and who have
    /// no active account there) with an active account in another app.
    pub async fn offboarded_active(&self, authorities: Vec<String>) -> Result<Vec<Offboarded>> {
        if authorities.is_empty() {
            return Ok(Vec::new());
        }
        self.call(move |conn| {
            let marks = vec!["?"; authorities.len()].join(", ");
            let sql = format!(
                "WITH gone AS (
                   SELECT email, source_id AS authority, app AS auth_app, MIN(status) AS status
                   FROM identity_accounts
                   WHERE source_id IN ({marks}) AND email IS NOT NULL
                     AND status IN ('suspended', 'deprovisioned')
                     AND NOT EXISTS (SELECT 1 FROM identity_accounts k
                                     WHERE k.source_id = identity_accounts.source_id
                                       AND k.app = identity_accounts.app
                                       AND k.email = identity_accounts.email AND k.status = 'active')
                   GROUP BY email, source_id, app
                 )
                 SELECT g.email, g.authority, g.auth_app, g.status, a.source_id, {cols}
                 FROM gone g JOIN identity_accounts a
                   ON a.email = g.email AND a.status = 'active'
                  AND NOT (a.source_id = g.authority AND a.app = g.auth_app)
                 ORDER BY g.email, a.app, a.account_id",
                cols = ACCOUNT_COLUMNS
                    .split(", ")
                    .map(|c| format!("a.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(authorities.iter()), |r| {
                    let status: String = r.get(3)?;
                    Ok(Offboarded {
                        email: r.get(0)?,
                        authority: r.get(1)?,
                        authority_status: AccountStatus::parse(&status)
                            .unwrap_or(AccountStatus::Suspended),
                        source_id: r.get(4)?,
                        account: account_row(r, 5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

/// Keeps the sync history short: the last 50 attempts per source.
fn prune_history(tx: &Transaction<'_>, source_id: &str) -> Result<()> {
    tx.prepare_cached(
        "DELETE FROM snapshots WHERE source_id = ?1 AND id NOT IN
           (SELECT id FROM snapshots WHERE source_id = ?1 ORDER BY id DESC LIMIT 50)",
    )?
    .execute([source_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::diff::{apps_of, diff};
    use crate::store::test_support::temp_store;

    fn acc(app: &str, email: &str, status: AccountStatus) -> Account {
        Account {
            app: app.into(),
            id: email.split('@').next().unwrap_or_default().into(),
            email: Some(email.into()),
            name: None,
            status,
            manager: Some("boss@example.com".into()),
            entitlements: vec!["e1".into()],
            url: None,
        }
    }

    async fn record(store: &Store, source: &str, snapshot: Snapshot) {
        let old = store
            .source_snapshot(source.into())
            .await
            .unwrap()
            .unwrap_or_default();
        let changes = diff(&old, &snapshot);
        store
            .record_source_sync(SyncRecord {
                source_id: source.into(),
                at: Utc::now(),
                summary: Summary::of(&changes),
                changes,
                apps: apps_of(&snapshot),
                accounts: snapshot.accounts.len(),
                raise: vec![],
                resolve: vec![],
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_stored_snapshot_follows_each_diff_and_answers_lookups() {
        let (_dir, store) = temp_store();
        assert_eq!(store.source_snapshot("hr".into()).await.unwrap(), None);
        let first = Snapshot {
            apps: vec![],
            accounts: vec![
                acc("hr", "ann@example.com", AccountStatus::Active),
                acc("hr", "bob@example.com", AccountStatus::Active),
            ],
        };
        record(&store, "hr", first).await;
        let second = Snapshot {
            apps: vec![],
            accounts: vec![acc("hr", "ann@example.com", AccountStatus::Suspended)],
        };
        record(&store, "hr", second.clone()).await;
        let stored = store.source_snapshot("hr".into()).await.unwrap().unwrap();
        assert_eq!(stored.accounts, second.accounts);
        assert!(store.email_known("ANN@example.com".into()).await.unwrap());
        assert!(!store.email_known("bob@example.com".into()).await.unwrap());
        assert_eq!(
            store
                .manager_of("ann@example.com".into(), vec![])
                .await
                .unwrap()
                .as_deref(),
            Some("boss@example.com")
        );
    }

    #[tokio::test]
    async fn offboarding_compares_accounts_of_the_same_app_in_the_authority() {
        let (_dir, store) = temp_store();
        // HR suspends Ann in its own directory while it (like DESIGN §4's
        // file) still lists her Dropbox account as active; a second source
        // has her active in Notion. Both active accounts are findings.
        record(
            &store,
            "hr",
            Snapshot {
                apps: vec![],
                accounts: vec![
                    acc("hr", "ann@example.com", AccountStatus::Suspended),
                    acc("dropbox", "ann@example.com", AccountStatus::Active),
                    acc("hr", "bob@example.com", AccountStatus::Active),
                ],
            },
        )
        .await;
        record(
            &store,
            "saas",
            Snapshot {
                apps: vec![],
                accounts: vec![
                    acc("notion", "ann@example.com", AccountStatus::Active),
                    acc("notion", "bob@example.com", AccountStatus::Active),
                ],
            },
        )
        .await;
        let found = store.offboarded_active(vec!["hr".into()]).await.unwrap();
        let apps: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (f.email.as_str(), f.account.app.as_str()))
            .collect();
        assert_eq!(
            apps,
            [
                ("ann@example.com", "dropbox"),
                ("ann@example.com", "notion")
            ]
        );
        assert!(store.offboarded_active(vec![]).await.unwrap().is_empty());
        assert!(store
            .offboarded_active(vec!["saas".into()])
            .await
            .unwrap()
            .is_empty());
    }
}
