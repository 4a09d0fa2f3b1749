//! Socket Mode transport: keeps `slack.connections` WebSockets to Slack open,
//! hands every envelope to the handler concurrently, acks it, and dedupes
//! redeliveries across connections and restarts.
//!
//! Ours rather than slack-morphism's listener because that one handles the
//! envelopes of a connection one at a time, does not dedupe, and closes the old
//! socket before the new one is up. Here:
//! - each *slot* owns one logical connection and reconnects it with capped,
//!   jittered exponential backoff after drops, dead sockets or failed opens;
//! - a `disconnect` (`warning`, `refresh_requested`, …) makes the slot open the
//!   replacement first; the old socket keeps reading and acking until it is
//!   quiet, then closes: no gap;
//! - each envelope runs in its own task; the ack goes out on the socket it came
//!   from as soon as the handler returns (or empty at the ack deadline);
//! - refused tokens and `link_disabled` end the daemon instead of looping.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::RngExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

pub use super::envelope::{Envelope, EnvelopeHandler, Reply};
pub use super::frame::{parse_frame, Frame};
use super::inbound::{ConnEvent, InFlight, Inbound, Outgoing};
pub use super::seen::Seen;
use crate::metrics;
use crate::slack_api::{ApiError, SlackApi};

/// Timing knobs; defaults suit Slack, tests shorten them.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    pub connections: usize,
    /// Bound on `apps.connections.open`, the WebSocket handshake, and `hello`.
    pub open_timeout: Duration,
    pub ping_interval: Duration,
    /// A socket with no frame at all (pongs included) for this long is dead.
    pub dead_after: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Slack's deadline is 3 s; ack empty at this point if the handler is slow.
    pub ack_deadline: Duration,
    /// How long a retiring socket may keep draining in-flight envelopes.
    pub drain_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            connections: 2,
            open_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            ack_deadline: Duration::from_millis(2500),
            drain_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Retrying cannot help: the operator must act.
    #[error("{0}")]
    Fatal(String),
    #[error("{0}")]
    Retryable(String),
}

impl From<ApiError> for TransportError {
    fn from(err: ApiError) -> Self {
        if err.is_fatal_auth() {
            TransportError::Fatal(format!(
                "Slack refused the app-level token ({err}); check SLACK_APP_TOKEN / slack.app_token_file \
                 and that it has the connections:write scope"
            ))
        } else if err.code() == Some("not_allowed_token_type")
            || err.code() == Some("missing_scope")
        {
            TransportError::Fatal(format!(
                "{err}: the app-level token (xapp-…) needs the connections:write scope"
            ))
        } else {
            TransportError::Retryable(err.to_string())
        }
    }
}

/// Live view of the transport for health checks and `READY=1`.
#[derive(Debug)]
pub struct TransportStatus {
    live: AtomicUsize,
    connected: watch::Sender<usize>,
}

impl TransportStatus {
    fn new() -> Self {
        Self {
            live: AtomicUsize::new(0),
            connected: watch::channel(0).0,
        }
    }
    pub fn live_connections(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
    /// Resolves once at least one connection has said `hello`.
    pub async fn wait_connected(&self) {
        let mut rx = self.connected.subscribe();
        let _ = rx.wait_for(|n| *n > 0).await;
    }
    fn up(&self) {
        let n = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        self.connected.send_replace(n);
    }
    fn down(&self) {
        let n = self.live.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        self.connected.send_replace(n);
    }
}

pub struct Transport<H, S> {
    api: SlackApi,
    /// What happens to each envelope, shared by every connection.
    inbound: Arc<Inbound<H, S>>,
    options: TransportOptions,
    status: Arc<TransportStatus>,
    next_connection: AtomicU64,
}

/// A connected socket as seen by its slot.
struct Live {
    id: u64,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    events: mpsc::UnboundedReceiver<ConnEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    fn retire(self, keep_reading: bool) -> tokio::task::JoinHandle<()> {
        let _ = self.outgoing.send(Outgoing::Retire { keep_reading });
        self.task
    }
}

impl<H: EnvelopeHandler, S: Seen> Transport<H, S> {
    /// `seen` is the record of handled envelopes that outlives the process
    /// (the store, in the daemon).
    pub fn new(api: SlackApi, seen: S, handler: Arc<H>, options: TransportOptions) -> Arc<Self> {
        let inbound = Arc::new(Inbound::new(handler, seen, options.ack_deadline));
        Arc::new(Self {
            api,
            inbound,
            options,
            status: Arc::new(TransportStatus::new()),
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn status(&self) -> Arc<TransportStatus> {
        self.status.clone()
    }

    /// Runs every slot until `shutdown` turns true (then drains and returns Ok)
    /// or a slot meets a fatal error (returned at once; the caller shuts down).
    pub async fn run(
        self: Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), TransportError> {
        let mut slots = tokio::task::JoinSet::new();
        for slot in 0..self.options.connections.max(1) {
            slots.spawn(self.clone().run_slot(slot, shutdown.clone()));
        }
        while let Some(joined) = slots.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(err),
                Err(panic) => {
                    return Err(TransportError::Fatal(format!(
                        "connection task failed: {panic}"
                    )))
                }
            }
        }
        Ok(())
    }

    async fn run_slot(
        self: Arc<Self>,
        slot: usize,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), TransportError> {
        let mut failures = 0u32;
        let mut current: Option<Live> = None;
        loop {
            let mut live = match current.take() {
                Some(live) => live,
                None => match self
                    .connect_until_up(slot, &mut failures, &mut shutdown)
                    .await?
                {
                    Some(live) => live,
                    None => return Ok(()),
                },
            };
            let event = tokio::select! {
                event = live.events.recv() => event.unwrap_or(ConnEvent::Lost("connection task ended".into())),
                _ = wait_true(&mut shutdown) => {
                    let _ = live.retire(false).await;
                    return Ok(());
                }
            };
            match event {
                ConnEvent::Disconnect(reason) => {
                    tracing::info!(slot, connection = live.id, %reason, "Slack asked to reconnect; opening the replacement first");
                    let next = self
                        .connect_until_up(slot, &mut failures, &mut shutdown)
                        .await;
                    // The old socket drains in the background; its acks still go out.
                    drop(live.retire(true));
                    match next? {
                        Some(next) => current = Some(next),
                        None => return Ok(()),
                    }
                }
                ConnEvent::LinkDisabled => {
                    drop(live.retire(false));
                    return Err(TransportError::Fatal(
                        "Slack closed the connection with `link_disabled`: Socket Mode is not enabled for this app \
                         (enable it under Settings → Socket Mode, or recreate the app from `accessd manifest`)"
                            .into(),
                    ));
                }
                ConnEvent::Lost(why) => {
                    tracing::warn!(slot, connection = live.id, %why, "Socket Mode connection lost; reconnecting");
                    drop(live.retire(false));
                    failures += 1;
                    if !self.backoff(failures, &mut shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Opens a connection, retrying with backoff; `Ok(None)` on shutdown.
    async fn connect_until_up(
        self: &Arc<Self>,
        slot: usize,
        failures: &mut u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Live>, TransportError> {
        loop {
            if *shutdown.borrow() {
                return Ok(None);
            }
            let attempt = tokio::select! {
                attempt = self.connect(slot) => attempt,
                _ = wait_true(shutdown) => return Ok(None),
            };
            match attempt {
                Ok(live) => {
                    *failures = 0;
                    return Ok(Some(live));
                }
                Err(TransportError::Fatal(msg)) => return Err(TransportError::Fatal(msg)),
                Err(TransportError::Retryable(msg)) => {
                    *failures += 1;
                    tracing::warn!(slot, attempt = *failures, error = %msg, "could not open a Socket Mode connection");
                    if !self.backoff(*failures, shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Sleeps a jittered, capped exponential delay; false if shutdown came first.
    async fn backoff(&self, failures: u32, shutdown: &mut watch::Receiver<bool>) -> bool {
        let delay = backoff_delay(
            failures,
            self.options.backoff_base,
            self.options.backoff_max,
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = wait_true(shutdown) => false,
        }
    }

    async fn connect(self: &Arc<Self>, slot: usize) -> Result<Live, TransportError> {
        let deadline = self.options.open_timeout;
        let url = match timeout(deadline, self.api.open_socket_url()).await {
            Ok(url) => url?,
            Err(_) => {
                return Err(TransportError::Retryable(
                    "apps.connections.open timed out".into(),
                ))
            }
        };
        let (mut ws, _) =
            match timeout(deadline, tokio_tungstenite::connect_async(url.as_str())).await {
                Ok(Ok(ws)) => ws,
                // The URL carries a one-use ticket: name only the host.
                Ok(Err(err)) => {
                    return Err(TransportError::Retryable(format!(
                        "WebSocket connect to {} failed: {err}",
                        host_of(&url)
                    )))
                }
                Err(_) => {
                    return Err(TransportError::Retryable(format!(
                        "WebSocket connect to {} timed out",
                        host_of(&url)
                    )))
                }
            };
        let hello = timeout(deadline, async {
            while let Some(frame) = ws.next().await {
                match frame {
                    Ok(Message::Text(text)) => {
                        let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        match value.get("type").and_then(Value::as_str) {
                            Some("hello") => return Ok(value),
                            Some("disconnect") if value.get("reason").and_then(Value::as_str) == Some("link_disabled") => {
                                return Err(TransportError::Fatal(
                                    "Slack answered `link_disabled`: Socket Mode is not enabled for this app".into(),
                                ))
                            }
                            _ => tracing::debug!("ignoring frame before hello"),
                        }
                    }
                    Ok(_) => {}
                    Err(err) => return Err(TransportError::Retryable(format!("connection failed before hello: {err}"))),
                }
            }
            Err(TransportError::Retryable("connection closed before hello".into()))
        })
        .await
        .map_err(|_| TransportError::Retryable("no hello from Slack in time".into()))??;

        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let host = hello
            .pointer("/debug_info/host")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let num_connections = hello
            .get("num_connections")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        tracing::info!(
            slot,
            connection = id,
            host,
            num_connections,
            "Socket Mode connection up"
        );
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(self.clone().drive(id, ws, out_tx.clone(), out_rx, ev_tx));
        Ok(Live {
            id,
            outgoing: out_tx,
            events: ev_rx,
            task,
        })
    }

    /// Owns one socket: reads frames, writes acks and pings, notices death, and
    /// on retirement drains in-flight envelopes before closing.
    async fn drive(
        self: Arc<Self>,
        id: u64,
        ws: WsStream,
        out_tx: mpsc::UnboundedSender<Outgoing>,
        mut out_rx: mpsc::UnboundedReceiver<Outgoing>,
        events: mpsc::UnboundedSender<ConnEvent>,
    ) {
        self.status.up();
        let (mut sink, mut stream) = ws.split();
        let inflight = Arc::new(InFlight::default());
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.options.ping_interval,
            self.options.ping_interval,
        );
        let mut last_frame = Instant::now();
        // (keep_reading, hard deadline) once the slot has retired this socket.
        let mut retiring: Option<(bool, Instant)> = None;
        let quiet = Duration::from_millis(300).min(self.options.drain_timeout);
        let ended = loop {
            let reading = retiring.is_none_or(|(keep, _)| keep);
            let drain_done = async {
                inflight.wait_idle().await;
                // While Slack may still route a last envelope here, wait for a
                // short silence before closing.
                if reading {
                    tokio::time::sleep_until(last_frame + quiet).await;
                }
            };
            tokio::select! {
                frame = stream.next(), if reading => {
                    last_frame = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(event) = self.inbound.on_text(id, text.as_str(), &out_tx, &inflight) {
                                let _ = events.send(event);
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            tracing::warn!(connection = id, bytes = bytes.len(), "ignoring binary Socket Mode frame");
                        }
                        Some(Ok(Message::Close(frame))) => {
                            break Some(ConnEvent::Lost(format!("closed by Slack ({})", frame.map(|f| f.code.to_string()).unwrap_or_else(|| "no close frame".into()))));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(err)) => break Some(ConnEvent::Lost(err.to_string())),
                        None => break Some(ConnEvent::Lost("socket closed".into())),
                    }
                }
                out = out_rx.recv() => match out {
                    Some(Outgoing::Ack(text, received_at)) => {
                        if let Err(err) = sink.send(Message::text(text)).await {
                            break Some(ConnEvent::Lost(format!("could not send ack: {err}")));
                        }
                        metrics::global().ack(received_at.elapsed());
                    }
                    Some(Outgoing::Retire { keep_reading }) => {
                        retiring = Some((keep_reading, Instant::now() + self.options.drain_timeout));
                    }
                    None => break None,
                },
                _ = ping.tick() => {
                    if last_frame.elapsed() > self.options.dead_after {
                        break Some(ConnEvent::Lost(format!("no traffic for {:?}", self.options.dead_after)));
                    }
                    if let Err(err) = sink.send(Message::Ping(Vec::new().into())).await {
                        break Some(ConnEvent::Lost(format!("could not send ping: {err}")));
                    }
                }
                _ = drain_done, if retiring.is_some() => break None,
                _ = sleep_until_opt(retiring.map(|(_, deadline)| deadline)) => {
                    tracing::warn!(connection = id, "closing with envelopes still in flight after the drain timeout");
                    break None;
                }
            }
        };
        self.status.down();
        match ended {
            Some(event) => {
                let _ = events.send(event);
            }
            None => {
                let _ = timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
                tracing::info!(connection = id, "Socket Mode connection closed");
            }
        }
    }
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "Slack".into())
}

fn backoff_delay(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let cap = exp.min(max);
    // Full jitter: many daemons (or slots) reconnecting after one outage spread out.
    let millis = cap.as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert!(backoff_delay(1, base, max) <= base);
        assert!(backoff_delay(3, base, max) >= Duration::from_millis(200));
        for failures in [10, 20, 40, u32::MAX] {
            let d = backoff_delay(failures, base, max);
            assert!(d <= max && d >= max / 2, "{d:?}");
        }
    }
}
