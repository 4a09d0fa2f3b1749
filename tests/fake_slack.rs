//! Self-tests of the fake Slack in tests/support/: its envelopes and responses are what
//! slack-morphism (and the real Slack fixtures) say they should be.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/slack-fixtures"
    ));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("notice: {} absent; fixture checks skipped", dir.display());
        None
    }
}

fn fixture(dir: &std::path::Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// slack-morphism 2.31.1 keeps its `models::socket_mode` types unnameable (the crate's
/// client-side `socket_mode` module shadows them), so this mirrors `SlackSocketModeEvent`
/// field for field over slack-morphism's public payload types. The listener test below runs
/// slack-morphism's own Socket Mode client, which parses with the real type.
#[allow(clippy::large_enum_variant)] // as the original
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum SmEvent {
    #[serde(rename = "hello")]
    Hello(SmHello),
    #[serde(rename = "disconnect")]
    Disconnect(SmDisconnect),
    #[serde(rename = "interactive")]
    Interactive(SmEnvelope<SlackInteractionEvent>),
    #[serde(rename = "events_api")]
    EventsApi(SmEnvelope<SlackPushEventCallback>),
    #[serde(rename = "slash_commands")]
    SlashCommands(SmEnvelope<SlackCommandEvent>),
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // mirrored for shape, not all fields asserted
struct SmEnvelope<P> {
    envelope_id: String,
    accepts_response_payload: bool,
    payload: P,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // mirrored for shape, not all fields asserted
struct SmHello {
    connection_info: SmConnectionInfo,
    num_connections: u32,
    debug_info: SmDebugInfo,
}

#[derive(Debug, Deserialize)]
struct SmConnectionInfo {
    app_id: SlackAppId,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // mirrored for shape, not all fields asserted
struct SmDebugInfo {
    host: String,
    started: Option<String>,
    build_number: Option<u64>,
    approximate_connection_time: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // mirrored for shape, not all fields asserted
struct SmDisconnect {
    reason: String,
    debug_info: SmDebugInfo,
}

fn parse_event(v: &Value) -> SmEvent {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not a SmEvent: {e}\n{v:#}"))
}

/// Every key `fixture` has (recursively through objects) is in `ours` too.
fn assert_has_keys(fixture: &Value, ours: &Value, path: &str) {
    let (Some(f), Some(o)) = (fixture.as_object(), ours.as_object()) else {
        return;
    };
    for (k, fv) in f {
        let p = format!("{path}/{k}");
        let ov = o
            .get(k)
            .unwrap_or_else(|| panic!("fake lacks {p} that Slack sends"));
        // `values` maps hold user input (data, not shape).
        if fv.is_object() && !ov.is_null() && k != "values" {
            assert_has_keys(fv, ov, &p);
        }
    }
}

fn client(fake: &FakeSlack) -> SlackClient<SlackClientHyperHttpsConnector> {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    SlackClient::new(
        SlackClientHyperConnector::with_connector(https).with_slack_api_url(&fake.api_url()),
    )
}

fn bot_token() -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue::new(BOT_TOKEN.into()))
}

fn app_token() -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue::new(APP_TOKEN.into()))
}

fn api_error(e: SlackClientError) -> String {
    match e {
        SlackClientError::ApiError(a) => a.code,
        other => panic!("expected a Slack API error, got {other:?}"),
    }
}

/// Minimal HTTP/1.1 exchange, to send what slack-morphism never sends (form, GET+token).
async fn raw_http(fake: &FakeSlack, request: String) -> (u16, String, Value) {
    let url = url::Url::parse(&fake.api_url()).unwrap();
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", url.port().unwrap()))
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_string(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn blocks(v: Value) -> Vec<SlackBlock> {
    serde_json::from_value(v).unwrap()
}

#[test]
fn fixtures_deserialize_into_slack_morphism() {
    let Some(dir) = fixtures_dir() else { return };
    let ev = |n: &str| parse_event(&fixture(&dir, n));
    assert!(matches!(ev("pysm_env_0.json"), SmEvent::SlashCommands(_)));
    for n in ["pysm_env_1.json", "pysm_env_3.json"] {
        match ev(n) {
            SmEvent::EventsApi(e) => assert!(
                !matches!(e.payload.event, SlackEventCallbackBody::Unknown(_)),
                "{n} fell through to Unknown"
            ),
            other => panic!("{n}: {other:?}"),
        }
    }
    assert!(matches!(
        ev("pysm_env_2.json"),
        SmEvent::Interactive(SmEnvelope {
            payload: SlackInteractionEvent::Shortcut(_),
            ..
        })
    ));
    assert!(matches!(
        ev("pysm_env_4.json"),
        SmEvent::Interactive(SmEnvelope {
            payload: SlackInteractionEvent::BlockActions(_),
            ..
        })
    ));
    assert!(matches!(ev("pysm_hello.json"), SmEvent::Hello(_)));
    assert!(matches!(ev("pysm_disconnect.json"), SmEvent::Disconnect(_)));
    let vs: SlackInteractionEvent =
        serde_json::from_value(fixture(&dir, "bolt_view_submission.json")).unwrap();
    assert!(matches!(vs, SlackInteractionEvent::ViewSubmission(_)));
    // The README's caveat, kept honest: `state: {}` without `values` is rejected.
    assert!(serde_json::from_value::<SlackInteractionEvent>(fixture(
        &dir,
        "bolt_view_submission_response_urls.json"
    ))
    .is_err());

    // The spec's Web API examples fit slack-morphism's response types.
    fn ok<T: serde::de::DeserializeOwned>(dir: &std::path::Path, n: &str) {
        serde_json::from_value::<T>(fixture(dir, n)).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    ok::<SlackApiAuthTestResponse>(&dir, "spec_auth.test.json");
    ok::<SlackApiChatPostMessageResponse>(&dir, "spec_chat.postMessage.json");
    ok::<SlackApiChatUpdateResponse>(&dir, "spec_chat.update.json");
    ok::<SlackApiConversationsOpenResponse<SlackBasicChannelInfo>>(
        &dir,
        "spec_conversations.open.json",
    );
    ok::<SlackApiUsersInfoResponse>(&dir, "spec_users.info.json");
    ok::<SlackApiUsersLookupByEmailResponse>(&dir, "spec_users.lookupByEmail.json");
    ok::<SlackApiUsersListResponse>(&dir, "spec_users.list.json");
    ok::<SlackApiViewsOpenResponse>(&dir, "spec_views.open.json");
    ok::<SlackApiViewsPushResponse>(&dir, "spec_views.push.json");
    ok::<SlackApiViewsUpdateResponse>(&dir, "spec_views.update.json");
    ok::<SlackApiViewsPublishResponse>(&dir, "spec_views.publish.json");
}

#[tokio::test]
async fn builders_deserialize_and_carry_every_field_slack_sends() {
    let fake = FakeSlack::start().await;
    fake.add_user("U1", "ada@example.com", "Ada Lovelace");
    let session_client = client(&fake);
    let bot = bot_token();
    let session = session_client.open_session(&bot);

    // slash command
    let cmd = fake.slash_command("U1", "/access", "github");
    match parse_event(&cmd) {
        SmEvent::SlashCommands(c) => {
            assert!(c.accepts_response_payload);
            assert_eq!(c.payload.command.0, "/access");
            assert_eq!(c.payload.text.as_deref(), Some("github"));
            assert_eq!(c.payload.user_id.0, "U1");
            assert!(c
                .payload
                .response_url
                .0
                .as_str()
                .starts_with(&fake.hooks_base()));
        }
        other => panic!("{other:?}"),
    }

    // app_home_opened, before and after a Home view exists
    let home = fake.app_home_opened("U1");
    let check_home = |env: &Value, with_view: bool| match parse_event(env) {
        SmEvent::EventsApi(e) => {
            assert!(!e.accepts_response_payload);
            match e.payload.event {
                SlackEventCallbackBody::AppHomeOpened(h) => {
                    assert_eq!(h.user.0, "U1");
                    assert_eq!(h.tab.as_deref(), Some("home"));
                    assert_eq!(h.view.is_some(), with_view);
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    };
    check_home(&home, false);
    let view = SlackView::Home(SlackHomeView::new(blocks(json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": "Hi"},
         "accessory": {"type": "button", "action_id": "req", "value": "new",
                       "text": {"type": "plain_text", "text": "Request access"}}}
    ]))));
    session
        .views_publish(&SlackApiViewsPublishRequest::new("U1".into(), view))
        .await
        .unwrap();
    check_home(&fake.app_home_opened("U1"), true);

    // block_actions on a view and on a message
    let home_view = fake.home_view("U1").unwrap();
    let button = find_button(&home_view, "Request access").unwrap();
    assert_eq!(
        (button.action_id.as_str(), button.value.as_deref()),
        ("req", Some("new"))
    );
    let click = fake.block_actions("U1", &home_view, &button);
    match parse_event(&click) {
        SmEvent::Interactive(SmEnvelope {
            payload: SlackInteractionEvent::BlockActions(b),
            ..
        }) => {
            assert!(matches!(
                b.container,
                SlackInteractionActionContainer::View(_)
            ));
            assert!(matches!(b.view, Some(SlackView::Home(_))));
            assert_eq!(b.actions.unwrap()[0].action_id.0, "req");
        }
        other => panic!("{other:?}"),
    }
    let posted = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "U1".into(),
            SlackMessageContent::new()
                .with_text("approve?".into())
                .with_blocks(blocks(json!([
                    {"type": "actions", "block_id": "dec", "elements": [
                        {"type": "button", "action_id": "approve", "value": "t1",
                         "text": {"type": "plain_text", "text": "Approve"}},
                        {"type": "button", "action_id": "reject", "value": "t1",
                         "text": {"type": "plain_text", "text": "Reject"}}]}
                ]))),
        ))
        .await
        .unwrap();
    let msg = fake.last_message_to("U1").unwrap();
    let msg_click = fake.block_actions("U1", &msg, &find_button(&msg, "Reject").unwrap());
    match parse_event(&msg_click) {
        SmEvent::Interactive(SmEnvelope {
            payload: SlackInteractionEvent::BlockActions(b),
            ..
        }) => {
            match b.container {
                SlackInteractionActionContainer::Message(m) => {
                    assert_eq!(m.message_ts, posted.ts);
                    assert_eq!(m.channel_id.as_ref(), Some(&posted.channel));
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(b.actions.unwrap()[0].action_id.0, "reject");
            assert!(b.response_url.is_some() && b.message.is_some());
        }
        other => panic!("{other:?}"),
    }

    // view_submission of a modal the bot opened
    let trigger = fake.issue_trigger("U1");
    let modal = SlackView::Modal(
        SlackModalView::new(
            "Request".into(),
            blocks(json!([{"type": "input", "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "text"}}])),
        )
        .with_submit("Submit".into())
        .with_callback_id("request".into())
        .with_private_metadata("42".into()),
    );
    session
        .views_open(&SlackApiViewsOpenRequest::new(trigger.into(), modal))
        .await
        .unwrap();
    let stored = fake.last_modal("U1").unwrap();
    let values = state_values(&[("reason", "text", plain_text_value("need it"))]);
    let sub = fake.view_submission("U1", &stored, values);
    match parse_event(&sub) {
        SmEvent::Interactive(SmEnvelope {
            accepts_response_payload,
            payload: SlackInteractionEvent::ViewSubmission(v),
            ..
        }) => {
            assert!(accepts_response_payload);
            assert_eq!(v.view.state_params.id.0, stored["id"].as_str().unwrap());
            let state = v.view.state_params.state.unwrap();
            let reason = &state.values[&SlackBlockId::new("reason".into())]
                [&SlackActionId::new("text".into())];
            assert_eq!(reason.value.as_deref(), Some("need it"));
            match v.view.view {
                SlackView::Modal(m) => {
                    assert_eq!(m.private_metadata.as_deref(), Some("42"));
                    assert_eq!(m.callback_id.map(|c| c.0).as_deref(), Some("request"));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }

    // Field-for-field against the real payloads.
    let Some(dir) = fixtures_dir() else { return };
    assert_has_keys(&fixture(&dir, "pysm_env_0.json"), &cmd, "slash_command");
    let mut events_fixture = fixture(&dir, "pysm_env_3.json");
    events_fixture["payload"]["event"] = json!({}); // different event type
    assert_has_keys(&events_fixture, &home, "app_home_opened");
    let modal_click = fake.block_actions("U1", &stored, &button);
    parse_event(&modal_click);
    assert_has_keys(
        &fixture(&dir, "pysm_env_4.json"),
        &modal_click,
        "block_actions(modal)",
    );
    let mut bolt = fixture(&dir, "bolt_view_submission.json");
    // the fixture is an enterprise install; ours is a plain workspace
    for k in ["enterprise_id", "enterprise_name"] {
        bolt["team"].as_object_mut().unwrap().remove(k);
    }
    assert_has_keys(&bolt, &sub["payload"], "view_submission");
    let mut published = fixture(&dir, "spec_views.publish.json")["view"].clone();
    published.as_object_mut().unwrap().remove("blocks");
    assert_has_keys(&published, &home_view, "stored home view");
}

#[tokio::test]
async fn web_api_methods_answer_slack_morphism() {
    let fake = FakeSlack::start().await;
    fake.add_user("U1", "ada@example.com", "Ada Lovelace");
    fake.add_user("U2", "bob@example.com", "Bob");
    let c = client(&fake);
    let bot = bot_token();
    let s = c.open_session(&bot);

    let auth = s.auth_test().await.unwrap();
    assert_eq!(auth.user_id.0, BOT_USER_ID);
    assert_eq!(auth.team_id.0, TEAM_ID);
    assert_eq!(auth.bot_id.map(|b| b.0).as_deref(), Some(BOT_ID));

    let opened = s
        .conversations_open(&SlackApiConversationsOpenRequest::new().with_users(vec!["U1".into()]))
        .await
        .unwrap();
    assert!(opened.channel.id.0.starts_with('D'));
    let again = s
        .conversations_open(&SlackApiConversationsOpenRequest::new().with_users(vec!["U1".into()]))
        .await
        .unwrap();
    assert_eq!(opened.channel.id, again.channel.id, "DM id is stable");
    assert_eq!(fake.dm_channel("U1"), opened.channel.id.0);

    let first = s
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "U1".into(),
            SlackMessageContent::new().with_text("one".into()),
        ))
        .await
        .unwrap();
    let second = s
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            opened.channel.id.clone(),
            SlackMessageContent::new().with_text("two".into()),
        ))
        .await
        .unwrap();
    assert_eq!(
        first.channel, opened.channel.id,
        "posting to a user id lands in the DM"
    );
    assert!(second.ts.0.parse::<f64>().unwrap() > first.ts.0.parse::<f64>().unwrap());
    assert_eq!(first.message.content.text.as_deref(), Some("one"));
    let err = s
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "CNOPE".into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), "channel_not_found");

    let updated = s
        .chat_update(&SlackApiChatUpdateRequest::new(
            first.channel.clone(),
            SlackMessageContent::new().with_text("one, edited".into()),
            first.ts.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(updated.ts, first.ts);
    let texts: Vec<String> = fake
        .messages_to("U1")
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["one, edited", "two"]);

    s.chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
        GENERAL_CHANNEL.into(),
        "U2".into(),
        SlackMessageContent::new().with_text("only you".into()),
    ))
    .await
    .unwrap();
    assert_eq!(fake.ephemerals_to("U2")[0]["text"], "only you");
    let eph = fake.calls_to("chat.postEphemeral");
    assert!(eph[0].response["message_ts"].is_string());

    s.chat_delete(&SlackApiChatDeleteRequest::new(
        second.channel.clone(),
        second.ts.clone(),
    ))
    .await
    .unwrap();
    assert_eq!(fake.messages_to("U1").len(), 1);

    let home = SlackView::Home(SlackHomeView::new(blocks(json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": "v1"}}]))));
    let p1 = s
        .views_publish(&SlackApiViewsPublishRequest::new("U1".into(), home.clone()))
        .await
        .unwrap();
    let p2 = s
        .views_publish(
            &SlackApiViewsPublishRequest::new("U1".into(), home)
                .with_hash(p1.view.state_params.hash.clone()),
        )
        .await
        .unwrap();
    assert_ne!(p1.view.state_params.hash, p2.view.state_params.hash);
    assert_eq!(
        fake.home_view("U1").unwrap()["hash"],
        p2.view.state_params.hash.as_str()
    );
    let stale = s
        .views_publish(
            &SlackApiViewsPublishRequest::new(
                "U1".into(),
                SlackView::Home(SlackHomeView::new(vec![])),
            )
            .with_hash(p1.view.state_params.hash.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(stale), "hash_conflict");

    let info = s
        .users_info(&SlackApiUsersInfoRequest::new("U1".into()))
        .await
        .unwrap();
    assert_eq!(info.user.real_name.as_deref(), Some("Ada Lovelace"));
    let by_mail = s
        .users_lookup_by_email(&SlackApiUsersLookupByEmailRequest::new(EmailAddress(
            "BOB@example.com".into(),
        )))
        .await
        .unwrap();
    assert_eq!(by_mail.user.id.0, "U2");
    let missing = s
        .users_lookup_by_email(&SlackApiUsersLookupByEmailRequest::new(EmailAddress(
            "nobody@example.com".into(),
        )))
        .await
        .unwrap_err();
    assert_eq!(api_error(missing), "users_not_found");
    let missing = s
        .users_info(&SlackApiUsersInfoRequest::new("U404".into()))
        .await
        .unwrap_err();
    assert_eq!(api_error(missing), "user_not_found");
    let page = s
        .users_list(&SlackApiUsersListRequest::new().with_limit(2))
        .await
        .unwrap();
    assert_eq!(page.members.len(), 2);
    let cursor = page.response_metadata.unwrap().next_cursor.unwrap();
    let rest = s
        .users_list(&SlackApiUsersListRequest::new().with_cursor(cursor))
        .await
        .unwrap();
    assert_eq!(rest.members.len(), 1, "UBOT, U1, U2");

    // How slack-morphism calls each method (printed for the record, asserted where it matters).
    let mut seen = std::collections::BTreeMap::new();
    for call in fake.calls() {
        seen.insert(
            call.method.clone(),
            format!("{} {}", call.verb, call.encoding),
        );
        assert_eq!(call.token.as_deref(), Some(BOT_TOKEN));
    }
    println!("slack-morphism verbs: {seen:#?}");
    assert_eq!(seen["users.info"], "GET query");
    assert_eq!(seen["chat.postMessage"], "POST json");
}

#[tokio::test]
async fn raw_http_encodings_tokens_and_errors() {
    let fake = FakeSlack::start().await;
    fake.add_user("U1", "ada@example.com", "Ada");
    let form_body = format!(
        "token={BOT_TOKEN}&channel=U1&text=hi&blocks={}",
        url::form_urlencoded::byte_serialize(
            json!([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}])
                .to_string()
                .as_bytes()
        )
        .collect::<String>()
    );
    let (status, _, body) = raw_http(
        &fake,
        format!(
            "POST /api/chat.postMessage HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form_body}",
            form_body.len()
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["message"]["blocks"][0]["text"]["text"], "hi");
    let call = &fake.calls_to("chat.postMessage")[0];
    assert_eq!(call.encoding, "form");
    assert!(call.params.get("token").is_none());

    let get = |path: &str, auth: Option<&str>| {
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!("GET /api/{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n")
    };
    let (_, _, body) = raw_http(
        &fake,
        get(&format!("users.info?user=U1&token={BOT_TOKEN}"), None),
    )
    .await;
    assert_eq!(body["user"]["id"], "U1");
    let (_, _, body) = raw_http(&fake, get("auth.test", None)).await;
    assert_eq!(body, json!({"ok": false, "error": "not_authed"}));
    let (_, _, body) = raw_http(&fake, get("auth.test", Some(APP_TOKEN))).await;
    assert_eq!(body["error"], "invalid_auth");
    let (_, _, body) = raw_http(&fake, get("apps.connections.open", Some(BOT_TOKEN))).await;
    assert_eq!(body["error"], "invalid_auth");
    let (_, _, body) = raw_http(&fake, get("apps.connections.open", Some(APP_TOKEN))).await;
    assert!(body["url"].as_str().unwrap().contains("/link/?ticket="));
    let (_, _, body) = raw_http(&fake, get("chat.fly", Some(BOT_TOKEN))).await;
    assert_eq!(body["error"], "unknown_method");

    fake.fail_next("auth.test", 1, Failure::Status(503));
    let (status, _, _) = raw_http(&fake, get("auth.test", Some(BOT_TOKEN))).await;
    assert_eq!(status, 503);
    fake.fail_next(
        "auth.test",
        1,
        Failure::RateLimited {
            retry_after_secs: 3,
        },
    );
    let (status, head, body) = raw_http(&fake, get("auth.test", Some(BOT_TOKEN))).await;
    assert_eq!(status, 429);
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 3"),
        "{head}"
    );
    assert_eq!(body["error"], "ratelimited");
    let (status, _, body) = raw_http(&fake, get("auth.test", Some(BOT_TOKEN))).await;
    assert_eq!(
        (status, body["ok"].clone()),
        (200, json!(true)),
        "injection is used up"
    );
}

#[tokio::test]
async fn injected_failures_reach_slack_morphism() {
    let fake = FakeSlack::start().await;
    fake.add_user("U1", "ada@example.com", "Ada");
    let c = client(&fake);
    let bot = bot_token();
    let s = c.open_session(&bot);
    let req = SlackApiChatPostMessageRequest::new(
        "U1".into(),
        SlackMessageContent::new().with_text("hi".into()),
    );

    fake.fail_next(
        "chat.postMessage",
        2,
        Failure::RateLimited {
            retry_after_secs: 7,
        },
    );
    for _ in 0..2 {
        match s.chat_post_message(&req).await {
            Err(SlackClientError::RateLimitError(e)) => {
                assert_eq!(e.retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("expected RateLimitError, got {other:?}"),
        }
    }
    fake.fail_next("chat.postMessage", 1, Failure::Status(500));
    match s.chat_post_message(&req).await {
        Err(SlackClientError::HttpError(e)) => assert_eq!(e.status_code.as_u16(), 500),
        other => panic!("expected HttpError, got {other:?}"),
    }
    fake.fail_next("chat.postMessage", 1, Failure::Error("account_inactive"));
    assert_eq!(
        api_error(s.chat_post_message(&req).await.unwrap_err()),
        "account_inactive"
    );
    fake.fail_next(
        "chat.postMessage",
        1,
        Failure::Delay(Duration::from_millis(300)),
    );
    let started = std::time::Instant::now();
    s.chat_post_message(&req).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(fake.calls_to("chat.postMessage").len(), 5);
    assert_eq!(
        fake.messages_to("U1").len(),
        1,
        "only the delayed call posted"
    );

    let wrong = SlackApiToken::new(SlackApiTokenValue::new("xoxb-wrong".into()));
    assert_eq!(
        api_error(c.open_session(&wrong).auth_test().await.unwrap_err()),
        "invalid_auth"
    );
    assert_eq!(
        api_error(c.open_session(&app_token()).auth_test().await.unwrap_err()),
        "invalid_auth"
    );

    // Block Kit limits are enforced as Slack does.
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{i}")}}))
        .collect();
    let too_many = SlackApiChatPostMessageRequest::new(
        "U1".into(),
        SlackMessageContent::new().with_blocks(blocks(Value::Array(many))),
    );
    assert_eq!(
        api_error(s.chat_post_message(&too_many).await.unwrap_err()),
        "invalid_blocks"
    );
    let long = SlackApiChatPostMessageRequest::new(
        "U1".into(),
        SlackMessageContent::new().with_blocks(blocks(json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(3001)}}]))),
    );
    assert_eq!(
        api_error(s.chat_post_message(&long).await.unwrap_err()),
        "invalid_blocks"
    );
}

#[tokio::test]
async fn triggers_expire_are_single_use_and_modals_stack() {
    let fake = FakeSlack::start_with(FakeConfig {
        trigger_ttl: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await;
    fake.add_user("U1", "ada@example.com", "Ada");
    let c = client(&fake);
    let bot = bot_token();
    let s = c.open_session(&bot);
    let modal = |title: &str| {
        SlackView::Modal(SlackModalView::new(
            title.into(),
            blocks(json!([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}])),
        ))
    };
    let open = |trigger: String| SlackApiViewsOpenRequest::new(trigger.into(), modal("One"));

    let old = fake.issue_trigger("U1");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        api_error(s.views_open(&open(old)).await.unwrap_err()),
        "expired_trigger_id"
    );
    assert_eq!(
        api_error(s.views_open(&open("1.2.bogus".into())).await.unwrap_err()),
        "invalid_trigger_id"
    );
    let fresh = fake.issue_trigger("U1");
    let opened = s.views_open(&open(fresh.clone())).await.unwrap();
    assert_eq!(
        api_error(s.views_open(&open(fresh)).await.unwrap_err()),
        "exchanged_trigger_id"
    );
    assert_eq!(
        fake.last_modal("U1").unwrap()["id"],
        opened.view.state_params.id.0.as_str()
    );

    // A modal with an input block but no submit button is refused.
    let no_submit = SlackView::Modal(SlackModalView::new(
        "Bad".into(),
        blocks(
            json!([{"type": "input", "label": {"type": "plain_text", "text": "R"},
            "element": {"type": "plain_text_input", "action_id": "a"}}]),
        ),
    ));
    let err = s
        .views_open(&SlackApiViewsOpenRequest::new(
            fake.issue_trigger("U1").into(),
            no_submit,
        ))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), "invalid_arguments");

    for title in ["Two", "Three"] {
        s.views_push(&SlackApiViewsPushRequest::new(
            fake.issue_trigger("U1").into(),
            modal(title),
        ))
        .await
        .unwrap();
    }
    let err = s
        .views_push(&SlackApiViewsPushRequest::new(
            fake.issue_trigger("U1").into(),
            modal("Four"),
        ))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), "push_limit_reached");
    let stack = fake.modal_stack("U1");
    assert_eq!(stack.len(), 3);
    assert_eq!(stack[2]["root_view_id"], stack[0]["id"]);
    assert_eq!(stack[2]["previous_view_id"], stack[1]["id"]);

    let top = fake.last_modal("U1").unwrap();
    let upd = s
        .views_update(
            &SlackApiViewsUpdateRequest::new(modal("Three b"))
                .with_view_id(SlackViewId::new(top["id"].as_str().unwrap().into()))
                .with_hash(top["hash"].as_str().unwrap().into()),
        )
        .await
        .unwrap();
    assert_eq!(upd.view.state_params.id.0, top["id"].as_str().unwrap());
    assert_eq!(fake.last_modal("U1").unwrap()["title"]["text"], "Three b");
}

async fn connect(
    fake: &FakeSlack,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let c = client(fake);
    let open = c
        .open_session(&app_token())
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .unwrap();
    let (ws, _) = tokio_tungstenite::connect_async(open.url.0.as_str())
        .await
        .unwrap();
    ws
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(T, ws.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn socket_mode_hello_envelopes_acks_and_link_control() {
    let fake = FakeSlack::start_with(FakeConfig {
        disconnect_grace: Duration::from_millis(400),
        ..FakeConfig::default()
    })
    .await;
    fake.add_user("U1", "ada@example.com", "Ada");

    // Tickets are single use; unknown ones are refused at the upgrade with 401.
    let open = client(&fake)
        .open_session(&app_token())
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .unwrap();
    let url = open.url.0.to_string();
    assert!(
        url.starts_with(&fake.ws_base()) && url.contains("app_id=A111"),
        "{url}"
    );
    let (mut ws1, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("reused ticket accepted: {:?}", other.map(|_| ())),
    }
    let bogus = format!("{}/link/?ticket=nope", fake.ws_base());
    assert!(tokio_tungstenite::connect_async(bogus.as_str())
        .await
        .is_err());

    let hello = next_json(&mut ws1).await;
    match parse_event(&hello) {
        SmEvent::Hello(h) => {
            assert_eq!(h.num_connections, 1);
            assert_eq!(h.connection_info.app_id.0, APP_ID);
        }
        other => panic!("{other:?}"),
    }
    if let Some(dir) = fixtures_dir() {
        assert_has_keys(&fixture(&dir, "pysm_hello.json"), &hello, "hello");
    }
    let mut ws2 = connect(&fake).await;
    assert_eq!(next_json(&mut ws2).await["num_connections"], 2);
    let conns = fake.wait_for_connections(2, T).await;
    assert_eq!(fake.total_connections_opened(), 2);

    // Envelope → client → ack with payload → recorded.
    let env = fake.slash_command("U1", "/access", "");
    let eid = fake.send_envelope(Some(conns[0]), env.clone());
    let got = next_json(&mut ws1).await;
    assert_eq!(got, env);
    assert!(fake
        .wait_ack(&eid, Duration::from_millis(200))
        .await
        .is_none());
    ws1.send(Message::text(
        json!({"envelope_id": eid, "payload": {"text": "ok"}}).to_string(),
    ))
    .await
    .unwrap();
    let ack = fake.wait_ack(&eid, T).await.expect("ack recorded");
    assert_eq!(ack.conn, conns[0]);
    assert_eq!(ack.payload, Some(json!({"text": "ok"})));
    assert!(ack.latency >= Duration::from_millis(200) && ack.latency < T);
    ws1.send(Message::text("not json")).await.unwrap();
    assert!(fake
        .wait_until(T, |f| f
            .stray_frames()
            .contains(&"not json".to_string())
            .then_some(()))
        .await
        .is_some());

    // Garbage and binary frames reach the client as sent.
    fake.send_raw(Some(conns[1]), "{garbage");
    match tokio::time::timeout(T, ws2.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "{garbage"),
        other => panic!("{other:?}"),
    }
    fake.send_binary(Some(conns[1]), vec![1, 2, 3]);
    match tokio::time::timeout(T, ws2.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &[1, 2, 3]),
        other => panic!("{other:?}"),
    }

    // disconnect: shaped like Slack's, link still delivers during the grace, then closes.
    fake.disconnect(conns[0], "refresh_requested");
    let frame = next_json(&mut ws1).await;
    match parse_event(&frame) {
        SmEvent::Disconnect(d) => assert_eq!(d.reason, "refresh_requested"),
        other => panic!("{other:?}"),
    }
    if let Some(dir) = fixtures_dir() {
        assert_has_keys(&fixture(&dir, "pysm_disconnect.json"), &frame, "disconnect");
    }
    let during = fake.send_envelope(Some(conns[0]), fake.app_home_opened("U1"));
    assert_eq!(next_json(&mut ws1).await["envelope_id"], during.as_str());
    match tokio::time::timeout(T, ws1.next()).await.unwrap() {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected close after grace, got {other:?}"),
    }
    assert_eq!(fake.wait_closed(conns[0], T).await, Some(ClosedBy::Server));
    assert_eq!(fake.live_connections(), vec![conns[1]]);

    // Abrupt drop: no close frame, the stream just ends.
    fake.drop_abruptly(conns[1]);
    match tokio::time::timeout(T, ws2.next()).await.unwrap() {
        Some(Ok(Message::Close(_))) => panic!("abrupt drop sent a close frame"),
        Some(Ok(m)) => panic!("unexpected {m:?}"),
        Some(Err(_)) | None => {}
    }
    assert_eq!(fake.wait_closed(conns[1], T).await, Some(ClosedBy::Abrupt));

    // A client close is seen as such.
    let mut ws3 = connect(&fake).await;
    next_json(&mut ws3).await;
    let c3 = fake.wait_for_connections(1, T).await[0];
    ws3.close(None).await.unwrap();
    assert_eq!(fake.wait_closed(c3, T).await, Some(ClosedBy::Client));
}

#[tokio::test]
async fn silent_link_swallows_envelopes_and_pings() {
    let fake = FakeSlack::start().await;
    fake.add_user("U1", "ada@example.com", "Ada");
    let mut ws = connect(&fake).await;
    next_json(&mut ws).await;
    let conn = fake.wait_for_connections(1, T).await[0];
    ws.send(Message::Ping(vec![7].into())).await.unwrap();
    match tokio::time::timeout(T, ws.next()).await.unwrap() {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], &[7]),
        other => panic!("expected pong, got {other:?}"),
    }
    fake.stop_responding(conn);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(Message::Ping(vec![8].into())).await.unwrap();
    fake.send_envelope(Some(conn), fake.app_home_opened("U1"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next())
            .await
            .is_err(),
        "silent link answered"
    );
}

#[tokio::test]
async fn acting_as_a_user_click_and_submit() {
    let fake = FakeSlack::start().await;
    fake.add_user("U1", "ada@example.com", "Ada");
    let c = client(&fake);
    let bot = bot_token();
    let s = c.open_session(&bot);
    let mut ws = connect(&fake).await;
    next_json(&mut ws).await;
    fake.wait_for_connections(1, T).await;

    let home = SlackView::Home(SlackHomeView::new(blocks(json!([
        {"type": "actions", "elements": [
            {"type": "button", "action_id": "open", "text": {"type": "plain_text", "text": "Request access"}}]}
    ]))));
    s.views_publish(&SlackApiViewsPublishRequest::new("U1".into(), home))
        .await
        .unwrap();
    let home_view = fake.home_view("U1").unwrap();
    assert!(
        home_view["blocks"][0]["block_id"].is_string(),
        "Slack fills in block ids"
    );
    let eid = fake.click("U1", &home_view, "Request access");
    let env = next_json(&mut ws).await;
    assert_eq!(env["envelope_id"], eid.as_str());
    let trigger = env["payload"]["trigger_id"].as_str().unwrap().to_string();
    ws.send(Message::text(json!({"envelope_id": eid}).to_string()))
        .await
        .unwrap();

    // The bot answers the click with a modal, using the click's trigger.
    let modal = SlackView::Modal(
        SlackModalView::new(
            "Request".into(),
            blocks(json!([{"type": "input", "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "text"}}])),
        )
        .with_submit("Next".into()),
    );
    s.views_open(&SlackApiViewsOpenRequest::new(trigger.into(), modal))
        .await
        .unwrap();
    let view = fake.last_modal("U1").unwrap();

    // Submission answered with errors keeps the modal; a plain ack closes it.
    let values = state_values(&[("reason", "text", plain_text_value(""))]);
    let e1 = fake.submit("U1", &view, values.clone());
    let got = next_json(&mut ws).await;
    assert_eq!(got["payload"]["view"]["state"]["values"], values);
    ws.send(Message::text(
        json!({"envelope_id": e1, "payload": {"response_action": "errors", "errors": {"reason": "Say why"}}})
            .to_string(),
    ))
    .await
    .unwrap();
    fake.wait_ack(&e1, T).await.unwrap();
    assert!(fake.last_modal("U1").is_some());
    let e2 = fake.submit(
        "U1",
        &view,
        state_values(&[("reason", "text", plain_text_value("audit"))]),
    );
    next_json(&mut ws).await;
    ws.send(Message::text(json!({"envelope_id": e2}).to_string()))
        .await
        .unwrap();
    fake.wait_ack(&e2, T).await.unwrap();
    assert!(
        fake.last_modal("U1").is_none(),
        "plain ack closes the modal"
    );

    // Clicking in a DM message.
    s.chat_post_message(&SlackApiChatPostMessageRequest::new(
        "U1".into(),
        SlackMessageContent::new()
            .with_text("decide".into())
            .with_blocks(blocks(json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": "Ticket 7"},
             "accessory": {"type": "button", "action_id": "approve", "value": "7",
                           "text": {"type": "plain_text", "text": "Approve"}}}]))),
    ))
    .await
    .unwrap();
    let msg = fake.last_message_to("U1").unwrap();
    assert!(find_button(&msg, "Nope").is_none());
    fake.click("U1", &msg, "Approve");
    let env = next_json(&mut ws).await;
    assert_eq!(env["payload"]["container"]["type"], "message");
    assert_eq!(env["payload"]["actions"][0]["value"], "7");
    assert_eq!(
        env["payload"]["channel"]["id"],
        fake.dm_channel("U1").as_str()
    );
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_servers() {
    let fake = FakeSlack::start().await;
    let api = url::Url::parse(&fake.api_url()).unwrap().port().unwrap();
    let ws = url::Url::parse(&fake.ws_base()).unwrap().port().unwrap();
    let clone = fake.clone();
    drop(fake);
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", api))
        .await
        .is_ok());
    drop(clone);
    let refused = |port: u16| async move {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    };
    assert!(refused(api).await, "Web API still listening");
    assert!(refused(ws).await, "Socket Mode still listening");
}

/// What slack-morphism's own Socket Mode client handed to its callbacks.
static SEEN_BY_LISTENER: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn seen(s: String) {
    SEEN_BY_LISTENER.lock().unwrap().push(s);
}

type Client = SlackClient<SlackClientHyperHttpsConnector>;

async fn on_command(
    ev: SlackCommandEvent,
    _: std::sync::Arc<Client>,
    _: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    seen(format!("command {} {}", ev.command.0, ev.trigger_id.0));
    Ok(SlackCommandEventResponse::new(
        SlackMessageContent::new().with_text("got it".into()),
    ))
}

async fn on_interaction(
    ev: SlackInteractionEvent,
    _: std::sync::Arc<Client>,
    _: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    seen(match ev {
        SlackInteractionEvent::BlockActions(b) => {
            format!(
                "block_actions {}",
                b.actions.unwrap_or_default()[0].action_id.0
            )
        }
        SlackInteractionEvent::ViewSubmission(v) => {
            format!("view_submission {}", v.view.state_params.id.0)
        }
        SlackInteractionEvent::Shortcut(s) => format!("shortcut {}", s.callback_id.0),
        other => format!("other interaction {other:?}"),
    });
    Ok(())
}

async fn on_push(
    ev: SlackPushEventCallback,
    _: std::sync::Arc<Client>,
    _: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    seen(match ev.event {
        SlackEventCallbackBody::AppHomeOpened(h) => format!("app_home_opened {}", h.user.0),
        SlackEventCallbackBody::AppMention(m) => format!("app_mention {}", m.user.0),
        SlackEventCallbackBody::Message(_) => "message".to_string(),
        other => format!("other event {other:?}"),
    });
    Ok(())
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _: std::sync::Arc<Client>,
    _: SlackClientEventsUserState,
) -> HttpStatusCode {
    seen(format!("error {err}"));
    HttpStatusCode::OK
}

/// The strongest check available: slack-morphism's real Socket Mode client (which parses
/// with the real `SlackSocketModeEvent`) connects to the fake and gets every envelope the
/// builders make, plus the real fixture envelopes.
#[tokio::test]
async fn slack_morphism_socket_mode_client_accepts_fake_envelopes() {
    let fake = FakeSlack::start().await;
    fake.add_user("U1", "ada@example.com", "Ada");
    let c = std::sync::Arc::new(client(&fake));
    let bot = bot_token();
    let s = c.open_session(&bot);
    let env = std::sync::Arc::new(
        SlackClientEventsListenerEnvironment::new(c.clone()).with_error_handler(on_error),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_interaction_events(on_interaction)
        .with_push_events(on_push);
    let listener =
        SlackClientSocketModeListener::new(&SlackClientSocketModeConfig::new(), env, callbacks);
    listener.listen_for(&app_token()).await.unwrap();
    listener.start().await;
    fake.wait_for_connections(1, T).await;

    s.views_publish(&SlackApiViewsPublishRequest::new(
        "U1".into(),
        SlackView::Home(SlackHomeView::new(blocks(json!([
            {"type": "actions", "elements": [{"type": "button", "action_id": "open",
              "text": {"type": "plain_text", "text": "Request access"}}]}])))),
    ))
    .await
    .unwrap();
    s.views_open(&SlackApiViewsOpenRequest::new(
        fake.issue_trigger("U1").into(),
        SlackView::Modal(SlackModalView::new(
            "Request".into(),
            blocks(json!([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}])),
        )),
    ))
    .await
    .unwrap();
    let home = fake.home_view("U1").unwrap();
    let modal = fake.last_modal("U1").unwrap();

    let cmd = fake.slash_command("U1", "/access", "github");
    let trigger = cmd["payload"]["trigger_id"].as_str().unwrap().to_string();
    let mut expected = vec![
        (cmd, format!("command /access {trigger}")),
        (fake.app_home_opened("U1"), "app_home_opened U1".to_string()),
        (
            fake.block_actions("U1", &home, &find_button(&home, "Request access").unwrap()),
            "block_actions open".to_string(),
        ),
        (
            fake.view_submission("U1", &modal, json!({})),
            format!("view_submission {}", modal["id"].as_str().unwrap()),
        ),
    ];
    if let Some(dir) = fixtures_dir() {
        for (n, want) in [
            ("pysm_env_0.json", "command /hello-socket-mode 111.222.xxx"),
            ("pysm_env_1.json", "app_mention U222"),
            ("pysm_env_2.json", "shortcut do-something"),
            ("pysm_env_3.json", "message"),
            ("pysm_env_4.json", "block_actions a"),
        ] {
            expected.push((fixture(&dir, n), want.to_string()));
        }
    }
    for (envelope, _) in &expected {
        let eid = fake.send_envelope(None, envelope.clone());
        let ack = fake.wait_ack(&eid, T).await.expect("slack-morphism acked");
        if envelope["type"] == "slash_commands" {
            assert_eq!(ack.payload.unwrap()["text"], "got it");
        }
    }
    listener.shutdown().await;
    let got = SEEN_BY_LISTENER.lock().unwrap().clone();
    let want: Vec<String> = expected.into_iter().map(|(_, w)| w).collect();
    assert_eq!(got, want, "callbacks in order, no parse errors");
}
