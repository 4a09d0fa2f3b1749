//! Process-wide metrics: the counters and the ack-latency histogram bumped at
//! the one place each thing happens (transport ack path, `SlackApi`, the
//! provisioner call), and their Prometheus text rendering together with the
//! gauges read from SQLite at scrape time.
//!
//! Atomics and a fixed-bucket histogram rather than a metrics crate: the set is
//! small and fixed, and the hot path (one ack per envelope) must stay a few
//! relaxed atomic adds. Label values come from fixed sets or config ids; the
//! only open-ended label, the Web API method, is a code constant, still
//! checked and capped so a bug cannot grow the registry without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Upper bounds (seconds) of the ack histogram; Slack's deadline is 3 s.
pub const ACK_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Socket Mode envelope types Slack sends; anything else counts as `other`.
const ENVELOPE_TYPES: [&str; 4] = ["events_api", "interactive", "slash_commands", "other"];

/// Provisioner outcomes by label (`provision::Outcome::label`); anything
/// else counts as `permanent`, the outcome that needs a person.
const OUTCOMES: [&str; 4] = ["applied", "already", "transient", "permanent"];

/// What a per-person limit held back; anything else counts as the last.
const LIMITED: [&str; 2] = ["request", "refused_click"];

/// More distinct Web API methods than the bot calls; beyond it, `other`.
const MAX_METHODS: usize = 64;

/// The registry; one per process (tests running several daemons in one
/// process share it, which is why they assert on increases).
pub struct Metrics {
    envelopes: [AtomicU64; ENVELOPE_TYPES.len()],
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf` only.
    ack_buckets: [AtomicU64; ACK_BUCKETS.len() + 1],
    ack_sum_micros: AtomicU64,
    ack_count: AtomicU64,
    api: Mutex<BTreeMap<String, ApiCounts>>,
    provisioning: [AtomicU64; OUTCOMES.len()],
    /// Config reloads: [applied, refused].
    reloads: [AtomicU64; 2],
    /// Actions dropped by a per-person limit, by [`LIMITED`].
    limited: [AtomicU64; LIMITED.len()],
}

#[derive(Default, Clone, Copy)]
struct ApiCounts {
    calls: u64,
    rate_limited: u64,
}

static METRICS: Metrics = Metrics::new();

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    const fn new() -> Self {
        Self {
            envelopes: [const { AtomicU64::new(0) }; ENVELOPE_TYPES.len()],
            ack_buckets: [const { AtomicU64::new(0) }; ACK_BUCKETS.len() + 1],
            ack_sum_micros: AtomicU64::new(0),
            ack_count: AtomicU64::new(0),
            api: Mutex::new(BTreeMap::new()),
            provisioning: [const { AtomicU64::new(0) }; OUTCOMES.len()],
            reloads: [const { AtomicU64::new(0) }; 2],
            limited: [const { AtomicU64::new(0) }; LIMITED.len()],
        }
    }

    /// One Socket Mode envelope received (`type` as Slack sent it).
    pub fn envelope(&self, kind: &str) {
        bump(&self.envelopes, &ENVELOPE_TYPES, kind);
    }

    /// An ack written to the socket `elapsed` after its envelope arrived.
    pub fn ack(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = ACK_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(ACK_BUCKETS.len());
        self.ack_buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.ack_sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.ack_count.fetch_add(1, Ordering::Relaxed);
    }

    /// One Web API call answered (or failed) for `method`; `rate_limited` on 429.
    pub fn api_call(&self, method: &str, rate_limited: bool) {
        let mut api = self.api.lock().unwrap_or_else(|p| p.into_inner());
        let known = api.contains_key(method);
        let key = if known || (api.len() < MAX_METHODS && plausible_method(method)) {
            method
        } else {
            "other"
        };
        // An allocation per call is noise next to the HTTP round trip it counts.
        let counts = api.entry(key.to_string()).or_default();
        counts.calls += 1;
        if rate_limited {
            counts.rate_limited += 1;
        }
    }

    /// One provisioner call (grant or revoke) and how it ended.
    pub fn provisioning(&self, outcome: &str) {
        bump(&self.provisioning, &OUTCOMES, outcome);
    }

    /// One action a per-person limit held back (`request`, `refused_click`).
    pub fn limited(&self, what: &str) {
        bump(&self.limited, &LIMITED, what);
    }

    /// One config reload (SIGHUP), applied or refused.
    pub fn config_reloaded(&self, applied: bool) {
        self.reloads[usize::from(!applied)].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition (format 0.0.4). `gauges` is `None` when the
    /// database did not answer; the process counters are still worth a scrape.
    pub fn render(
        &self,
        connections: usize,
        gauges: Option<&dyn Gauges>,
        now: DateTime<Utc>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "accessd_socket_connections",
            "gauge",
            "Socket Mode connections up.",
        );
        let _ = writeln!(out, "accessd_socket_connections {connections}");

        counters(
            &mut out,
            (
                "accessd_envelopes_total",
                "Socket Mode envelopes received, by type.",
            ),
            "type",
            &ENVELOPE_TYPES,
            &self.envelopes,
        );

        header(
            &mut out,
            "accessd_ack_seconds",
            "histogram",
            "Time from envelope receipt to its ack written to the socket.",
        );
        let mut cumulative = 0u64;
        for (i, n) in self.ack_buckets.iter().enumerate() {
            cumulative += load(n);
            let le = ACK_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            sample(
                &mut out,
                "accessd_ack_seconds_bucket",
                &[("le", &le)],
                cumulative,
            );
        }
        let sum = load(&self.ack_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "accessd_ack_seconds_sum {sum}");
        // The bucket total, not `ack_count`: a scrape racing an ack must still
        // see `_count` equal to the `+Inf` bucket.
        let _ = writeln!(out, "accessd_ack_seconds_count {cumulative}");

        let api = self
            .api
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(m, c)| (m.clone(), *c))
            .collect::<Vec<_>>();
        header(
            &mut out,
            "accessd_slack_api_calls_total",
            "counter",
            "Slack Web API calls, by method.",
        );
        for (method, counts) in &api {
            sample(
                &mut out,
                "accessd_slack_api_calls_total",
                &[("method", method)],
                counts.calls,
            );
        }
        header(
            &mut out,
            "accessd_slack_api_rate_limited_total",
            "counter",
            "Slack Web API calls answered with HTTP 429, by method.",
        );
        for (method, counts) in &api {
            sample(
                &mut out,
                "accessd_slack_api_rate_limited_total",
                &[("method", method)],
                counts.rate_limited,
            );
        }

        counters(
            &mut out,
            (
                "accessd_provisioning_total",
                "Provisioner calls (grants and revokes), by outcome.",
            ),
            "outcome",
            &OUTCOMES,
            &self.provisioning,
        );

        counters(
            &mut out,
            (
                "accessd_config_reloads_total",
                "Config reloads (SIGHUP), by result.",
            ),
            "result",
            &["applied", "refused"],
            &self.reloads,
        );

        counters(
            &mut out,
            (
                "accessd_limited_total",
                "Actions held back by a per-person limit, by kind.",
            ),
            "kind",
            &LIMITED,
            &self.limited,
        );

        if let Some(gauges) = gauges {
            gauges.render(&mut out, now);
        }
        out
    }
}

/// Scrape-time gauges owned elsewhere (the database's live in
/// `store::metrics`), appended after the counters in the same format.
pub trait Gauges {
    fn render(&self, out: &mut String, now: DateTime<Utc>);
}

fn load(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

/// Adds one to the counter of `value` in a family with fixed `values`; an
/// unknown value counts as the last (the catch-all).
fn bump(counts: &[AtomicU64], values: &[&str], value: &str) {
    let i = values
        .iter()
        .position(|v| *v == value)
        .unwrap_or(values.len().saturating_sub(1));
    if let Some(n) = counts.get(i) {
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// A counter family with one fixed label: its header, then a sample per value.
fn counters(
    out: &mut String,
    (name, help): (&str, &str),
    label: &str,
    values: &[&str],
    counts: &[AtomicU64],
) {
    header(out, name, "counter", help);
    for (value, n) in values.iter().zip(counts) {
        sample(out, name, &[(label, value)], load(n));
    }
}

/// The `# HELP` and `# TYPE` lines of one metric.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line, label values escaped.
pub fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label value escaping of the text format: backslash, double quote, newline.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Web API method names look like `chat.postMessage`.
fn plausible_method(method: &str) -> bool {
    !method.is_empty()
        && method.len() <= 64
        && method
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let m = Metrics::new();
        m.ack(Duration::from_micros(500));
        m.ack(Duration::from_millis(3));
        m.ack(Duration::from_secs(5));
        let text = m.render(2, None, Utc::now());
        assert!(
            text.contains("accessd_ack_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("accessd_ack_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("accessd_ack_seconds_bucket{le=\"2.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("accessd_ack_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("accessd_ack_seconds_count 3\n"), "{text}");
        assert!(text.contains("accessd_ack_seconds_sum 5.0035\n"), "{text}");
        assert!(text.contains("accessd_socket_connections 2\n"));
    }

    #[test]
    fn odd_methods_and_types_fold_into_other() {
        let m = Metrics::new();
        m.api_call("chat.postMessage", false);
        m.api_call("chat.postMessage", true);
        m.api_call("evil\"}\nmethod", false);
        m.envelope("surprise");
        let text = m.render(0, None, Utc::now());
        assert!(text.contains("accessd_slack_api_calls_total{method=\"chat.postMessage\"} 2\n"));
        assert!(
            text.contains("accessd_slack_api_rate_limited_total{method=\"chat.postMessage\"} 1\n")
        );
        assert!(text.contains("accessd_slack_api_calls_total{method=\"other\"} 1\n"));
        assert!(text.contains("accessd_envelopes_total{type=\"other\"} 1\n"));
        assert!(!text.contains("evil"));
    }
}
