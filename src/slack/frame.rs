//! The Socket Mode frame codec: a text frame in, a [`Frame`] out, and the
//! ack frame back. Pure, so the fuzz target drives exactly what a live socket
//! parses.

use serde_json::Value;
use tokio::time::Instant;

use super::envelope::Envelope;

/// What one Socket Mode text frame is.
#[doc(hidden)]
#[derive(Debug)]
pub enum Frame {
    /// Not JSON; `envelope_id` is scraped from the text so it can still be acked.
    Unparseable {
        error: serde_json::Error,
        envelope_id: Option<String>,
    },
    Hello,
    /// `disconnect` with its `reason` (`unknown` when absent).
    Disconnect(String),
    NoEnvelopeId {
        kind: String,
    },
    Envelope(Envelope),
}

/// Turns a text frame into a [`Frame`]. Public (hidden) only so the fuzz
/// target drives exactly the parsing a live socket does.
#[doc(hidden)]
pub fn parse_frame(text: &str, connection: u64) -> Frame {
    let frame: Value = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) => {
            return Frame::Unparseable {
                error,
                envelope_id: scrape_envelope_id(text),
            }
        }
    };
    let kind = frame
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match kind.as_str() {
        "hello" => Frame::Hello,
        "disconnect" => Frame::Disconnect(
            frame
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
        ),
        _ => {
            let Some(envelope_id) = frame
                .get("envelope_id")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return Frame::NoEnvelopeId { kind };
            };
            Frame::Envelope(Envelope {
                event_id: frame
                    .pointer("/payload/event_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                accepts_response_payload: frame
                    .get("accepts_response_payload")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                envelope_id,
                kind,
                frame,
                connection,
                received_at: Instant::now(),
            })
        }
    }
}

/// The ack of one envelope, with the handler's payload when it has one.
pub fn ack_frame(envelope_id: &str, payload: Option<Value>) -> String {
    let mut ack = serde_json::json!({ "envelope_id": envelope_id });
    if let Some(payload) = payload {
        ack["payload"] = payload;
    }
    ack.to_string()
}

/// Best effort for frames that are not JSON: an ack stops Slack redelivering.
fn scrape_envelope_id(text: &str) -> Option<String> {
    let start = text.find("\"envelope_id\"")? + "\"envelope_id\"".len();
    let rest = text[start..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let id: String = rest.chars().take_while(|c| *c != '"').collect();
    let plausible = !id.is_empty()
        && id.len() <= 100
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    plausible.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_envelope_id_from_broken_json() {
        assert_eq!(
            scrape_envelope_id(r#"{"envelope_id": "abc-123", "payload": {"#).as_deref(),
            Some("abc-123")
        );
        assert_eq!(scrape_envelope_id("garbage"), None);
        assert_eq!(scrape_envelope_id(r#"{"envelope_id":"a\"b"}"#), None);
    }
}
