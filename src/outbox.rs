//! Durable outgoing Slack messages: queued in SQLite (often in the same
//! transaction as the state change they announce), delivered by one worker that
//! keeps each channel's order, paces each channel to Slack's ~1 message/s,
//! honours `Retry-After`, and never drops a message on 429 or 5xx.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::slack_api::{ApiError, SlackApi};
use crate::store::{NewMessage, OutboxItem, Store, StoreError, RESPOND};

/// Enqueues messages and wakes the worker. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues one message; `None` when its `dedupe_key` was queued before.
    pub async fn send(&self, message: NewMessage) -> Result<Option<i64>, StoreError> {
        let id = self.store.enqueue(message).await?;
        self.wake();
        Ok(id)
    }

    /// Tells the worker that rows were queued (e.g. inside another transaction).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

#[derive(Debug, Clone)]
pub struct OutboxOptions {
    /// Minimum spacing of two messages to one channel (Slack: ~1 msg/s).
    pub per_channel_interval: Duration,
    /// Sends in flight at once, across channels.
    pub concurrency: usize,
    /// How often to look for rows queued by another process (the CLI).
    pub poll_interval: Duration,
    pub max_backoff: Duration,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            per_channel_interval: Duration::from_secs(1),
            concurrency: 8,
            poll_interval: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// How many pending rows one pass looks at. Head-of-line order is kept within
/// this window; a longer backlog is reached as the head drains.
const SCAN: usize = 500;

/// Least time between two scans: a burst of wake-ups (one per queued message)
/// costs one scan, not one each.
const MIN_SCAN_GAP: Duration = Duration::from_millis(25);

pub struct OutboxWorker {
    store: Store,
    api: SlackApi,
    wake: Arc<Notify>,
    options: OutboxOptions,
    /// Earliest next send per channel (pacing and per-channel Retry-After).
    next_allowed: HashMap<String, DateTime<Utc>>,
    /// A 429 on a tiered method pauses that method everywhere until
    /// Retry-After passes.
    method_paused_until: HashMap<String, DateTime<Utc>>,
    /// A 429 on a chat.* method pauses that channel until Retry-After passes.
    channel_paused_until: HashMap<String, DateTime<Utc>>,
}

/// One send that ended, with when it started (pacing counts from there).
struct Sent {
    item: OutboxItem,
    started: DateTime<Utc>,
    result: Result<serde_json::Value, ApiError>,
}

enum Outcome {
    Sent(serde_json::Value),
    Retry { at: DateTime<Utc>, error: String },
    Dead(String),
}

impl OutboxWorker {
    pub fn new(outbox: &Outbox, api: SlackApi, options: OutboxOptions) -> Self {
        Self {
            store: outbox.store.clone(),
            api,
            wake: outbox.wake.clone(),
            options,
            next_allowed: HashMap::new(),
            method_paused_until: HashMap::new(),
            channel_paused_until: HashMap::new(),
        }
    }

    /// Delivers until `shutdown`; then waits (bounded by the caller) for sends in flight.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut in_flight: JoinSet<Sent> = JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let scanned_at = tokio::time::Instant::now();
            let wait = match self.start_due(&mut in_flight, &mut busy).await {
                Ok(wait) => wait,
                Err(err) => {
                    tracing::error!(error = %err, "outbox: store error; retrying");
                    self.options.poll_interval
                }
            };
            let woken = tokio::select! {
                Some(joined) = in_flight.join_next() => {
                    self.settle(joined, &mut busy).await;
                    false
                }
                _ = self.wake.notified() => true,
                _ = tokio::time::sleep(wait) => false,
                _ = shutdown.changed() => false,
            };
            // Every other send that ended meanwhile: one pass settles them all,
            // so throughput is not one send per pass.
            while let Some(joined) = in_flight.try_join_next() {
                self.settle(joined, &mut busy).await;
            }
            if woken {
                tokio::time::sleep_until(scanned_at + MIN_SCAN_GAP).await;
            }
        }
        while let Some(joined) = in_flight.join_next().await {
            self.settle(joined, &mut busy).await;
        }
    }

    async fn settle(
        &mut self,
        joined: Result<Sent, tokio::task::JoinError>,
        busy: &mut HashSet<String>,
    ) {
        if let Ok(sent) = joined {
            busy.remove(&sent.item.channel);
            self.finish(sent).await;
        }
    }

    /// Starts every send that may go now; returns how long to sleep at most.
    async fn start_due(
        &mut self,
        in_flight: &mut JoinSet<Sent>,
        busy: &mut HashSet<String>,
    ) -> Result<Duration, StoreError> {
        let now = Utc::now();
        let mut soonest =
            now + chrono::Duration::from_std(self.options.poll_interval).unwrap_or_default();
        // Channels whose oldest pending row was seen: later rows of the same
        // channel wait behind it, so a retried message is never overtaken.
        let mut blocked: HashSet<String> = HashSet::new();
        for item in self.store.outbox_pending(SCAN).await? {
            if blocked.contains(&item.channel) || busy.contains(&item.channel) {
                blocked.insert(item.channel.clone());
                continue;
            }
            blocked.insert(item.channel.clone());
            let mut ready_at = item.next_attempt_at;
            if let Some(at) = self.next_allowed.get(&item.channel) {
                ready_at = ready_at.max(*at);
            }
            if let Some(at) = self.method_paused_until.get(&item.method) {
                ready_at = ready_at.max(*at);
            }
            if let Some(at) = self.channel_paused_until.get(&item.channel) {
                ready_at = ready_at.max(*at);
            }
            if ready_at > now {
                soonest = soonest.min(ready_at);
                continue;
            }
            if in_flight.len() >= self.options.concurrency {
                // A send ending frees a slot and wakes the worker for the rest.
                break;
            }
            busy.insert(item.channel.clone());
            let api = self.api.clone();
            in_flight.spawn(async move {
                let started = Utc::now();
                let result = if item.method == RESPOND {
                    respond(&api, &item.payload).await
                } else {
                    api.call(&item.method, &item.payload).await
                };
                Sent {
                    item,
                    started,
                    result,
                }
            });
        }
        Ok((soonest - now).to_std().unwrap_or(Duration::ZERO))
    }

    async fn finish(&mut self, sent: Sent) {
        let Sent {
            item,
            started,
            result,
        } = sent;
        let now = Utc::now();
        let pace =
            chrono::Duration::from_std(self.options.per_channel_interval).unwrap_or_default();
        let unseen = result.as_ref().err().is_some_and(is_unseen);
        let outcome = match result {
            Ok(response) => Outcome::Sent(response),
            Err(ApiError::RateLimited { retry_after, .. }) => {
                let at = now + chrono::Duration::from_std(retry_after).unwrap_or_default();
                // Slack limits the chat.* methods per channel: a 429 there pauses
                // that channel only, so alerts and other people's DMs keep
                // flowing. Tiered methods are limited per method.
                if per_channel_limit(&item.method) {
                    self.channel_paused_until.insert(item.channel.clone(), at);
                } else {
                    self.method_paused_until.insert(item.method.clone(), at);
                }
                Outcome::Retry {
                    at,
                    error: format!("rate limited; retry after {retry_after:?}"),
                }
            }
            Err(err) if err.is_transient() || err.is_fatal_auth() => Outcome::Retry {
                at: now
                    + chrono::Duration::from_std(self.backoff(item.attempts)).unwrap_or_default(),
                error: err.to_string(),
            },
            Err(err) => Outcome::Dead(err.to_string()),
        };
        // Slack's bound is on message starts, one a second per channel.
        self.next_allowed
            .insert(item.channel.clone(), started + pace);
        let stored = match outcome {
            Outcome::Sent(response) => self.store.outbox_sent(item.id, response).await,
            Outcome::Retry { at, error } => {
                tracing::debug!(id = item.id, method = item.method, %error, "outbox: will retry");
                self.store.outbox_retry(item.id, at, error).await
            }
            Outcome::Dead(error) => {
                let dm = unseen.then(|| dm_instead(&item)).flatten();
                if dm.is_some() {
                    tracing::info!(id = item.id, method = item.method, %error,
                        "outbox: Slack would not show an ephemeral answer; sending it as a DM");
                } else {
                    tracing::error!(id = item.id, method = item.method, channel = item.channel, %error,
                        "outbox: Slack refused the message; kept as dead, not retried");
                }
                let dead = self.store.outbox_dead(item.id, error).await;
                if let Some(dm) = dm {
                    match self.store.enqueue(dm).await {
                        Ok(_) => self.wake.notify_one(),
                        Err(err) => tracing::error!(id = item.id, error = %err,
                            "outbox: could not queue the DM in place of an ephemeral answer"),
                    }
                }
                dead
            }
        };
        if let Err(err) = stored {
            tracing::error!(id = item.id, error = %err, "outbox: could not record the delivery outcome");
        }
        // Keeps the pacing map from growing with every DM channel ever used.
        if self.next_allowed.len() > 10_000 {
            self.next_allowed.retain(|_, at| *at > now);
        }
        if self.channel_paused_until.len() > 10_000 {
            self.channel_paused_until.retain(|_, at| *at > now);
        }
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let exp = Duration::from_secs(1).saturating_mul(1u32 << attempts.clamp(0, 16) as u32);
        exp.min(self.options.max_backoff)
    }
}

/// Methods Slack rate-limits per channel rather than per method (its
/// "special" limit of about one message a second per channel). A
/// `response_url` is limited per URL, which is one clicker's.
fn per_channel_limit(method: &str) -> bool {
    method.starts_with("chat.") || method == RESPOND
}

/// Slack would not show this ephemeral answer: the person is not in that
/// channel (someone else's DM, a forwarded message), or the `response_url`
/// expired or was used up.
fn is_unseen(err: &ApiError) -> bool {
    match err {
        ApiError::Slack { method, code } => {
            method == "chat.postEphemeral"
                && matches!(
                    code.as_str(),
                    "user_not_in_channel" | "channel_not_found" | "not_in_channel"
                )
        }
        ApiError::Http { method, status } => method == RESPOND && (400..500).contains(status),
        ApiError::Protocol { method, .. } => method == RESPOND,
        _ => false,
    }
}

/// The DM that carries an unseen ephemeral answer's words, so a refusal always
/// reaches the person who clicked.
fn dm_instead(item: &OutboxItem) -> Option<NewMessage> {
    let user = item.payload.get("user")?.as_str()?;
    let content = item.payload.get("body").unwrap_or(&item.payload);
    let text = content
        .get("text")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let blocks = content.get("blocks").cloned().unwrap_or_default();
    Some(NewMessage::post(user, text, blocks))
}

/// POSTs a queued answer's body to its `response_url`.
async fn respond(
    api: &SlackApi,
    payload: &serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let url = payload
        .get("response_url")
        .and_then(|u| u.as_str())
        .unwrap_or_default();
    let body = payload.get("body").cloned().unwrap_or_default();
    api.respond(url, &body).await
}
