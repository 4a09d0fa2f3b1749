//! What a connection does with what it reads: classifies each text frame and
//! runs each envelope on its own task (dedupe, the handler under the ack
//! deadline, the ack on the socket it came from, the record of it as handled),
//! counting the envelopes still in flight so a socket closes only after their
//! acks are sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::time::{timeout, Instant};

use super::envelope::{Envelope, EnvelopeHandler, Reply};
use super::frame::{ack_frame, parse_frame, Frame};
use super::seen::{RecentIds, Seen};
use crate::metrics;

/// Why a connection stopped being useful, reported to its slot.
#[derive(Debug)]
pub(super) enum ConnEvent {
    /// Slack asked us to move (`warning`, `refresh_requested`, `too_many_websockets`, …).
    Disconnect(String),
    /// Socket Mode is off for the app: no reconnect can succeed.
    LinkDisabled,
    Lost(String),
}

pub(super) enum Outgoing {
    /// The ack frame and when its envelope arrived (for `accessd_ack_seconds`).
    Ack(String, Instant),
    /// Finish in-flight envelopes, then close. `keep_reading` while draining for a
    /// refresh (Slack may still deliver on it); not on shutdown.
    Retire { keep_reading: bool },
}

/// Counts a connection's envelopes still being handled, so it closes only after
/// their acks are sent.
#[derive(Default)]
pub(super) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }
    pub(super) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The envelope side of the transport, shared by all its connections: the
/// handler, and the ids already handled, across connections (`recent`) and
/// restarts (`seen`).
pub(super) struct Inbound<H, S> {
    handler: Arc<H>,
    seen: S,
    recent: RecentIds,
    /// `TransportOptions::ack_deadline`.
    ack_deadline: Duration,
}

impl<H: EnvelopeHandler, S: Seen> Inbound<H, S> {
    pub(super) fn new(handler: Arc<H>, seen: S, ack_deadline: Duration) -> Self {
        Self {
            handler,
            seen,
            recent: RecentIds::default(),
            ack_deadline,
        }
    }

    /// Classifies one text frame; envelopes are dispatched on their own task.
    pub(super) fn on_text(
        self: &Arc<Self>,
        connection: u64,
        text: &str,
        out: &mpsc::UnboundedSender<Outgoing>,
        inflight: &Arc<InFlight>,
    ) -> Option<ConnEvent> {
        match parse_frame(text, connection) {
            Frame::Unparseable { error, envelope_id } => {
                // The frame's content is never logged: payloads carry user data and
                // verification tokens.
                tracing::warn!(connection, bytes = text.len(), error = %error, "unparseable Socket Mode frame");
                if let Some(envelope_id) = envelope_id {
                    let _ = out.send(Outgoing::Ack(ack_frame(&envelope_id, None), Instant::now()));
                }
                None
            }
            Frame::Hello => None,
            Frame::Disconnect(reason) => Some(if reason == "link_disabled" {
                ConnEvent::LinkDisabled
            } else {
                ConnEvent::Disconnect(reason)
            }),
            Frame::NoEnvelopeId { kind } => {
                tracing::warn!(
                    connection,
                    kind,
                    "ignoring Socket Mode frame without envelope_id"
                );
                None
            }
            Frame::Envelope(envelope) => {
                metrics::global().envelope(&envelope.kind);
                tokio::spawn(
                    self.clone()
                        .dispatch(envelope, out.clone(), inflight.enter()),
                );
                None
            }
        }
    }

    async fn dispatch(
        self: Arc<Self>,
        envelope: Envelope,
        out: mpsc::UnboundedSender<Outgoing>,
        _inflight: InFlightGuard,
    ) {
        let envelope_id = envelope.envelope_id.clone();
        let event_id = envelope.event_id.clone();
        let received_at = envelope.received_at;
        let ack = |payload: Option<Value>| {
            let _ = out.send(Outgoing::Ack(ack_frame(&envelope_id, payload), received_at));
        };
        let envelope_key = format!("envelope:{envelope_id}");
        let event_key = event_id.as_ref().map(|e| format!("event:{e}"));
        let keys: Vec<&str> = std::iter::once(envelope_key.as_str())
            .chain(event_key.as_deref())
            .collect();
        if !self.recent.claim(&keys) {
            tracing::debug!(envelope_id, "duplicate envelope acked without handling");
            ack(None);
            return;
        }
        match self
            .seen
            .seen_before(envelope_id.clone(), event_id.clone())
            .await
        {
            Ok(true) => {
                tracing::debug!(
                    envelope_id,
                    "envelope handled before a restart; acked without handling"
                );
                ack(None);
                return;
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(envelope_id, error = %err, "dedupe lookup failed; handling the envelope anyway")
            }
        }
        let handler = self.handler.clone();
        let mut work = tokio::spawn(async move { handler.handle(envelope).await });
        let reply = match timeout(self.ack_deadline, &mut work).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(err)) => {
                tracing::error!(envelope_id, error = %err, "envelope handler failed");
                Reply::empty()
            }
            Err(_) => {
                // Slack retries or shows an error after 3 s; an empty ack now is the
                // lesser evil. The handler keeps running to completion.
                tracing::warn!(envelope_id, deadline = ?self.ack_deadline, "handler too slow; acked without payload");
                Reply::empty()
            }
        };
        ack(reply.payload);
        // After the ack nothing is urgent: its store calls queue behind the
        // next envelopes' (see `Seen::background`).
        if let Some(after) = reply.after_ack {
            tokio::spawn(S::background(after));
        }
        let marked = S::background(self.seen.mark_seen(envelope_id.clone(), event_id)).await;
        if let Err(err) = marked {
            tracing::warn!(envelope_id, error = %err, "could not record the envelope as handled");
        }
    }
}
