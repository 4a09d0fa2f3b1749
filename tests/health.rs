//! `/healthz` and `/metrics` on `server.listen`, on the whole daemon against the
//! fake Slack: health follows the Socket Mode connections from start-up on,
//! metrics count envelopes, acks, Web API calls and rate limits and read the
//! database, nothing else is served, and a taken port stops the start.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use accessd::RunError;
use serde_json::Value;
use support::daemon::{config_listening, fast_options, Daemon};
use support::world::{World, ANN, BOB};
use support::{Failure, FakeSlack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

/// Enough failures to outlast any test; cleared with `clear_failures`.
const FOREVER: usize = 100_000;

const CATALOG: &str = r#"
[[apps]]
id = "github"
name = "GitHub"
stages = [{ approvers = ["bob@example.com"], required = 1 }]

  [[apps.roles]]
  id = "write"
  name = "Write"
"#;

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection; the server closes after answering.
async fn http(addr: SocketAddr, method: &str, path: &str, extra_headers: &str) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head}"));
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn healthz(addr: SocketAddr) -> (u16, Value) {
    let reply = http(addr, "GET", "/healthz", "").await;
    let body = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("healthz body is JSON ({e}): {}", reply.body));
    (reply.status, body)
}

/// Polls `/healthz` until it answers `status`.
async fn healthz_becomes(addr: SocketAddr, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (got, body) = healthz(addr).await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "healthz stayed {got} {body}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the sample `series` (name with labels, exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Starts a daemon listening on a free loopback port; returns it and the port.
async fn listening_daemon(fake: &FakeSlack, dir: &std::path::Path) -> (Daemon, SocketAddr) {
    let config = config_listening(fake, dir, 1, "127.0.0.1:0", "");
    let mut options = fast_options(&config);
    let (tx, mut rx) = mpsc::unbounded_channel();
    options.listening = Some(tx);
    let daemon = Daemon::start(config, options);
    let addr = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("listening in time")
        .expect("bound address");
    (daemon, addr)
}

#[tokio::test]
async fn healthz_is_503_until_a_socket_is_up_and_again_when_none_is() {
    let fake = FakeSlack::start().await;
    fake.fail_next("apps.connections.open", FOREVER, Failure::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = listening_daemon(&fake, dir.path()).await;

    // Start-up: the listener answers before any connection exists.
    let (status, body) = healthz(addr).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    fake.wait_until(WAIT, |f| {
        (!f.calls_to("apps.connections.open").is_empty()).then_some(())
    })
    .await
    .expect("the daemon tries to connect");
    let body = healthz_becomes(addr, 503).await;
    assert_eq!(
        body["reason"], "no Socket Mode connection to Slack",
        "{body}"
    );

    fake.clear_failures("apps.connections.open");
    fake.wait_for_connections(1, WAIT).await;
    let body = healthz_becomes(addr, 200).await;
    assert_eq!(
        body,
        serde_json::json!({ "status": "ok", "connections": 1 })
    );

    // Slack goes away and refuses reconnects.
    fake.fail_next("apps.connections.open", FOREVER, Failure::Status(503));
    fake.close_all();
    let body = healthz_becomes(addr, 503).await;
    assert_eq!(
        body["reason"], "no Socket Mode connection to Slack",
        "{body}"
    );

    daemon.stop().await.expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener closes with the daemon"
    );
}

#[tokio::test]
async fn metrics_count_envelopes_acks_api_calls_and_read_the_database() {
    let (tx, mut rx) = mpsc::unbounded_channel::<SocketAddr>();
    let world = World::start_listening(
        CATALOG,
        "127.0.0.1:0",
        Some(Box::new(move |options| {
            options.listening = Some(tx.clone());
        })),
    )
    .await;
    let addr = rx.recv().await.expect("bound address");

    // Envelopes (command, modal steps) and a DM to the approver.
    let t = world
        .request(ANN, "github", &["write"], "Ship the release fix", "4h")
        .await;
    world.dm_about(BOB, &t).await;

    let reply = http(addr, "GET", "/metrics", "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        reply.head
    );
    let text = reply.body;
    assert_eq!(
        sample(&text, "accessd_socket_connections"),
        Some(2.0),
        "{text}"
    );
    let envelopes = sample(&text, "accessd_envelopes_total{type=\"slash_commands\"}")
        .expect("slash command envelopes counted");
    assert!(envelopes >= 1.0, "{text}");
    assert!(
        sample(&text, "accessd_envelopes_total{type=\"interactive\"}").unwrap_or(0.0) >= 3.0,
        "three modal submissions: {text}"
    );
    let acks = sample(&text, "accessd_ack_seconds_count").expect("ack count");
    assert!(acks >= 4.0, "{text}");
    assert_eq!(
        sample(&text, "accessd_ack_seconds_bucket{le=\"+Inf\"}"),
        Some(acks),
        "{text}"
    );
    assert!(sample(&text, "accessd_ack_seconds_bucket{le=\"0.001\"}").is_some());
    assert!(sample(&text, "accessd_ack_seconds_sum").expect("ack sum") > 0.0);
    assert!(
        sample(
            &text,
            "accessd_slack_api_calls_total{method=\"chat.postMessage\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "accessd_tickets{status=\"pending\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "accessd_tickets{status=\"active\"}"),
        Some(0.0),
        "{text}"
    );
    for series in [
        "accessd_outbox_pending",
        "accessd_outbox_dead",
        "accessd_outbox_oldest_pending_age_seconds",
        "accessd_jobs_pending",
        "accessd_alerts_open{kind=\"new_app\"}",
        "accessd_provisioning_total{outcome=\"applied\"}",
    ] {
        assert!(sample(&text, series).is_some(), "{series} missing:\n{text}");
    }
    assert!(text.contains("# TYPE accessd_ack_seconds histogram\n"));
    world.stop().await;
}

#[tokio::test]
async fn a_429_from_slack_is_counted_as_rate_limited() {
    let series = "accessd_slack_api_rate_limited_total{method=\"auth.test\"}";
    // The registry is process-wide; compare with what it held before.
    let before = sample(
        &accessd::metrics::global().render(0, None, chrono::Utc::now()),
        series,
    )
    .unwrap_or(0.0);
    let fake = FakeSlack::start().await;
    fake.fail_next(
        "auth.test",
        1,
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = listening_daemon(&fake, dir.path()).await;
    healthz_becomes(addr, 200).await;

    let text = http(addr, "GET", "/metrics", "").await.body;
    assert_eq!(sample(&text, series), Some(before + 1.0), "{text}");
    assert!(
        sample(&text, "accessd_slack_api_calls_total{method=\"auth.test\"}").unwrap_or(0.0) >= 2.0,
        "the 429 and the retry are both calls: {text}"
    );
    daemon.stop().await.expect("clean stop");
}

#[tokio::test]
async fn only_get_healthz_and_metrics_are_served() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = listening_daemon(&fake, dir.path()).await;

    for path in ["/", "/nope", "/healthz/x", "/metricsx"] {
        assert_eq!(http(addr, "GET", path, "").await.status, 404, "{path}");
    }
    for (method, path) in [
        ("POST", "/metrics"),
        ("DELETE", "/healthz"),
        ("PUT", "/healthz"),
    ] {
        let reply = http(addr, method, path, "Content-Length: 0\r\n").await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert!(
            reply.head.to_ascii_lowercase().contains("allow: get"),
            "{}",
            reply.head
        );
    }
    // A query string does not change the route.
    assert_eq!(http(addr, "GET", "/metrics?x=1", "").await.status, 200);
    // Oversized request headers are refused, not buffered.
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{big}\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("closed in time");
    let answer = String::from_utf8_lossy(&raw);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    daemon.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_taken_port_is_a_start_up_error_naming_server_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_listening(&fake, dir.path(), 1, &addr.to_string(), "");
    let daemon = Daemon::start(config.clone(), fast_options(&config));
    match daemon.exit(WAIT).await {
        Err(err @ RunError::Listen { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("server.listen") && message.contains(&addr.to_string()),
                "{message}"
            );
        }
        other => panic!("expected a listen error, got {other:?}"),
    }
    assert!(
        fake.calls_to("auth.test").is_empty(),
        "the listener is bound before Slack is reached"
    );
}
