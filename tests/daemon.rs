//! The whole daemon (`accessd::run_with`) against the fake Slack, driven the
//! way a person uses Slack: type `/access`, open the Home tab, click a button
//! found by its text, fill the modal and submit.

mod support;

use std::time::Duration;

use accessd::RunError;
use serde_json::Value;
use support::daemon::{config, fast_options, Daemon};
use support::{Failure, FakeSlack, BOT_TOKEN};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn checks_the_bot_token_then_connects() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::connected(&fake, dir.path(), 2).await;
    let auth = fake.calls_to("auth.test");
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].token.as_deref(), Some(BOT_TOKEN));
    let first_open = &fake.calls_to("apps.connections.open")[0];
    assert!(
        auth[0].at <= first_open.at,
        "auth.test comes before the sockets"
    );
    daemon.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_refused_bot_token_stops_the_daemon_with_a_clear_error() {
    let fake = FakeSlack::start().await;
    fake.fail_next("auth.test", 1, Failure::Error("token_revoked"));
    let dir = tempfile::tempdir().unwrap();
    let config = config(&fake, dir.path(), 1, "");
    let daemon = Daemon::start(config.clone(), fast_options(&config));
    match daemon.exit(WAIT).await {
        Err(err @ RunError::BotToken(_)) => {
            let message = err.to_string();
            assert!(
                message.contains("token_revoked") && message.contains("SLACK_BOT_TOKEN"),
                "{message}"
            );
            assert!(!message.contains(BOT_TOKEN));
        }
        other => panic!("expected a bot token error, got {other:?}"),
    }
    assert!(fake.calls_to("apps.connections.open").is_empty());
}

#[tokio::test]
async fn waits_out_a_slack_outage_at_start() {
    let fake = FakeSlack::start().await;
    fake.fail_next("auth.test", 2, Failure::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::connected(&fake, dir.path(), 1).await;
    assert_eq!(fake.calls_to("auth.test").len(), 3);
    daemon.stop().await.expect("clean stop");
}

#[tokio::test]
async fn access_help_answers_ephemerally_in_the_ack() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::connected(&fake, dir.path(), 1).await;
    let id = fake.run_command("U1", "/access", "help");
    let ack = fake.wait_ack(&id, WAIT).await.expect("acked");
    let payload = ack.payload.expect("help comes in the ack");
    assert_eq!(payload["response_type"], "ephemeral");
    assert!(payload["text"]
        .as_str()
        .unwrap_or_default()
        .contains("/access <app>"));
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_actions_and_events_are_acked() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::connected(&fake, dir.path(), 1).await;
    let message: Value = serde_json::json!({
        "channel": support::GENERAL_CHANNEL,
        "ts": "1700000000.000100",
        "blocks": [{ "type": "actions", "block_id": "b", "elements": [
            { "type": "button", "action_id": "no_such_action", "text": { "type": "plain_text", "text": "Mystery" }, "value": "1" }
        ]}]
    });
    let click = fake.click("U1", &message, "Mystery");
    fake.wait_ack(&click, WAIT)
        .await
        .expect("unknown action acked");
    let mut mention: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/slack-fixtures/pysm_env_1.json"))
            .unwrap_or_else(|_| r#"{"envelope_id":"x","type":"events_api","accepts_response_payload":false,"payload":{"event_id":"Ev1","event":{"type":"app_mention"}}}"#.into()),
    )
    .unwrap();
    mention["envelope_id"] = "fixture-mention".into();
    fake.send_envelope(None, mention);
    fake.wait_ack("fixture-mention", WAIT)
        .await
        .expect("unsubscribed event acked");
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_stop_finishes_in_flight_work_and_closes_the_sockets() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::connected(&fake, dir.path(), 2).await;
    let conns = fake.live_connections();
    let started = std::time::Instant::now();
    daemon.stop().await.expect("clean stop");
    assert!(started.elapsed() < Duration::from_secs(10));
    for conn in conns {
        assert_eq!(
            fake.wait_closed(conn, WAIT).await,
            Some(support::ClosedBy::Client)
        );
    }
}
