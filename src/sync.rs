//! One sync of one source, the same for the daemon's timer and `accessd
//! sources sync`: take the source's lease, fetch, diff against the last good
//! snapshot, hold suspicious shrinkage, then record the diff and its alerts
//! in one transaction and re-evaluate offboarding findings.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use crate::alerts;
use crate::config::{Config, SourceConfig};
use crate::domain::diff::{self, MassRemoval, Summary};
use crate::domain::snapshot::Snapshot;
use crate::sources::{AnySource, SourceError};
use crate::store::{Store, StoreError, SyncRecord};

/// A sync longer than this is treated as hung: its lease lapses.
pub const LEASE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SyncOutcome {
    /// First good sync: recorded silently.
    Baseline { accounts: usize, apps: usize },
    Applied {
        summary: Summary,
        accounts: usize,
        alerts_raised: usize,
        alerts_resolved: usize,
    },
    /// Too many accounts gone at once; nothing applied.
    Held { removed: usize, before: usize },
    Failed {
        error: String,
        #[serde(skip)]
        retry_after: Option<Duration>,
    },
    /// Another process is syncing this source now.
    Busy,
}

impl std::fmt::Display for SyncOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncOutcome::Baseline { accounts, apps } => {
                write!(f, "baseline recorded: {accounts} accounts, {apps} apps (no alerts on a first sync)")
            }
            SyncOutcome::Applied { summary, accounts, alerts_raised, alerts_resolved } => write!(
                f,
                "{summary}; {accounts} accounts now; {alerts_raised} alerts raised, {alerts_resolved} resolved"
            ),
            SyncOutcome::Held { removed, before } => write!(
                f,
                "held: {} — nothing applied; the last good snapshot stays (accept with --accept-mass-change)",
                MassRemoval { removed: *removed, before: *before }
            ),
            SyncOutcome::Failed { error, .. } => write!(f, "failed: {error} (the last good snapshot stays)"),
            SyncOutcome::Busy => write!(f, "skipped: another sync of this source is running"),
        }
    }
}

/// Who runs the sync, for the lease: `daemon` (one per database, so a
/// daemon restarted after a crash takes its own stale lease back at once)
/// or `cli:<pid>`.
pub fn lease_owner(who: &str) -> String {
    if who == "daemon" {
        who.to_string()
    } else {
        format!("{who}:{}", std::process::id())
    }
}

/// Syncs `source` once. Store errors are returned; everything about the
/// source itself is an outcome.
pub async fn sync_source(
    store: &Store,
    config: &Config,
    source: &SourceConfig,
    reader: &AnySource,
    owner: &str,
    accept_mass_change: bool,
) -> Result<SyncOutcome, StoreError> {
    let until = Utc::now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
    if !store
        .take_source_lease(source.id.clone(), owner.to_string(), until)
        .await?
    {
        return Ok(SyncOutcome::Busy);
    }
    let result = sync_leased(store, config, source, reader, accept_mass_change).await;
    if let Err(err) = store
        .release_source_lease(source.id.clone(), owner.to_string())
        .await
    {
        tracing::warn!(source = source.id, error = %err, "could not release the source lease; it lapses by itself");
    }
    result
}

async fn sync_leased(
    store: &Store,
    config: &Config,
    source: &SourceConfig,
    reader: &AnySource,
    accept_mass_change: bool,
) -> Result<SyncOutcome, StoreError> {
    let started = Utc::now();
    let fetched = match tokio::time::timeout(LEASE, reader.fetch()).await {
        Ok(r) => r,
        Err(_) => Err(SourceError::Unavailable(format!(
            "no complete answer within {}s",
            LEASE.as_secs()
        ))),
    };
    let snapshot = match fetched {
        Ok(s) => s,
        Err(err) => {
            let error = err.to_string();
            tracing::warn!(
                source = source.id,
                error,
                "source sync failed; keeping the last good snapshot"
            );
            let alert = alerts::source_failed(config, source, &error);
            store
                .record_source_failure(source.id.clone(), started, error.clone(), Some(alert))
                .await?;
            return Ok(SyncOutcome::Failed {
                error,
                retry_after: err.retry_after(),
            });
        }
    };
    let previous = store.source_snapshot(source.id.clone()).await?;
    let baseline = previous.is_none();
    let previous = previous.unwrap_or_default();
    // The diff is CPU work on up to 100k accounts: off the async threads.
    let (changes, snapshot) = tokio::task::spawn_blocking(move || {
        let changes = diff::diff(&previous, &snapshot);
        (changes, (snapshot, previous.accounts.len()))
    })
    .await
    .map_err(|e| StoreError::InvalidInput(format!("diff task failed: {e}")))?;
    let (snapshot, before): (Snapshot, usize) = snapshot;
    if !baseline && !accept_mass_change {
        if let Some(held) = MassRemoval::check(before, &changes, config.alerts.mass_change_guard) {
            tracing::warn!(source = source.id, %held, "mass change held; nothing applied");
            let alert = alerts::mass_change(config, source, &held);
            store
                .record_source_failure(
                    source.id.clone(),
                    started,
                    format!("held: {held}"),
                    Some(alert),
                )
                .await?;
            return Ok(SyncOutcome::Held {
                removed: held.removed,
                before: held.before,
            });
        }
    }
    let summary = Summary::of(&changes);
    let (raise, resolve) = if baseline {
        (Vec::new(), Vec::new())
    } else {
        let marks = alerts::Marks::new(config, &store.app_marks().await?);
        alerts::from_changes(config, source, &marks, &changes, &snapshot)
    };
    let accounts = snapshot.accounts.len();
    // Apps listed by the source and apps only seen on accounts alike.
    let all_apps = diff::apps_of(&snapshot);
    let apps = all_apps.len();
    let (raised, resolved) = store
        .record_source_sync(SyncRecord {
            source_id: source.id.clone(),
            at: started,
            changes,
            apps: all_apps,
            accounts,
            summary,
            raise,
            resolve,
        })
        .await?;
    // Offboarding depends only on who exists and their status: a sync that
    // changed neither (the usual case) cannot change the findings.
    let people_changed =
        summary.accounts_added + summary.accounts_removed + summary.status_changed > 0;
    let (off_raised, off_resolved) = if baseline || people_changed {
        alerts::evaluate_offboarding(store, config, baseline).await?
    } else {
        (0, 0)
    };
    tracing::info!(source = source.id, baseline, %summary, "source synced");
    Ok(if baseline {
        SyncOutcome::Baseline { accounts, apps }
    } else {
        SyncOutcome::Applied {
            summary,
            accounts,
            alerts_raised: raised + off_raised,
            alerts_resolved: resolved + off_resolved,
        }
    })
}
