//! The webhook provisioner against a real HTTP receiver (axum on loopback):
//! the signature a receiver can verify, the status → outcome mapping,
//! timeouts, a dead port, retries, and a secret that never shows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use accessd::config::Secret;
use accessd::provision::webhook::{signature, WebhookProvisioner};
use accessd::provision::{Action, Outcome, Person, Provisioner, Request};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SECRET: &str = "whsec-7f3a9c-do-not-leak";

/// What the receiver answers.
#[derive(Clone)]
enum Reply {
    With {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: &'static str,
    },
    /// Accept the request and never answer.
    Never,
}

fn status(status: u16) -> Reply {
    Reply::With {
        status,
        headers: Vec::new(),
        body: "",
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

struct Shared {
    reply: Reply,
    seen: Mutex<Vec<Seen>>,
}

struct Receiver {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    async fn start(reply: Reply) -> Self {
        let shared = Arc::new(Shared {
            reply,
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hooks/provision"),
            shared,
            server,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        headers,
        body,
    });
    match shared.reply.clone() {
        Reply::With {
            status,
            headers,
            body,
        } => {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(name, value.parse().unwrap());
            }
            (StatusCode::from_u16(status).unwrap(), map, body).into_response()
        }
        Reply::Never => std::future::pending().await,
    }
}

fn request() -> Request {
    Request {
        action: Action::Grant,
        idempotency_key: "grant-T-42-1".into(),
        ticket: "T-42".into(),
        app: "github".into(),
        role: "maintainer".into(),
        entitlement: "gh-maintainers".into(),
        user: Person {
            email: "ann@example.com".into(),
            slack_id: "UANN".into(),
        },
        expires_at: Some("2026-11-24T10:00:00Z".parse().unwrap()),
        target: None,
        account: None,
    }
}

fn provisioner(url: &str, timeout: Duration) -> WebhookProvisioner {
    WebhookProvisioner::new(url.to_string(), Secret::new(SECRET.into()), timeout).unwrap()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What a receiver does, written independently of `signature()`: HMAC over
/// `v1:{timestamp}:{body}`, compared in constant time by `verify_slice`.
fn receiver_verifies(seen: &Seen) -> bool {
    let timestamp = seen.header("x-accessd-timestamp");
    let Some(hex) = seen.header("x-accessd-signature").strip_prefix("v1=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(&seen.body);
    mac.verify_slice(&tag).is_ok()
}

/// Verifies, with a timestamp within a few seconds of now, and the
/// idempotency key header matching the body's.
fn assert_valid(seen: &Seen) {
    assert!(
        receiver_verifies(seen),
        "signature does not verify: {seen:?}"
    );
    let timestamp: i64 = seen.header("x-accessd-timestamp").parse().unwrap();
    assert!(
        (now_secs() - timestamp).abs() <= 5,
        "stale timestamp {timestamp}"
    );
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        seen.header("idempotency-key"),
        body["idempotency_key"].as_str().unwrap()
    );
}

#[tokio::test]
async fn signs_the_exact_body_so_a_receiver_can_verify_it() {
    accessd::install_crypto_provider();
    let receiver = Receiver::start(status(200)).await;
    let p = provisioner(&receiver.url, Duration::from_secs(5));
    assert_eq!(p.provision(&request()).await, Outcome::Applied);

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/hooks/provision");
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header("idempotency-key"), "grant-T-42-1");
    assert!(
        seen.header("user-agent").starts_with("accessd/"),
        "{:?}",
        seen.header("user-agent")
    );
    assert_valid(seen);
    // The body is the DESIGN.md §4 document, byte for byte what was signed.
    assert_eq!(seen.body, serde_json::to_vec(&request()).unwrap());
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["action"], "grant");
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["expires_at"], "2026-11-24T10:00:00Z");
    // The public helper is the same scheme.
    assert_eq!(
        seen.header("x-accessd-signature"),
        signature(
            SECRET.as_bytes(),
            seen.header("x-accessd-timestamp"),
            &seen.body
        )
    );

    // A tampered body, timestamp or key fails verification.
    let mut tampered = seen.clone();
    tampered.body = Bytes::from(String::from_utf8_lossy(&seen.body).replace("ann@", "eve@"));
    assert!(!receiver_verifies(&tampered));
    let mut replayed = seen.clone();
    let later = (now_secs() + 600).to_string();
    replayed
        .headers
        .insert("x-accessd-timestamp", later.parse().unwrap());
    assert!(!receiver_verifies(&replayed));
    assert_ne!(
        seen.header("x-accessd-signature"),
        signature(
            b"another-secret",
            seen.header("x-accessd-timestamp"),
            &seen.body
        )
    );
}

#[tokio::test]
async fn any_2xx_is_applied() {
    accessd::install_crypto_provider();
    for code in [200, 201, 202, 204] {
        let receiver = Receiver::start(status(code)).await;
        let p = provisioner(&receiver.url, Duration::from_secs(5));
        assert_eq!(p.provision(&request()).await, Outcome::Applied, "{code}");
    }
}

#[tokio::test]
async fn conflict_is_already_in_state() {
    accessd::install_crypto_provider();
    let receiver = Receiver::start(status(409)).await;
    let p = provisioner(&receiver.url, Duration::from_secs(5));
    assert_eq!(p.provision(&request()).await, Outcome::AlreadyInState);
}

#[tokio::test]
async fn too_many_requests_is_transient_with_retry_after() {
    accessd::install_crypto_provider();
    let receiver = Receiver::start(Reply::With {
        status: 429,
        headers: vec![("retry-after", "7")],
        body: "slow down",
    })
    .await;
    let p = provisioner(&receiver.url, Duration::from_secs(5));
    match p.provision(&request()).await {
        Outcome::Transient {
            message,
            retry_after,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("429"), "{message}");
        }
        other => panic!("expected transient, got {other:?}"),
    }

    // Without the header there is no hint, but it is still worth retrying.
    let receiver = Receiver::start(status(429)).await;
    let p = provisioner(&receiver.url, Duration::from_secs(5));
    assert!(matches!(
        p.provision(&request()).await,
        Outcome::Transient {
            retry_after: None,
            ..
        }
    ));
}

#[tokio::test]
async fn server_errors_are_transient() {
    accessd::install_crypto_provider();
    for code in [500, 502, 503] {
        let receiver = Receiver::start(Reply::With {
            status: code,
            headers: Vec::new(),
            body: "down for maintenance",
        })
        .await;
        let p = provisioner(&receiver.url, Duration::from_secs(5));
        match p.provision(&request()).await {
            Outcome::Transient {
                message,
                retry_after,
            } => {
                assert!(message.contains(&code.to_string()), "{message}");
                assert!(message.contains("down for maintenance"), "{message}");
                assert_eq!(retry_after, None);
            }
            other => panic!("{code}: expected transient, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn client_errors_are_permanent_with_the_status_and_body() {
    accessd::install_crypto_provider();
    let receiver = Receiver::start(Reply::With {
        status: 400,
        headers: Vec::new(),
        body: "  unknown entitlement gh-maintainers\n",
    })
    .await;
    let p = provisioner(&receiver.url, Duration::from_secs(5));
    let Outcome::Permanent { message } = p.provision(&request()).await else {
        panic!("expected a permanent failure");
    };
    assert!(message.contains("400"), "{message}");
    assert!(
        message.ends_with(": unknown entitlement gh-maintainers"),
        "{message}"
    );
    assert!(!message.contains(SECRET));

    // Only the first 512 bytes of a long body are kept.
    let long: &'static str = Box::leak(format!("{}{}", "e".repeat(512), "TAIL").into_boxed_str());
    let receiver = Receiver::start(Reply::With {
        status: 403,
        headers: Vec::new(),
        body: long,
    })
    .await;
    let p = provisioner(&receiver.url, Duration::from_secs(5));
    let Outcome::Permanent { message } = p.provision(&request()).await else {
        panic!("expected a permanent failure");
    };
    assert!(message.contains("403") && message.contains(&"e".repeat(512)));
    assert!(!message.contains("TAIL"), "{message}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    accessd::install_crypto_provider();
    let target = Receiver::start(status(200)).await;
    let location: &'static str = Box::leak(target.url.clone().into_boxed_str());
    let receiver = Receiver::start(Reply::With {
        status: 307,
        headers: vec![("location", location)],
        body: "",
    })
    .await;
    let p = provisioner(&receiver.url, Duration::from_secs(5));
    let outcome = p.provision(&request()).await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("307") && message.contains(location) && message.contains("not followed")),
        "{outcome:?}"
    );
    assert!(target.seen().is_empty());
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_as_transient() {
    accessd::install_crypto_provider();
    let receiver = Receiver::start(Reply::Never).await;
    let p = provisioner(&receiver.url, Duration::from_millis(300));
    let started = Instant::now();
    let outcome = p.provision(&request()).await;
    let took = started.elapsed();
    assert!(
        matches!(&outcome, Outcome::Transient { message, retry_after: None } if message.contains("300ms")),
        "{outcome:?}"
    );
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // It did reach the receiver: this was the answer timing out.
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_dead_port_is_transient() {
    accessd::install_crypto_provider();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let p = provisioner(
        &format!("http://127.0.0.1:{port}/hooks"),
        Duration::from_secs(5),
    );
    let started = Instant::now();
    let outcome = p.provision(&request()).await;
    assert!(
        matches!(&outcome, Outcome::Transient { message, retry_after: None } if message.contains("cannot reach")),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn retries_keep_the_idempotency_key_with_a_fresh_valid_signature() {
    accessd::install_crypto_provider();
    let receiver = Receiver::start(status(503)).await;
    let p = provisioner(&receiver.url, Duration::from_secs(5));
    let request = request();
    assert!(matches!(
        p.provision(&request).await,
        Outcome::Transient { .. }
    ));
    let first: u64 = receiver.seen()[0]
        .header("x-accessd-timestamp")
        .parse()
        .unwrap();
    // Wait into the next second (under a second) so the timestamp must move.
    let next = UNIX_EPOCH + Duration::from_secs(first + 1);
    tokio::time::sleep(
        next.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
    .await;
    assert!(matches!(
        p.provision(&request).await,
        Outcome::Transient { .. }
    ));

    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    for attempt in &seen {
        assert_valid(attempt);
        assert_eq!(attempt.header("idempotency-key"), "grant-T-42-1");
    }
    assert_eq!(seen[0].body, seen[1].body);
    let second: u64 = seen[1].header("x-accessd-timestamp").parse().unwrap();
    assert!(second > first, "{first} then {second}");
    assert_ne!(
        seen[0].header("x-accessd-signature"),
        seen[1].header("x-accessd-signature")
    );
}

#[tokio::test]
async fn debug_output_never_shows_the_secret() {
    accessd::install_crypto_provider();
    let p = provisioner(
        "https://hooks.example.com/provision",
        Duration::from_secs(5),
    );
    let shown = format!("{p:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("7f3a9c"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(shown.contains("hooks.example.com"), "{shown}");
    let pretty = format!("{p:#?}");
    assert!(!pretty.contains("7f3a9c"), "{pretty}");
}
