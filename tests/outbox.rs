//! The outbox against the fake Slack: messages survive restarts, keep their
//! order per channel, wait out `Retry-After` on 429, retry 5xx, and are kept
//! (not retried) when Slack refuses them for good.

mod support;

use std::time::Duration;

use accessd::outbox::{Outbox, OutboxOptions, OutboxWorker};
use accessd::slack_api::SlackApi;
use accessd::store::{NewMessage, Store};
use serde_json::json;
use support::daemon::tokens;
use support::{Failure, FakeSlack};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(10);

fn message(channel: &str, text: &str) -> NewMessage {
    NewMessage {
        method: "chat.postMessage".into(),
        channel: channel.into(),
        payload: json!({ "channel": channel, "text": text }),
        dedupe_key: None,
        on_sent: None,
        priority: 0,
    }
}

fn start_worker(
    fake: &FakeSlack,
    outbox: &Outbox,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let api = SlackApi::new(&fake.api_url(), &tokens(), Duration::from_secs(5)).unwrap();
    let options = OutboxOptions {
        per_channel_interval: Duration::from_millis(20),
        poll_interval: Duration::from_millis(100),
        ..OutboxOptions::default()
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(OutboxWorker::new(outbox, api, options).run(stopped));
    (stop, task)
}

/// Texts Slack accepted for `channel`, in the order it accepted them.
fn delivered(fake: &FakeSlack, channel: &str) -> Vec<String> {
    fake.calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.params["channel"] == channel && c.response["ok"] == true)
        .filter_map(|c| c.params["text"].as_str().map(str::to_string))
        .collect()
}

/// Waits until nothing is pending, then returns the outbox's counts.
async fn settled(store: &Store) -> accessd::store::OutboxStats {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = store.outbox_stats().await.unwrap();
        if stats.pending == 0 || std::time::Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn users(fake: &FakeSlack) {
    fake.add_user("U1", "ann@example.com", "Ann");
    fake.add_user("U2", "bob@example.com", "Bob");
}

#[tokio::test]
async fn a_rate_limited_message_waits_for_retry_after_and_keeps_channel_order() {
    let fake = FakeSlack::start().await;
    users(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    let outbox = Outbox::new(store.clone());
    fake.fail_next(
        "chat.postMessage",
        1,
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    for text in ["one", "two", "three"] {
        outbox.send(message("U1", text)).await.unwrap();
    }
    let (stop, task) = start_worker(&fake, &outbox);

    fake.wait_until(WAIT, |f| (delivered(f, "U1").len() == 3).then_some(()))
        .await
        .expect("all delivered");
    assert_eq!(delivered(&fake, "U1"), ["one", "two", "three"]);
    let stats = settled(&store).await;
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts[0].status, 429);
    let first_ok = posts.iter().find(|c| c.status == 200).unwrap();
    // Retry-After is part of Slack's protocol: sending earlier earns another 429.
    assert!(first_ok.at.duration_since(posts[0].at) >= Duration::from_millis(950));
    assert_eq!((stats.pending, stats.dead), (0, 0));
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Slack allows about one message a second per channel: sends to one channel
/// start at least `per_channel_interval` apart, and a busy channel does not
/// hold up the others.
#[tokio::test]
async fn sends_to_one_channel_are_paced_and_other_channels_are_not_held_up() {
    let fake = FakeSlack::start().await;
    users(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    let outbox = Outbox::new(store.clone());
    for i in 0..4 {
        outbox
            .send(message("U1", &format!("u1-{i}")))
            .await
            .unwrap();
    }
    outbox.send(message("U2", "u2")).await.unwrap();
    let api = SlackApi::new(&fake.api_url(), &tokens(), Duration::from_secs(5)).unwrap();
    let interval = Duration::from_millis(300);
    let options = OutboxOptions {
        per_channel_interval: interval,
        poll_interval: Duration::from_millis(100),
        ..OutboxOptions::default()
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(OutboxWorker::new(&outbox, api, options).run(stopped));

    fake.wait_until(WAIT, |f| (delivered(f, "U1").len() == 4).then_some(()))
        .await
        .expect("all delivered");
    assert_eq!(delivered(&fake, "U1"), ["u1-0", "u1-1", "u1-2", "u1-3"]);
    let posts = fake.calls_to("chat.postMessage");
    let c1: Vec<_> = posts
        .iter()
        .filter(|c| c.params["channel"] == "U1")
        .collect();
    for pair in c1.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        // The fake stamps arrival; a few ms of jitter either side of the send.
        assert!(
            gap >= interval - Duration::from_millis(20),
            "sent {gap:?} apart"
        );
    }
    let c2 = posts.iter().find(|c| c.params["channel"] == "U2").unwrap();
    assert!(c2.at < c1[1].at, "U2 waited behind U1's pacing");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn server_errors_are_retried_and_refused_messages_are_kept_dead() {
    let fake = FakeSlack::start().await;
    users(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    let outbox = Outbox::new(store.clone());
    fake.fail_next("chat.postMessage", 2, Failure::Status(503));
    outbox
        .send(message("U1", "retried after 503s"))
        .await
        .unwrap();
    outbox.send(message("C_NOPE", "to nowhere")).await.unwrap();
    outbox.send(message("U2", "independent")).await.unwrap();
    let (stop, task) = start_worker(&fake, &outbox);

    let stats = settled(&store).await;
    assert_eq!(delivered(&fake, "U1"), ["retried after 503s"]);
    assert_eq!(delivered(&fake, "U2"), ["independent"]);
    assert_eq!(stats.dead, 1, "channel_not_found is permanent");
    assert_eq!(stats.pending, 0);
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts.iter().filter(|c| c.status == 503).count(), 2);
    let refusals = posts
        .iter()
        .filter(|c| c.response["error"] == "channel_not_found")
        .count();
    assert_eq!(refusals, 1, "a refused message is not retried");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn queued_messages_survive_a_restart_and_dedupe_keys_hold() {
    let fake = FakeSlack::start().await;
    users(&fake);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    {
        let store = Store::open(&db).unwrap();
        let outbox = Outbox::new(store.clone());
        let mut keyed = message("U1", "only once");
        keyed.dedupe_key = Some("ticket-1-created".into());
        assert!(outbox.send(keyed.clone()).await.unwrap().is_some());
        assert!(
            outbox.send(keyed).await.unwrap().is_none(),
            "same dedupe key queued once"
        );
        store.close().await;
    }
    let store = Store::open(&db).unwrap();
    let outbox = Outbox::new(store.clone());
    let (stop, task) = start_worker(&fake, &outbox);
    fake.wait_until(WAIT, |f| (delivered(f, "U1").len() == 1).then_some(()))
        .await
        .expect("delivered after restart");
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(delivered(&fake, "U1"), ["only once"]);
}

/// An alert queued behind a flood of ordinary DMs (more than one scan of the
/// outbox) is delivered first.
#[tokio::test]
async fn an_alert_goes_ahead_of_a_flood_of_ordinary_messages() {
    let fake = FakeSlack::start().await;
    users(&fake);
    fake.add_channel("C0SECALERT", "sec-alerts");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    let outbox = Outbox::new(store.clone());
    for i in 0..600 {
        outbox
            .send(message("U1", &format!("dm-{i}")))
            .await
            .unwrap();
    }
    outbox
        .send(message("C0SECALERT", "break-glass").as_alert())
        .await
        .unwrap();
    let (stop, task) = start_worker(&fake, &outbox);
    fake.wait_until(WAIT, |f| {
        (delivered(f, "C0SECALERT") == ["break-glass"]).then_some(())
    })
    .await
    .expect("the alert is delivered");
    let before_it = fake
        .calls_to("chat.postMessage")
        .into_iter()
        .take_while(|c| c.params["channel"] != "C0SECALERT")
        .count();
    assert!(before_it <= 1, "{before_it} DMs went before the alert");
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Slack limits chat.postMessage per channel: a 429 on one person's DM
/// pauses that DM only, never the alert channel.
#[tokio::test]
async fn a_429_on_one_channel_does_not_hold_up_another() {
    let fake = FakeSlack::start().await;
    users(&fake);
    fake.add_channel("C0SECALERT", "sec-alerts");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    let outbox = Outbox::new(store.clone());
    fake.fail_next(
        "chat.postMessage",
        1,
        Failure::RateLimited {
            retry_after_secs: 60,
        },
    );
    outbox.send(message("U1", "dm")).await.unwrap();
    let (stop, task) = start_worker(&fake, &outbox);
    // The worker has taken the 429 in (the DM is queued for a retry).
    let deadline = std::time::Instant::now() + WAIT;
    while store.outbox_pending(10).await.unwrap()[0].attempts == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the DM was never rate-limited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    outbox
        .send(message("C0SECALERT", "offboarded but active"))
        .await
        .unwrap();
    // The DM waits out its minute; the alert does not wait for it.
    fake.wait_until(WAIT, |f| {
        (delivered(f, "C0SECALERT") == ["offboarded but active"]).then_some(())
    })
    .await
    .expect("the alert is delivered while the DM waits");
    assert!(delivered(&fake, "U1").is_empty());
    stop.send(true).unwrap();
    task.await.unwrap();
}
