//! The Socket Mode transport against the fake Slack, with a test handler whose
//! speed and answers each test controls: concurrency, ack payloads, the ack
//! deadline, dedupe across connections and restarts, refresh without a gap,
//! reconnects, dead sockets, garbage frames and fatal auth errors.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use accessd::slack::transport::{Envelope, EnvelopeHandler, Reply, Transport, TransportError};
use accessd::slack_api::SlackApi;
use accessd::store::Store;
use serde_json::json;
use support::daemon::{fast_transport, tokens};
use support::{payloads, Failure, FakeSlack};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(5);

/// Answers by the slash command's text: `slow` sleeps 1.5 s, `stuck` 10 s,
/// `echo` acks with a payload; records every envelope it handles.
#[derive(Default)]
struct TestHandler {
    handled: Mutex<Vec<String>>,
}

impl TestHandler {
    fn handled(&self) -> Vec<String> {
        self.handled.lock().unwrap().clone()
    }
    fn count(&self, envelope_id: &str) -> usize {
        self.handled()
            .iter()
            .filter(|id| *id == envelope_id)
            .count()
    }
}

impl EnvelopeHandler for TestHandler {
    async fn handle(&self, envelope: Envelope) -> Reply {
        self.handled
            .lock()
            .unwrap()
            .push(envelope.envelope_id.clone());
        let text = envelope
            .frame
            .pointer("/payload/text")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        match text {
            "slow" => tokio::time::sleep(Duration::from_millis(1500)).await,
            "stuck" => tokio::time::sleep(Duration::from_secs(10)).await,
            "echo" => {
                return Reply::payload(json!({ "response_type": "ephemeral", "text": "echo" }))
            }
            _ => {}
        }
        Reply::empty()
    }
}

struct Running {
    handler: Arc<TestHandler>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), TransportError>>,
    store: Store,
}

impl Running {
    async fn stop(self) -> Result<(), TransportError> {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("transport stops within 10 s")
            .expect("transport task does not panic");
        self.store.close().await;
        result
    }
}

fn start(fake: &FakeSlack, db: &std::path::Path, connections: usize) -> Running {
    start_with(fake, db, connections, |_| {})
}

fn start_with(
    fake: &FakeSlack,
    db: &std::path::Path,
    connections: usize,
    tweak: impl FnOnce(&mut accessd::slack::transport::TransportOptions),
) -> Running {
    let store = Store::open(db).expect("open store");
    let api =
        SlackApi::new(&fake.api_url(), &tokens(), Duration::from_secs(5)).expect("api client");
    let handler = Arc::new(TestHandler::default());
    let mut options = fast_transport(connections);
    tweak(&mut options);
    let transport = Transport::new(api, store.clone(), handler.clone(), options);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(transport.run(stopped));
    Running {
        handler,
        stop,
        task,
        store,
    }
}

#[tokio::test]
async fn opens_the_configured_connections_with_the_app_token_and_acks() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(&fake, &dir.path().join("a.db"), 2);
    let conns = fake.wait_for_connections(2, WAIT).await;
    assert_eq!(conns.len(), 2);
    let opens = fake.calls_to("apps.connections.open");
    assert_eq!(opens.len(), 2);
    assert!(opens
        .iter()
        .all(|c| c.token.as_deref() == Some(support::APP_TOKEN)));

    for conn in &conns {
        let id = fake.send_envelope(Some(*conn), fake.slash_command("U1", "/access", "echo"));
        let ack = fake.wait_ack(&id, WAIT).await.expect("acked");
        assert_eq!(ack.conn, *conn, "acked on the socket it came from");
        assert_eq!(
            ack.payload,
            Some(json!({ "response_type": "ephemeral", "text": "echo" }))
        );
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_handler_does_not_delay_another_envelopes_ack() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(&fake, &dir.path().join("a.db"), 1);
    let conn = fake.wait_for_connections(1, WAIT).await[0];

    let slow = fake.send_envelope(Some(conn), fake.slash_command("U1", "/access", "slow"));
    let fast = fake.send_envelope(Some(conn), fake.slash_command("U2", "/access", "hi"));
    let fast_ack = fake
        .wait_ack(&fast, WAIT)
        .await
        .expect("fast envelope acked");
    assert!(
        fake.acks().iter().all(|a| a.envelope_id != slow),
        "the fast envelope was acked while the slow one was still being handled"
    );
    let slow_ack = fake
        .wait_ack(&slow, WAIT)
        .await
        .expect("slow envelope acked too");
    assert!(fast_ack.at < slow_ack.at);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_handler_past_the_ack_deadline_is_acked_empty_in_time() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(&fake, &dir.path().join("a.db"), 1, |o| {
        o.ack_deadline = Duration::from_millis(500)
    });
    let conn = fake.wait_for_connections(1, WAIT).await[0];
    let id = fake.send_envelope(Some(conn), fake.slash_command("U1", "/access", "stuck"));
    let ack = fake
        .wait_ack(&id, WAIT)
        .await
        .expect("acked before the handler finished");
    assert_eq!(ack.payload, None);
    // Slack's protocol deadline: an ack after 3 s is a failed interaction.
    assert!(
        ack.latency < Duration::from_secs(3),
        "ack took {:?}",
        ack.latency
    );
    let _ = running.stop.send(true);
}

#[tokio::test]
async fn a_redelivered_envelope_on_another_connection_is_handled_once() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(&fake, &dir.path().join("a.db"), 2);
    let conns = fake.wait_for_connections(2, WAIT).await;

    let envelope = fake.slash_command("U1", "/access", "slow");
    let id = fake.send_envelope(Some(conns[0]), envelope.clone());
    // The copy arrives while the first is still in its handler.
    fake.send_envelope(Some(conns[1]), envelope);
    fake.wait_until(WAIT, |f| {
        (f.acks().iter().filter(|a| a.envelope_id == id).count() == 2).then_some(())
    })
    .await
    .expect("both copies acked");
    assert_eq!(running.handler.count(&id), 1);

    // Slack's retry of an event comes with a new envelope id but the same event_id.
    let event = fake.app_home_opened("U1");
    let first = fake.send_envelope(Some(conns[0]), event.clone());
    fake.wait_ack(&first, WAIT).await.expect("event acked");
    let retry = fake.send_envelope(Some(conns[1]), payloads::redelivery(&event, 1, "timeout"));
    fake.wait_ack(&retry, WAIT).await.expect("retry acked");
    assert_eq!(running.handler.count(&first), 1);
    assert_eq!(
        running.handler.count(&retry),
        0,
        "retry of a handled event is not handled again"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn dedupe_survives_a_restart() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let envelope = fake.slash_command("U1", "/access", "hi");

    let first = start(&fake, &db, 1);
    let conn = fake.wait_for_connections(1, WAIT).await[0];
    let id = fake.send_envelope(Some(conn), envelope.clone());
    fake.wait_ack(&id, WAIT).await.expect("acked");
    assert_eq!(first.handler.count(&id), 1);
    // Stopping drains in-flight envelopes, seen-marks included.
    first.stop().await.unwrap();

    let second = start(&fake, &db, 1);
    let fresh = fake
        .wait_until(WAIT, |f| {
            f.live_connections().into_iter().find(|c| *c != conn)
        })
        .await
        .expect("the restarted transport connects");
    let before = fake.acks().len();
    fake.send_envelope(Some(fresh), envelope);
    fake.wait_until(WAIT, |f| (f.acks().len() > before).then_some(()))
        .await
        .expect("redelivery acked");
    assert!(
        second.handler.handled().is_empty(),
        "a handled envelope is not run again after a restart"
    );
    second.stop().await.unwrap();
}

#[tokio::test]
async fn refresh_opens_the_new_connection_before_closing_the_old_one() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(&fake, &dir.path().join("a.db"), 1);
    let old = fake.wait_for_connections(1, WAIT).await[0];

    fake.disconnect(old, "refresh_requested");
    // Slack may still deliver on the old socket right after `disconnect`.
    let late = fake.send_envelope(Some(old), fake.slash_command("U1", "/access", "echo"));
    let ack = fake
        .wait_ack(&late, WAIT)
        .await
        .expect("envelope after disconnect still handled");
    assert_eq!(ack.conn, old);
    fake.wait_closed(old, WAIT)
        .await
        .expect("old socket closed by the client");

    let conns = fake.connections();
    assert_eq!(conns.len(), 2);
    let (old_info, new_info) = (&conns[0], &conns[1]);
    assert!(new_info.is_live());
    assert_eq!(old_info.closed_by, Some(support::ClosedBy::Client));
    assert!(
        new_info.opened_at < old_info.closed_at.expect("closed"),
        "the replacement was up before the old socket closed: no gap"
    );
    let next = fake.send_envelope(Some(new_info.id), fake.slash_command("U1", "/access", "hi"));
    fake.wait_ack(&next, WAIT).await.expect("new socket works");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn reconnects_after_an_abrupt_drop_and_a_dead_socket() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(&fake, &dir.path().join("a.db"), 1);
    let first = fake.wait_for_connections(1, WAIT).await[0];

    fake.drop_abruptly(first);
    let second = fake
        .wait_until(WAIT, |f| {
            f.live_connections().into_iter().find(|c| *c != first)
        })
        .await
        .expect("reconnected after the drop");
    let id = fake.send_envelope(Some(second), fake.slash_command("U1", "/access", "hi"));
    fake.wait_ack(&id, WAIT)
        .await
        .expect("acked on the new socket");

    // A socket that goes silent (no pongs) is declared dead and replaced.
    fake.stop_responding(second);
    let third = fake
        .wait_until(WAIT, |f| {
            f.live_connections()
                .into_iter()
                .find(|c| *c != first && *c != second)
        })
        .await
        .expect("replaced the dead socket");
    let id = fake.send_envelope(Some(third), fake.slash_command("U1", "/access", "hi"));
    fake.wait_ack(&id, WAIT)
        .await
        .expect("acked on the replacement");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn garbage_frames_are_survived_and_acked_when_they_carry_an_envelope_id() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(&fake, &dir.path().join("a.db"), 1);
    let conn = fake.wait_for_connections(1, WAIT).await[0];

    fake.send_raw(Some(conn), "this is not json");
    fake.send_raw(
        Some(conn),
        r#"{"envelope_id":"broken-1","type":"interactive","payload":{"#,
    );
    fake.send_raw(Some(conn), r#"{"type":"no_envelope_id_here"}"#);
    fake.send_binary(Some(conn), vec![0, 159, 146, 150]);
    let unknown = fake.send_envelope(
        Some(conn),
        json!({ "type": "brand_new_type", "envelope_id": "unknown-1", "payload": {}, "accepts_response_payload": false }),
    );
    fake.wait_ack("broken-1", WAIT)
        .await
        .expect("truncated frame with an envelope id is acked");
    fake.wait_ack(&unknown, WAIT)
        .await
        .expect("unknown envelope type is acked");

    let id = fake.send_envelope(Some(conn), fake.slash_command("U1", "/access", "echo"));
    let ack = fake
        .wait_ack(&id, WAIT)
        .await
        .expect("still serving after garbage");
    assert_eq!(ack.conn, conn, "the garbage did not cost the connection");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_app_token_stops_the_transport_instead_of_looping() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    fake.fail_next("apps.connections.open", 100, Failure::Error("invalid_auth"));
    let running = start(&fake, &dir.path().join("a.db"), 2);
    let result = tokio::time::timeout(WAIT, running.task)
        .await
        .expect("stops by itself")
        .unwrap();
    match result {
        Err(TransportError::Fatal(msg)) => {
            assert!(msg.contains("invalid_auth"), "{msg}");
            assert!(
                !msg.contains(support::APP_TOKEN),
                "token leaked into: {msg}"
            );
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    assert!(
        fake.calls_to("apps.connections.open").len() <= 2,
        "no retry loop on a refused token"
    );
}

#[tokio::test]
async fn transient_open_failures_are_retried_with_backoff() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    fake.fail_next("apps.connections.open", 2, Failure::Status(503));
    fake.fail_next(
        "apps.connections.open",
        1,
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    let running = start(&fake, &dir.path().join("a.db"), 1);
    fake.wait_for_connections(1, WAIT).await;
    assert!(fake.calls_to("apps.connections.open").len() >= 4);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn link_disabled_is_fatal() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(&fake, &dir.path().join("a.db"), 1);
    let conn = fake.wait_for_connections(1, WAIT).await[0];
    fake.disconnect(conn, "link_disabled");
    let result = tokio::time::timeout(WAIT, running.task)
        .await
        .expect("stops by itself")
        .unwrap();
    assert!(
        matches!(result, Err(TransportError::Fatal(ref m)) if m.contains("Socket Mode")),
        "{result:?}"
    );
}
