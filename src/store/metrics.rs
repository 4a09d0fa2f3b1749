//! The scrape-time gauges of `/metrics`: one store call, one cheap indexed
//! query per gauge, so a scrape every few seconds costs the writer thread
//! next to nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::outbox::outbox_stats_on;
use super::{opt_ts_col, OutboxStats, Result, Store};

/// What `/metrics` reads from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsGauges {
    /// (status, count) for statuses that have tickets.
    pub tickets: Vec<(String, i64)>,
    pub outbox: OutboxStats,
    pub jobs_pending: i64,
    /// One entry per configured source, in config order.
    pub sources: Vec<MetricsSource>,
    /// (kind, count) of alerts in status `open`.
    pub alerts_open: Vec<(String, i64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSource {
    pub id: String,
    pub last_success_at: Option<DateTime<Utc>>,
    pub failures: i64,
}

impl Store {
    /// The gauges for `/metrics`; `sources` are the configured source ids
    /// (state rows of sources since removed from the config are not shown).
    pub async fn metrics_gauges(&self, sources: Vec<String>) -> Result<MetricsGauges> {
        self.call(move |conn| {
            Ok(MetricsGauges {
                tickets: counts(conn, "SELECT status, count(*) FROM tickets GROUP BY status")?,
                outbox: outbox_stats_on(conn)?,
                jobs_pending: conn.query_row(
                    "SELECT count(*) FROM jobs WHERE status = 'pending'",
                    [],
                    |r| r.get(0),
                )?,
                sources: source_gauges(conn, sources)?,
                alerts_open: counts(
                    conn,
                    "SELECT kind, count(*) FROM alerts WHERE status = 'open' GROUP BY kind",
                )?,
            })
        })
        .await
    }
}

fn counts(conn: &Connection, sql: &str) -> Result<Vec<(String, i64)>> {
    let rows = conn
        .prepare_cached(sql)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn source_gauges(conn: &Connection, ids: Vec<String>) -> Result<Vec<MetricsSource>> {
    let mut known: HashMap<String, (Option<DateTime<Utc>>, i64)> = conn
        .prepare_cached("SELECT source_id, last_success_at, failures FROM source_state")?
        .query_map([], |r| Ok((r.get(0)?, (opt_ts_col(r, 1)?, r.get(2)?))))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let (last_success_at, failures) = known.remove(&id).unwrap_or((None, 0));
            MetricsSource {
                id,
                last_success_at,
                failures,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::*;

    #[tokio::test]
    async fn an_empty_database_has_zero_gauges_and_every_configured_source() {
        let (_dir, store) = temp_store();
        let g = store
            .metrics_gauges(vec!["okta".into(), "github".into()])
            .await
            .unwrap();
        assert!(g.tickets.is_empty());
        assert_eq!(g.outbox.pending, 0);
        assert_eq!(g.outbox.oldest_pending, None);
        assert_eq!(g.jobs_pending, 0);
        assert!(g.alerts_open.is_empty());
        let ids: Vec<_> = g.sources.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["okta", "github"]);
        assert!(g
            .sources
            .iter()
            .all(|s| s.failures == 0 && s.last_success_at.is_none()));
    }
}
