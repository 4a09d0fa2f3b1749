//! The scrape-time gauges of `/metrics`: one store call, one cheap indexed
//! query per gauge, so a scrape every few seconds costs the writer thread
//! next to nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use std::fmt::Write as _;

use super::outbox::outbox_stats_on;
use super::{opt_ts_col, OutboxStats, Result, Store};
use crate::domain::alert::kind;
use crate::domain::ticket::Status;
use crate::metrics::{escape, header, sample, Gauges};

/// Alert kinds the daemon raises; a kind outside it (an older or newer
/// release's row) is shown as `other`.
const ALERT_KINDS: [&str; kind::FINDINGS.len()] = kind::FINDINGS;

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

impl Gauges for MetricsGauges {
    fn render(&self, out: &mut String, now: DateTime<Utc>) {
        let g = self;
        header(out, "accessd_tickets", "gauge", "Tickets, by status.");
        // Every status, zeros included, so a query over one never sees a gap.
        for status in Status::ALL.map(Status::as_str) {
            sample(
                out,
                "accessd_tickets",
                &[("status", status)],
                count_of(&g.tickets, status),
            );
        }
        header(
            out,
            "accessd_outbox_pending",
            "gauge",
            "Outgoing Slack messages not yet delivered.",
        );
        let _ = writeln!(out, "accessd_outbox_pending {}", g.outbox.pending);
        header(
            out,
            "accessd_outbox_dead",
            "gauge",
            "Outgoing Slack messages given up on.",
        );
        let _ = writeln!(out, "accessd_outbox_dead {}", g.outbox.dead);
        header(
            out,
            "accessd_outbox_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest undelivered message (0 when none).",
        );
        let oldest = g.outbox.oldest_pending.map_or(0.0, |t| age(now, t));
        let _ = writeln!(out, "accessd_outbox_oldest_pending_age_seconds {oldest}");
        header(
            out,
            "accessd_jobs_pending",
            "gauge",
            "Scheduled jobs not yet done.",
        );
        let _ = writeln!(out, "accessd_jobs_pending {}", g.jobs_pending);
        header(
            out,
            "accessd_source_last_success_age_seconds",
            "gauge",
            "Time since the identity source last synced successfully (absent if never).",
        );
        for s in &g.sources {
            if let Some(at) = s.last_success_at {
                let _ = writeln!(
                    out,
                    "accessd_source_last_success_age_seconds{{source=\"{}\"}} {}",
                    escape(&s.id),
                    age(now, at)
                );
            }
        }
        header(
            out,
            "accessd_source_consecutive_failures",
            "gauge",
            "Failed (or held) syncs of the identity source since its last success.",
        );
        for s in &g.sources {
            sample(
                out,
                "accessd_source_consecutive_failures",
                &[("source", &s.id)],
                s.failures,
            );
        }
        header(out, "accessd_alerts_open", "gauge", "Open alerts, by kind.");
        for alert_kind in ALERT_KINDS {
            let n = count_of(&g.alerts_open, alert_kind);
            sample(out, "accessd_alerts_open", &[("kind", alert_kind)], n);
        }
        let other: i64 = g
            .alerts_open
            .iter()
            .filter(|(k, _)| !ALERT_KINDS.contains(&k.as_str()))
            .map(|(_, n)| n)
            .sum();
        if other > 0 {
            sample(out, "accessd_alerts_open", &[("kind", "other")], other);
        }
    }
}

fn count_of(counts: &[(String, i64)], label: &str) -> i64 {
    counts
        .iter()
        .filter(|(l, _)| l == label)
        .map(|(_, n)| n)
        .sum()
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> f64 {
    // A clock step backwards must not produce a negative age.
    ((now - then).num_milliseconds().max(0) as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn renders_database_gauges() {
        let now = Utc::now();
        let gauges = MetricsGauges {
            tickets: vec![("pending".into(), 3)],
            outbox: OutboxStats {
                pending: 2,
                dead: 1,
                oldest_pending: Some(now - chrono::Duration::seconds(90)),
            },
            jobs_pending: 4,
            sources: vec![
                MetricsSource {
                    id: "okta".into(),
                    last_success_at: Some(now - chrono::Duration::seconds(60)),
                    failures: 0,
                },
                MetricsSource {
                    id: "never".into(),
                    last_success_at: None,
                    failures: 5,
                },
            ],
            alerts_open: vec![("new_app".into(), 1), ("retired_kind".into(), 2)],
        };
        let mut text = String::new();
        gauges.render(&mut text, now);
        for line in [
            "accessd_tickets{status=\"pending\"} 3",
            "accessd_outbox_pending 2",
            "accessd_outbox_dead 1",
            "accessd_outbox_oldest_pending_age_seconds 90",
            "accessd_jobs_pending 4",
            "accessd_source_last_success_age_seconds{source=\"okta\"} 60",
            "accessd_source_consecutive_failures{source=\"never\"} 5",
            "accessd_alerts_open{kind=\"new_app\"} 1",
            "accessd_alerts_open{kind=\"source_failed\"} 0",
            "accessd_alerts_open{kind=\"other\"} 2",
            "accessd_tickets{status=\"active\"} 0",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}\n{text}");
        }
        assert!(!text.contains("accessd_source_last_success_age_seconds{source=\"never\"}"));
    }
}
