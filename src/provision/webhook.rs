//! The `webhook` provisioner: POSTs each grant or revoke as the JSON document
//! of DESIGN.md §4, signed with a shared secret, and maps the HTTP answer to
//! an [`Outcome`].
//!
//! # What a receiver gets
//!
//! One `POST` to the configured URL per attempt, with the body being the JSON
//! request (`action`, `idempotency_key`, `ticket`, `app`, `role`,
//! `entitlement`, `user`, optional `expires_at`) and these headers:
//!
//! - `Content-Type: application/json`
//! - `X-Accessd-Timestamp: <unix seconds when this attempt was sent>`
//! - `X-Accessd-Signature: v1=<hex>`, where `<hex>` is the lowercase hex
//!   HMAC-SHA256, keyed with the secret (the bytes of `secret_file`, surrounding
//!   whitespace trimmed), of `"v1:" + timestamp + ":" + body`: the timestamp
//!   exactly as sent in its header and the body as the raw bytes received
//! - `Idempotency-Key: <idempotency_key>`: the same for every retry of one
//!   grant or revoke, so the receiver can recognise a repeat
//! - `User-Agent: accessd/<version>`
//!
//! # How a receiver verifies it
//!
//! 1. Read the body as raw bytes, before any JSON parsing.
//! 2. Reject the request if `X-Accessd-Timestamp` is not all ASCII digits
//!    (which also keeps the `:`-joined signed text unambiguous) or is more
//!    than 5 minutes away from the receiver's clock (replay protection).
//! 3. Compute `v1=` + hex(HMAC-SHA256(secret, "v1:" + timestamp + ":" + body))
//!    and compare it with `X-Accessd-Signature` in constant time; reject on a
//!    mismatch. [`signature`] is the reference implementation.
//! 4. Treat a repeated `Idempotency-Key` as the same change, not a new one.
//!
//! accessd's side of the replay protection is a fresh timestamp, and so a
//! fresh signature, on every attempt, retries included.
//!
//! # What the answer means
//!
//! Any 2xx = applied; 409 = already in that state (grant: already present,
//! revoke: already absent); 429 = retry, after `Retry-After` when given;
//! 5xx, a timeout or a connection failure = retry; anything else (other 4xx,
//! and 3xx: redirects are not followed, since a redirected POST would lose its
//! body) = failed, with the status and the start of the response body kept
//! for the failure message.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use sha2::Sha256;

use super::{Outcome, Provisioner, Request};
use crate::config::Secret;
use crate::net;

pub const TIMESTAMP_HEADER: &str = "X-Accessd-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Accessd-Signature";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// How much of a failed response's body the failure message keeps.
const BODY_PREFIX: usize = 512;
/// A receiver asking to wait longer than this is capped, so a silly
/// `Retry-After` cannot park a grant for years or overflow a deadline.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

const USER_AGENT: &str = concat!("accessd/", env!("CARGO_PKG_VERSION"));

/// The `X-Accessd-Signature` value for one attempt:
/// `v1=` + lowercase hex HMAC-SHA256(secret, `"v1:" + timestamp + ":" + body`).
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length (long keys are hashed), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(b"v1:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Clone)]
pub struct WebhookProvisioner {
    client: reqwest::Client,
    url: Url,
    secret: Secret,
    timeout: Duration,
}

impl fmt::Debug for WebhookProvisioner {
    // By hand so the secret, and a password in the URL, never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookProvisioner")
            .field("url", &redacted_url(&self.url))
            .field("secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("redacted"));
    }
    shown.to_string()
}

impl WebhookProvisioner {
    /// `url` must be http(s); `timeout` bounds each attempt from connecting
    /// to the end of the response body.
    pub fn new(url: String, secret: Secret, timeout: Duration) -> Result<Self, String> {
        let url = Url::parse(&url).map_err(|e| format!("invalid webhook URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "webhook URL must be http or https, not `{}`",
                url.scheme()
            ));
        }
        if secret.expose().is_empty() {
            return Err("the webhook secret is empty".into());
        }
        // reqwest is built without a crypto provider of its own.
        net::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))?;
        Ok(Self {
            client,
            url,
            secret,
            timeout,
        })
    }

    async fn send(&self, request: &Request, body: Vec<u8>) -> Outcome {
        let key = match HeaderValue::from_str(&request.idempotency_key) {
            Ok(key) => key,
            Err(_) => {
                return Outcome::Permanent {
                    message: "the idempotency key is not a valid HTTP header value".into(),
                }
            }
        };
        // Taken per attempt: a retry must not reuse an old, replayable timestamp.
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signed = signature(self.secret.expose().as_bytes(), &timestamp, &body);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(IDEMPOTENCY_HEADER, key);
        // Digits and lowercase hex only, so these always make valid header values.
        for (name, value) in [(TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signed)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        let sent = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return self.unsent(err),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Applied;
        }
        if status == StatusCode::CONFLICT {
            return Outcome::AlreadyInState;
        }
        if status.is_redirection() {
            // Never followed (the client's policy): say where it pointed.
            return Outcome::Permanent {
                message: net::redirect_refused(
                    "the webhook",
                    status,
                    response.headers(),
                    "set the provisioner's url to the final address",
                ),
            };
        }
        let retry_after = capped_retry_after(response.headers(), chrono::Utc::now());
        let body = body_prefix(response).await;
        let message = answered(status, &body);
        if status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::Transient {
                message,
                retry_after,
            }
        } else if status.is_server_error() {
            Outcome::Transient {
                message,
                retry_after: None,
            }
        } else {
            Outcome::Permanent { message }
        }
    }

    /// No HTTP answer: timeouts and network trouble are worth retrying; a
    /// request reqwest could not even build or a redirect loop is not.
    fn unsent(&self, err: reqwest::Error) -> Outcome {
        // The URL is already known to the operator; keep messages short.
        let err = err.without_url();
        if err.is_timeout() {
            return Outcome::Transient {
                message: format!("the webhook did not answer within {:?}", self.timeout),
                retry_after: None,
            };
        }
        let message = format!("cannot reach the webhook: {}", error_chain(&err));
        if err.is_builder() || err.is_redirect() {
            Outcome::Permanent { message }
        } else {
            Outcome::Transient {
                message,
                retry_after: None,
            }
        }
    }
}

/// `err` and its sources joined with `: `; reqwest's own text alone
/// ("error sending request") hides the useful part ("Connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

fn answered(status: StatusCode, body: &str) -> String {
    if body.is_empty() {
        format!("the webhook answered HTTP {status}")
    } else {
        format!("the webhook answered HTTP {status}: {body}")
    }
}

/// The first 512 bytes of the body, lossy UTF-8, trimmed. Reads no further
/// than that, so a huge error page costs nothing; a body that fails to read
/// just leaves the message shorter.
async fn body_prefix(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_PREFIX {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    prefix_text(&bytes)
}

fn prefix_text(bytes: &[u8]) -> String {
    let mut bytes = &bytes[..bytes.len().min(BODY_PREFIX)];
    // A character cut in half by the limit is dropped rather than shown as �.
    if let Err(err) = std::str::from_utf8(bytes) {
        if err.error_len().is_none() {
            bytes = &bytes[..err.valid_up_to()];
        }
    }
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// The receiver's `Retry-After`, at most [`MAX_RETRY_AFTER`].
fn capped_retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    net::retry_after_header(headers, now).map(|wait| wait.min(MAX_RETRY_AFTER))
}

impl Provisioner for WebhookProvisioner {
    async fn provision(&self, request: &Request) -> Outcome {
        match serde_json::to_vec(request) {
            Ok(body) => self.send(request, body).await,
            Err(err) => Outcome::Permanent {
                message: format!("cannot encode the request: {err}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_v1_lowercase_hex_over_every_part() {
        let base = signature(b"key", "1700000000", b"{}");
        assert!(base.starts_with("v1="), "{base}");
        let hex = &base[3..];
        assert_eq!(hex.len(), 64);
        assert!(hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(base, signature(b"key2", "1700000000", b"{}"));
        assert_ne!(base, signature(b"key", "1700000001", b"{}"));
        assert_ne!(base, signature(b"key", "1700000000", b"{ }"));
        // Known answer: HMAC-SHA256("key", "v1:1700000000:{}").
        assert_eq!(
            base,
            "v1=".to_string() + &known_hmac(b"key", b"v1:1700000000:{}")
        );
    }

    /// HMAC-SHA256 written out from its definition (RFC 2104), so the test
    /// does not just repeat the code under test.
    fn known_hmac(key: &[u8], message: &[u8]) -> String {
        use sha2::Digest;
        let mut block = [0u8; 64];
        block[..key.len()].copy_from_slice(key);
        let inner: Vec<u8> = block
            .iter()
            .map(|b| b ^ 0x36)
            .chain(message.to_vec())
            .collect();
        let inner = Sha256::digest(&inner);
        let outer: Vec<u8> = block
            .iter()
            .map(|b| b ^ 0x5c)
            .chain(inner.iter().copied())
            .collect();
        hex::encode(Sha256::digest(&outer))
    }

    /// Parsing is `net::retry_after`'s (tested there); the cap is this
    /// provisioner's own.
    #[test]
    fn retry_after_is_capped() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let h = |s: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static(s));
            headers
        };
        assert_eq!(
            capped_retry_after(&h("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            capped_retry_after(&h("Thu, 01 Jan 2026 00:00:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            capped_retry_after(&h("99999999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            capped_retry_after(&h("Fri, 01 Jan 2100 00:00:00 GMT"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(capped_retry_after(&h("soon"), now), None);
        assert_eq!(capped_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn body_prefix_is_512_bytes_trimmed_without_half_characters() {
        assert_eq!(prefix_text(b"  group not found \n"), "group not found");
        assert_eq!(prefix_text(&[b'x'; 2000]).len(), BODY_PREFIX);
        // 'é' is two bytes: 511 'a's leave room for half of it only.
        let mut cut = vec![b'a'; 511];
        cut.extend_from_slice("é".repeat(10).as_bytes());
        assert_eq!(prefix_text(&cut), "a".repeat(511));
        assert_eq!(prefix_text(b"bad \xff byte"), "bad \u{fffd} byte");
    }

    #[test]
    fn new_checks_the_url_and_the_secret() {
        let secret = || Secret::new("s3cret-value".into());
        let timeout = Duration::from_secs(1);
        assert!(
            WebhookProvisioner::new("ftp://x/".into(), secret(), timeout)
                .unwrap_err()
                .contains("http")
        );
        assert!(WebhookProvisioner::new("not a url".into(), secret(), timeout).is_err());
        let empty =
            WebhookProvisioner::new("https://x/".into(), Secret::new(String::new()), timeout);
        assert!(empty.unwrap_err().contains("empty"));
        let p = WebhookProvisioner::new(
            "https://hook:pa55word@example.com/provision".into(),
            secret(),
            timeout,
        )
        .unwrap();
        let shown = format!("{p:?}");
        assert!(shown.contains("example.com/provision"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("pa55word"),
            "{shown}"
        );
    }
}
