//! The contract between the transport and whoever handles envelopes: one
//! [`Envelope`] in, one [`Reply`] out (the ack payload and the work to start
//! once the ack is on the wire).

use std::future::Future;

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

/// One envelope as received; `frame` is the whole JSON frame, parsed into a
/// typed route by the router.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub envelope_id: String,
    pub kind: String,
    /// `payload.event_id` of `events_api` envelopes: Slack's retries of one event
    /// carry new envelope ids but the same event id.
    pub event_id: Option<String>,
    pub accepts_response_payload: bool,
    pub frame: Value,
    pub connection: u64,
    pub received_at: Instant,
}

/// What a handler answers: the ack payload (modal errors, ephemeral command
/// replies) and work to start once the ack is on the wire.
#[derive(Default)]
pub struct Reply {
    pub payload: Option<Value>,
    pub after_ack: Option<BoxFuture<'static, ()>>,
}

impl Reply {
    pub fn empty() -> Self {
        Self::default()
    }
    pub fn payload(payload: Value) -> Self {
        Self {
            payload: Some(payload),
            after_ack: None,
        }
    }
    /// A modal submission answered by replacing the modal with `view`.
    pub fn update(view: Value) -> Self {
        Self::payload(json!({ "response_action": "update", "view": view }))
    }
    /// A modal submission refused with an inline error under each block.
    pub fn field_errors(errors: &[(&str, String)]) -> Self {
        let errors: Map<String, Value> = errors
            .iter()
            .map(|(block, why)| ((*block).to_string(), Value::String(why.clone())))
            .collect();
        Self::payload(json!({ "response_action": "errors", "errors": errors }))
    }
    /// A modal submission that closes the whole modal stack.
    pub fn clear() -> Self {
        Self::payload(json!({ "response_action": "clear" }))
    }
    pub fn then(mut self, work: impl Future<Output = ()> + Send + 'static) -> Self {
        self.after_ack = Some(Box::pin(work));
        self
    }
}

pub trait EnvelopeHandler: Send + Sync + 'static {
    fn handle(&self, envelope: Envelope) -> impl Future<Output = Reply> + Send;
}
