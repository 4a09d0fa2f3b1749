//! The fake's Web API: HTTP server (axum), auth, call recording, failure injection and the
//! method implementations (`chat.*`, `views.*`, `users.*`, `conversations.open`, …).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Map, Value};

use super::*;

/// One HTTP call the client made (Web API or `response_url`).
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// Web API method (`chat.postMessage`), or `"response_url"` for POSTs to a response URL.
    pub method: String,
    /// Bearer token, else the `token` parameter.
    pub token: Option<String>,
    /// Query string and body merged into one object (`token` removed; JSON-encoded
    /// `blocks` / `view` / `attachments` strings parsed).
    pub params: Value,
    /// When the request arrived.
    pub at: Instant,
    /// `GET` / `POST`.
    pub verb: String,
    /// How parameters came: `"query"`, `"json"`, `"form"`, `"none"` (or `"query+json"` …).
    pub encoding: String,
    /// HTTP status the fake answered with.
    pub status: u16,
    /// JSON body the fake answered with (`Null` for non-JSON bodies).
    pub response: Value,
}

/// Injected failure for the next call(s) of a method (`FakeSlack::fail_next`).
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// HTTP 429, `Retry-After: secs`, body `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// That HTTP status with a plain-text body (e.g. 500, 502, 503).
    Status(u16),
    /// HTTP 200 with `{"ok":false,"error":…}` (`invalid_auth`, `account_inactive`, …).
    Error(&'static str),
    /// Answer normally, but only after this long.
    Delay(Duration),
}

const KNOWN: &[&str] = &[
    "apps.connections.open",
    "auth.test",
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "chat.delete",
    "conversations.open",
    "views.open",
    "views.push",
    "views.update",
    "views.publish",
    "users.info",
    "users.lookupByEmail",
    "users.list",
    "conversations.list",
    "usergroups.list",
    "usergroups.users.list",
    "usergroups.users.update",
    "team.info",
];

/// Parameters Slack accepts as JSON-encoded strings in form/query requests.
const JSON_PARAMS: &[&str] = &["blocks", "attachments", "view", "metadata"];

pub(crate) fn spawn(inner: Arc<Inner>, listener: tokio::net::TcpListener) {
    let shutdown = inner.shutdown.clone();
    let app = Router::new()
        .route("/api/{method}", any(api))
        .route("/hooks/{*rest}", any(hook))
        .with_state(inner);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(until_shutdown(shutdown))
            .await;
    });
}

type Reply = (u16, Value, Option<u64>);

async fn api(
    AxState(inner): AxState<Arc<Inner>>,
    Path(method): Path<String>,
    verb: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let (mut params, encoding) = parse_params(&headers, query.as_deref(), &body);
    let param_token = params
        .as_object_mut()
        .and_then(|m| m.remove("token"))
        .and_then(|t| t.as_str().map(str::to_string));
    let token = bearer(&headers).or(param_token);

    let failure = inner
        .lock()
        .failures
        .get_mut(&method)
        .and_then(|q| q.pop_front());
    let (status, response, retry_after): Reply = match failure {
        Some(Failure::RateLimited { retry_after_secs }) => (
            429,
            json!({"ok": false, "error": "ratelimited"}),
            Some(retry_after_secs),
        ),
        Some(Failure::Status(code)) => (code, Value::Null, None),
        Some(Failure::Error(e)) => (200, json!({"ok": false, "error": e}), None),
        Some(Failure::Delay(d)) => {
            tokio::time::sleep(d).await;
            (
                200,
                dispatch(&inner, &method, token.as_deref(), &params),
                None,
            )
        }
        None => (
            200,
            dispatch(&inner, &method, token.as_deref(), &params),
            None,
        ),
    };

    inner.lock().calls.push(RecordedCall {
        method,
        token,
        params,
        at,
        verb: verb.to_string(),
        encoding,
        status,
        response: response.clone(),
    });

    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if response.is_null() {
        return (code, code.canonical_reason().unwrap_or("error").to_string()).into_response();
    }
    let mut resp = (
        code,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        response.to_string(),
    )
        .into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
    }
    resp
}

/// POSTs to a `response_url` the fake issued: recorded as method `"response_url"`.
/// Like Slack's, a URL serves 5 answers and then (or once expired, or when it
/// was never issued) answers 404; an ephemeral answer (the default) is shown to
/// the person who acted, in the channel where they did, member or not.
async fn hook(
    AxState(inner): AxState<Arc<Inner>>,
    Path(rest): Path<String>,
    verb: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let (mut params, encoding) = parse_params(&headers, query.as_deref(), &body);
    let mut st = inner.lock();
    let live = st.hooks.get_mut(&rest).filter(|h| !h.expired && h.uses < 5);
    let (status, answer) = match live {
        None => (StatusCode::NOT_FOUND, "expired_url".to_string()),
        Some(hook) => {
            hook.uses += 1;
            let hook = hook.clone();
            if params["response_type"].as_str().unwrap_or("ephemeral") == "ephemeral" {
                let ts = st.next_ts();
                let text = params["text"].as_str().unwrap_or_default().to_string();
                let blocks = params.get("blocks").filter(|b| b.is_array()).cloned();
                let mut e = bot_message(&text, blocks.as_ref(), &ts);
                e["channel"] = hook.channel.clone().into();
                e["ephemeral_user"] = hook.user.clone().into();
                e["via"] = "response_url".into();
                st.ephemerals.push(e);
            }
            (StatusCode::OK, json!({"ok": true}).to_string())
        }
    };
    params["url_path"] = Value::String(rest);
    st.calls.push(RecordedCall {
        method: "response_url".into(),
        token: None,
        params,
        at: Instant::now(),
        verb: verb.to_string(),
        encoding,
        status: status.as_u16(),
        response: json!({"ok": status == StatusCode::OK}),
    });
    let content_type = if status == StatusCode::OK {
        "application/json; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, content_type)], answer).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(|t| t.trim().to_string())
}

fn parse_params(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> (Value, String) {
    let mut map = Map::new();
    let mut enc = Vec::new();
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        enc.push("query");
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            map.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !body.is_empty() {
        if ctype.starts_with("application/json") {
            enc.push("json");
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(m)) => map.extend(m),
                _ => {
                    map.insert("_invalid_json".into(), Value::Bool(true));
                }
            }
        } else if ctype.starts_with("application/x-www-form-urlencoded") {
            enc.push("form");
            for (k, v) in url::form_urlencoded::parse(body) {
                map.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        } else {
            enc.push("other");
        }
    }
    for key in JSON_PARAMS {
        if let Some(Value::String(s)) = map.get(*key) {
            if let Ok(v @ (Value::Array(_) | Value::Object(_))) = serde_json::from_str(s) {
                map.insert(key.to_string(), v);
            }
        }
    }
    let enc = if enc.is_empty() {
        "none".to_string()
    } else {
        enc.join("+")
    };
    (Value::Object(map), enc)
}

fn err(e: &str) -> Value {
    json!({"ok": false, "error": e})
}

fn invalid_blocks(msg: String) -> Value {
    json!({
        "ok": false,
        "error": "invalid_blocks",
        "errors": [msg.clone()],
        "response_metadata": {"messages": [format!("[ERROR] {msg}")]}
    })
}

fn invalid_arguments(msg: String) -> Value {
    json!({
        "ok": false,
        "error": "invalid_arguments",
        "response_metadata": {"messages": [format!("[ERROR] {msg}")]}
    })
}

/// A parameter as a string (numbers and booleans stringified, as form encoding would).
fn p_str(params: &Value, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn p_bool(params: &Value, key: &str) -> bool {
    matches!(p_str(params, key).as_deref(), Some("true" | "1"))
}

fn dispatch(inner: &Inner, method: &str, token: Option<&str>, p: &Value) -> Value {
    if !KNOWN.contains(&method) {
        return err("unknown_method");
    }
    let Some(token) = token else {
        return err("not_authed");
    };
    let expected = if method == "apps.connections.open" {
        APP_TOKEN
    } else {
        BOT_TOKEN
    };
    if token != expected {
        return err("invalid_auth");
    }
    let mut st = inner.lock();
    let st = &mut *st;
    match method {
        "apps.connections.open" => {
            let ticket = uuid();
            st.tickets.insert(ticket.clone(), false);
            json!({
                "ok": true,
                "url": format!("ws://127.0.0.1:{}/link/?ticket={ticket}&app_id={APP_ID}", inner.ws_port)
            })
        }
        "auth.test" => json!({
            "ok": true,
            "url": format!("https://{TEAM_DOMAIN}.slack.com/"),
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": false
        }),
        "chat.postMessage" => post_message(st, p),
        "chat.update" => update_message(st, p),
        "chat.postEphemeral" => post_ephemeral(st, p),
        "chat.delete" => delete_message(st, p),
        "conversations.open" => conversations_open(st, p),
        "views.open" | "views.push" => open_or_push(st, &inner.cfg, method, p),
        "views.update" => views_update(st, p),
        "views.publish" => views_publish(st, p),
        "users.info" => match p_str(p, "user").and_then(|u| st.user(&u).cloned()) {
            Some(u) => json!({"ok": true, "user": u}),
            None => err("user_not_found"),
        },
        "users.lookupByEmail" => {
            let email = p_str(p, "email").unwrap_or_default().to_lowercase();
            let found = st.users.iter().find(|u| {
                u["profile"]["email"]
                    .as_str()
                    .is_some_and(|e| !e.is_empty() && e.to_lowercase() == email)
            });
            match found {
                Some(u) => json!({"ok": true, "user": u}),
                None => err("users_not_found"),
            }
        }
        "users.list" => users_list(st, p),
        "conversations.list" => conversations_list(st, p),
        "usergroups.list" => usergroups_list(st, p),
        "usergroups.users.list" => usergroup_users(st, p),
        "usergroups.users.update" => usergroup_update(st, p),
        "team.info" => json!({
            "ok": true,
            "team": {
                "id": TEAM_ID, "name": TEAM_NAME, "domain": TEAM_DOMAIN,
                "email_domain": "example.com", "icon": {"image_default": true}
            }
        }),
        _ => err("unknown_method"),
    }
}

/// Channels made with `add_channel`, paged like Slack (`cursor`, `limit`),
/// each with the fields Slack's conversation object carries.
fn conversations_list(st: &State, p: &Value) -> Value {
    let start: usize = p_str(p, "cursor")
        .and_then(|c| c.strip_prefix("fakecursor:").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let limit: usize = p_str(p, "limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(100)
        .min(1000);
    let types = p_str(p, "types").unwrap_or_else(|| "public_channel".into());
    let wanted: Vec<(&String, &String)> = st
        .channels
        .iter()
        .filter(|(id, _)| {
            let private = id.starts_with('G');
            (private && types.contains("private_channel"))
                || (!private && types.contains("public_channel"))
        })
        .collect();
    let channels: Vec<Value> = wanted
        .iter()
        .skip(start)
        .take(limit)
        .map(|(id, name)| {
            let private = id.starts_with('G');
            json!({
                "id": id, "name": name, "name_normalized": name,
                "is_channel": !private, "is_group": private, "is_im": false, "is_mpim": false,
                "is_private": private, "created": 1_700_000_000, "updated": 1_700_000_000_000u64,
                "is_archived": false, "is_general": false, "unlinked": 0, "is_shared": false,
                "is_org_shared": false, "is_ext_shared": false, "is_pending_ext_shared": false,
                "pending_shared": [], "pending_connected_team_ids": [], "shared_team_ids": [TEAM_ID],
                "context_team_id": TEAM_ID, "parent_conversation": null, "creator": "UADMIN",
                "is_member": true, "previous_names": [], "num_members": 3,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0}
            })
        })
        .collect();
    let next = start.saturating_add(channels.len());
    let next_cursor = if next < wanted.len() {
        format!("fakecursor:{next}")
    } else {
        String::new()
    };
    json!({ "ok": true, "channels": channels, "response_metadata": {"next_cursor": next_cursor} })
}

/// A usergroup object like Slack's (`users` kept; answers decide whether to show it).
pub(crate) fn usergroup_json(id: &str, handle: &str, members: &[&str]) -> Value {
    json!({
        "id": id, "team_id": TEAM_ID, "is_usergroup": true, "is_subteam": true,
        "name": handle.replace('-', " "), "description": "", "handle": handle,
        "is_external": false, "date_create": 1_700_000_000, "date_update": 1_700_000_000,
        "date_delete": 0, "auto_type": null, "auto_provision": false,
        "enterprise_subteam_id": "", "created_by": "UADMIN", "updated_by": "UADMIN",
        "deleted_by": null, "prefs": {"channels": [], "groups": []},
        "users": members, "user_count": members.len()
    })
}

/// Every group (disabled ones only with `include_disabled`); members only
/// with `include_users`, as Slack does.
fn usergroups_list(st: &State, p: &Value) -> Value {
    let with_users = p_bool(p, "include_users");
    let disabled = p_bool(p, "include_disabled");
    let groups: Vec<Value> = st
        .usergroups
        .iter()
        .filter(|g| disabled || g["date_delete"] == 0)
        .map(|g| {
            let mut g = g.clone();
            if !with_users {
                if let Some(o) = g.as_object_mut() {
                    o.remove("users");
                }
            }
            g
        })
        .collect();
    json!({ "ok": true, "usergroups": groups })
}

fn find_usergroup<'a>(st: &'a mut State, p: &Value) -> Result<&'a mut Value, Value> {
    let id = p_str(p, "usergroup").ok_or_else(|| err("missing_argument"))?;
    let disabled = p_bool(p, "include_disabled");
    let group = st
        .usergroups
        .iter_mut()
        .find(|g| g["id"] == id.as_str())
        .ok_or_else(|| err("no_such_subteam"))?;
    if group["date_delete"] != 0 && !disabled {
        return Err(err("no_such_subteam"));
    }
    Ok(group)
}

fn usergroup_users(st: &mut State, p: &Value) -> Value {
    match find_usergroup(st, p) {
        Ok(g) => json!({ "ok": true, "users": g["users"].clone() }),
        Err(e) => e,
    }
}

/// Replaces the group's *whole* member list with `users` (comma-separated
/// ids), as Slack does; an empty list or an unknown user is `invalid_users`.
fn usergroup_update(st: &mut State, p: &Value) -> Value {
    let users: Vec<String> = p_str(p, "users")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect();
    if users.is_empty() || users.iter().any(|u| st.user(u).is_none()) {
        return err("invalid_users");
    }
    let mut unique: Vec<String> = Vec::new();
    for u in users {
        if !unique.contains(&u) {
            unique.push(u);
        }
    }
    match find_usergroup(st, p) {
        Ok(g) => {
            g["users"] = json!(unique);
            g["user_count"] = json!(unique.len());
            g["date_update"] = json!(unix_now());
            let mut shown = g.clone();
            if let Some(o) = shown.as_object_mut() {
                o.remove("users");
            }
            json!({ "ok": true, "usergroup": shown })
        }
        Err(e) => e,
    }
}

fn users_list(st: &State, p: &Value) -> Value {
    let start: usize = p_str(p, "cursor")
        .and_then(|c| c.strip_prefix("fakecursor:").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let limit: usize = p_str(p, "limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let members: Vec<Value> = st.users.iter().skip(start).take(limit).cloned().collect();
    let next = start.saturating_add(members.len());
    let next_cursor = if next < st.users.len() {
        format!("fakecursor:{next}")
    } else {
        String::new()
    };
    json!({
        "ok": true,
        "members": members,
        "cache_ts": unix_now(),
        "response_metadata": {"next_cursor": next_cursor}
    })
}

fn bot_message(text: &str, blocks: Option<&Value>, ts: &str) -> Value {
    let mut m = json!({
        "user": BOT_USER_ID,
        "type": "message",
        "ts": ts,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": text,
        "team": TEAM_ID,
        "bot_profile": {
            "id": BOT_ID,
            "app_id": APP_ID,
            "name": BOT_NAME,
            "deleted": false,
            "updated": 1_700_000_000,
            "team_id": TEAM_ID
        }
    });
    if let Some(b) = blocks {
        m["blocks"] = b.clone();
    }
    m
}

/// Checks text/blocks the way `chat.postMessage` / `chat.update` do; returns the blocks
/// with Slack-assigned ids filled in.
fn message_content(p: &Value) -> Result<(Option<String>, Option<Value>), Value> {
    let text = p_str(p, "text");
    let blocks = match p.get("blocks") {
        None | Some(Value::Null) => None,
        Some(Value::Array(b)) => {
            validate_blocks(b, 50, "/blocks").map_err(invalid_blocks)?;
            Some(Value::Array(with_ids(b)))
        }
        Some(_) => return Err(err("invalid_blocks_format")),
    };
    if text.as_ref().is_some_and(|t| t.chars().count() > 40_000) {
        return Err(err("msg_too_long"));
    }
    Ok((text, blocks))
}

fn post_message(st: &mut State, p: &Value) -> Value {
    let Some(channel) = p_str(p, "channel").and_then(|c| st.resolve_channel(&c)) else {
        return err("channel_not_found");
    };
    let (text, blocks) = match message_content(p) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if text.as_deref().unwrap_or("").is_empty()
        && blocks.is_none()
        && p.get("attachments").is_none()
    {
        return err("no_text");
    }
    let ts = st.next_ts();
    let text = text.unwrap_or_else(|| "This content can't be displayed.".into());
    let mut message = bot_message(&text, blocks.as_ref(), &ts);
    for key in ["thread_ts", "attachments", "metadata"] {
        if let Some(v) = p.get(key) {
            message[key] = v.clone();
        }
    }
    let mut stored = message.clone();
    stored["channel"] = channel.clone().into();
    st.messages.push(StoredMessage {
        channel: channel.clone(),
        ts: ts.clone(),
        message: stored,
        deleted: false,
    });
    json!({"ok": true, "channel": channel, "ts": ts, "message": message})
}

fn find_message<'a>(st: &'a mut State, p: &Value) -> Result<&'a mut StoredMessage, Value> {
    let channel = p_str(p, "channel")
        .and_then(|c| st.resolve_channel(&c))
        .ok_or_else(|| err("channel_not_found"))?;
    let ts = p_str(p, "ts").ok_or_else(|| err("message_not_found"))?;
    st.messages
        .iter_mut()
        .find(|m| m.channel == channel && m.ts == ts && !m.deleted)
        .ok_or_else(|| err("message_not_found"))
}

fn update_message(st: &mut State, p: &Value) -> Value {
    let (text, blocks) = match message_content(p) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if text.is_none() && blocks.is_none() && p.get("attachments").is_none() {
        return err("no_text");
    }
    let edit_ts = st.next_ts();
    let m = match find_message(st, p) {
        Ok(m) => m,
        Err(e) => return e,
    };
    if let Some(t) = &text {
        m.message["text"] = t.clone().into();
    }
    if let Some(b) = &blocks {
        m.message["blocks"] = b.clone();
    }
    if let Some(a) = p.get("attachments") {
        m.message["attachments"] = a.clone();
    }
    m.message["edited"] = json!({"user": BOT_USER_ID, "ts": edit_ts});
    let mut message = m.message.clone();
    if let Some(o) = message.as_object_mut() {
        for k in ["channel", "ts", "type", "team", "bot_profile"] {
            o.remove(k);
        }
    }
    json!({
        "ok": true,
        "channel": m.channel,
        "ts": m.ts,
        "text": m.message["text"],
        "message": message
    })
}

fn post_ephemeral(st: &mut State, p: &Value) -> Value {
    let Some(channel) = p_str(p, "channel").and_then(|c| st.resolve_channel(&c)) else {
        return err("channel_not_found");
    };
    let Some(user) = p_str(p, "user").filter(|u| st.user(u).is_some()) else {
        return err("user_not_in_channel");
    };
    // A DM has two members, the bot and its person: nobody else sees an
    // ephemeral message in it (a click on someone else's DM copy).
    if st.is_dm(&channel) && st.dms.get(&user) != Some(&channel) {
        return err("user_not_in_channel");
    }
    let (text, blocks) = match message_content(p) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if text.as_deref().unwrap_or("").is_empty()
        && blocks.is_none()
        && p.get("attachments").is_none()
    {
        return err("no_text");
    }
    let ts = st.next_ts();
    let mut e = bot_message(text.as_deref().unwrap_or(""), blocks.as_ref(), &ts);
    e["channel"] = channel.into();
    e["ephemeral_user"] = user.into();
    if let Some(t) = p.get("thread_ts") {
        e["thread_ts"] = t.clone();
    }
    st.ephemerals.push(e);
    json!({"ok": true, "message_ts": ts})
}

fn delete_message(st: &mut State, p: &Value) -> Value {
    match find_message(st, p) {
        Ok(m) => {
            m.deleted = true;
            json!({"ok": true, "channel": m.channel, "ts": m.ts})
        }
        Err(e) => e,
    }
}

fn conversations_open(st: &mut State, p: &Value) -> Value {
    if let Some(ch) = p_str(p, "channel") {
        return match st.resolve_channel(&ch) {
            Some(id) => {
                json!({"ok": true, "no_op": true, "already_open": true, "channel": {"id": id}})
            }
            None => err("channel_not_found"),
        };
    }
    let users: Vec<String> = match p.get("users") {
        Some(Value::String(s)) => s
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if users.is_empty() {
        return err("users_list_not_supplied");
    }
    if users.len() > 8 {
        return err("too_many_users");
    }
    if users.iter().any(|u| st.user(u).is_none()) {
        return err("user_not_found");
    }
    let (id, already) = if users.len() == 1 {
        let existed = st.dms.contains_key(&users[0]);
        (st.dm_for(&users[0]), existed)
    } else {
        let mut key = users.clone();
        key.sort();
        let key = key.join(",");
        let existed = st.mpims.contains_key(&key);
        let id = st
            .mpims
            .entry(key)
            .or_insert_with(|| format!("G{}", rand_alnum(10)))
            .clone();
        (id, existed)
    };
    let channel = if p_bool(p, "return_im") {
        json!({
            "id": id,
            "created": unix_now(),
            "is_im": users.len() == 1,
            "is_mpim": users.len() > 1,
            "is_org_shared": false,
            "user": users[0],
            "last_read": "0000000000.000000",
            "latest": null,
            "unread_count": 0,
            "unread_count_display": 0,
            "is_open": true,
            "priority": 0
        })
    } else {
        json!({"id": id})
    };
    json!({"ok": true, "no_op": already, "already_open": already, "channel": channel})
}

fn trigger_user(st: &State, cfg: &FakeConfig, p: &Value) -> Result<(String, String), Value> {
    let id = p_str(p, "trigger_id").ok_or_else(|| err("invalid_trigger_id"))?;
    let t = st
        .triggers
        .get(&id)
        .ok_or_else(|| err("invalid_trigger_id"))?;
    if t.used {
        return Err(err("exchanged_trigger_id"));
    }
    if t.issued.elapsed() >= cfg.trigger_ttl {
        return Err(err("expired_trigger_id"));
    }
    Ok((id, t.user.clone()))
}

fn open_or_push(st: &mut State, cfg: &FakeConfig, method: &str, p: &Value) -> Value {
    let (trigger, user) = match trigger_user(st, cfg, p) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let view = match p.get("view") {
        Some(v @ Value::Object(_)) => v,
        _ => return invalid_arguments("missing required field: view".into()),
    };
    if view["type"] != "modal" {
        return invalid_arguments(format!(
            "{method} only accepts views of type modal [json-pointer:/view/type]"
        ));
    }
    if let Err(e) = validate_view(view) {
        return invalid_arguments(e);
    }
    let stack = st.modal_stacks.entry(user.clone()).or_default();
    if method == "views.push" {
        if stack.is_empty() {
            return err("not_found");
        }
        if stack.len() >= 3 {
            return err("push_limit_reached");
        }
    } else {
        stack.clear();
    }
    let previous = stack.last().cloned();
    let root = stack.first().cloned();
    let stored = store_view(st, view, None, previous, root);
    let id = stored["id"].as_str().unwrap().to_string();
    st.modal_stacks.entry(user).or_default().push(id);
    if let Some(t) = st.triggers.get_mut(&trigger) {
        t.used = true;
    }
    json!({"ok": true, "view": stored})
}

fn views_update(st: &mut State, p: &Value) -> Value {
    let view = match p.get("view") {
        Some(v @ Value::Object(_)) => v,
        _ => return invalid_arguments("missing required field: view".into()),
    };
    let id = match (p_str(p, "view_id"), p_str(p, "external_id")) {
        (Some(id), _) => Some(id),
        (None, Some(ext)) => st
            .views
            .values()
            .find(|v| v["external_id"] == ext.as_str())
            .and_then(|v| v["id"].as_str().map(str::to_string)),
        (None, None) => return invalid_arguments("view_id or external_id is required".into()),
    };
    let Some(existing) = id.and_then(|id| st.views.get(&id).cloned()) else {
        return err("not_found");
    };
    if let Some(h) = p_str(p, "hash") {
        if existing["hash"] != h.as_str() {
            return err("hash_conflict");
        }
    }
    if view["type"] != existing["type"] {
        return invalid_arguments("view type cannot change [json-pointer:/view/type]".into());
    }
    if let Err(e) = validate_view(view) {
        return invalid_arguments(e);
    }
    let stored = store_view(
        st,
        view,
        existing["id"].as_str().map(str::to_string),
        existing["previous_view_id"].as_str().map(str::to_string),
        existing["root_view_id"].as_str().map(str::to_string),
    );
    json!({"ok": true, "view": stored})
}

fn views_publish(st: &mut State, p: &Value) -> Value {
    let Some(user) = p_str(p, "user_id") else {
        return invalid_arguments("missing required field: user_id".into());
    };
    if st.user(&user).is_none() {
        return err("user_not_found");
    }
    let view = match p.get("view") {
        Some(v @ Value::Object(_)) => v,
        _ => return invalid_arguments("missing required field: view".into()),
    };
    if view["type"] != "home" {
        return invalid_arguments(
            "views.publish only accepts views of type home [json-pointer:/view/type]".into(),
        );
    }
    if let Err(e) = validate_view(view) {
        return invalid_arguments(e);
    }
    let existing = st.home.get(&user).and_then(|id| st.views.get(id)).cloned();
    if let (Some(h), Some(ex)) = (p_str(p, "hash"), &existing) {
        if ex["hash"] != h.as_str() {
            return err("hash_conflict");
        }
    }
    // Slack keeps one Home view id per user across publishes.
    let keep_id = existing.and_then(|e| e["id"].as_str().map(str::to_string));
    let stored = store_view(st, view, keep_id, None, None);
    st.home
        .insert(user, stored["id"].as_str().unwrap().to_string());
    json!({"ok": true, "view": stored})
}

/// Stores a view in the shape Slack returns it; `id` reuses an existing id (update).
pub(crate) fn store_view(
    st: &mut State,
    view: &Value,
    id: Option<String>,
    previous: Option<String>,
    root: Option<String>,
) -> Value {
    let id = id.unwrap_or_else(|| format!("V{}", rand_alnum(10)));
    let blocks = view["blocks"].as_array().cloned().unwrap_or_default();
    let s = |k: &str| view.get(k).cloned().unwrap_or(Value::String(String::new()));
    let o = |k: &str| view.get(k).cloned().unwrap_or(Value::Null);
    let mut stored = json!({
        "id": id,
        "team_id": TEAM_ID,
        "type": view["type"],
        "blocks": with_ids(&blocks),
        "private_metadata": s("private_metadata"),
        "callback_id": s("callback_id"),
        "state": {"values": {}},
        "hash": format!("{}.{}", unix_now(), rand_hex(8)),
        "clear_on_close": view.get("clear_on_close").cloned().unwrap_or(false.into()),
        "notify_on_close": view.get("notify_on_close").cloned().unwrap_or(false.into()),
        "close": o("close"),
        "submit": o("submit"),
        "previous_view_id": previous,
        "root_view_id": root.unwrap_or_else(|| id.clone()),
        "app_id": APP_ID,
        "external_id": s("external_id"),
        "app_installed_team_id": TEAM_ID,
        "bot_id": BOT_ID
    });
    if let Some(t) = view.get("title") {
        stored["title"] = t.clone();
    }
    default_emoji(&mut stored);
    st.views.insert(id, stored.clone());
    stored
}

/// Slack echoes `plain_text` objects with `"emoji": true` filled in.
fn default_emoji(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("type").and_then(Value::as_str) == Some("plain_text")
                && !m.contains_key("emoji")
            {
                m.insert("emoji".into(), Value::Bool(true));
            }
            m.values_mut().for_each(default_emoji);
        }
        Value::Array(a) => a.iter_mut().for_each(default_emoji),
        _ => {}
    }
}

/// Fills in `block_id` / `action_id` where the app left them out, as Slack does.
pub(crate) fn with_ids(blocks: &[Value]) -> Vec<Value> {
    blocks
        .iter()
        .map(|b| {
            let mut b = b.clone();
            default_emoji(&mut b);
            if b.get("block_id").is_none() {
                b["block_id"] = rand_alnum(5).into();
            }
            let fill = |e: &mut Value| {
                if e.is_object() && e.get("action_id").is_none() && e.get("type").is_some() {
                    e["action_id"] = rand_alnum(5).into();
                }
            };
            if let Some(acc) = b.get_mut("accessory") {
                fill(acc);
            }
            if b["type"] == "actions" {
                if let Some(els) = b.get_mut("elements").and_then(Value::as_array_mut) {
                    els.iter_mut().for_each(fill);
                }
            }
            if b["type"] == "input" {
                if let Some(el) = b.get_mut("element") {
                    fill(el);
                }
            }
            b
        })
        .collect()
}

fn text_len(v: &Value) -> usize {
    v["text"].as_str().map(|s| s.chars().count()).unwrap_or(0)
}

fn check_len(v: &Value, max: usize, ptr: String) -> Result<(), String> {
    if text_len(v) > max {
        return Err(format!(
            "must be less than {} characters [json-pointer:{ptr}/text]",
            max + 1
        ));
    }
    Ok(())
}

fn validate_element(e: &Value, ptr: String) -> Result<(), String> {
    if e["type"] == "button" {
        check_len(&e["text"], 75, format!("{ptr}/text"))?;
        if e["value"]
            .as_str()
            .is_some_and(|v| v.chars().count() > 2000)
        {
            return Err(format!(
                "must be less than 2001 characters [json-pointer:{ptr}/value]"
            ));
        }
    }
    if e["action_id"].as_str().is_some_and(|a| a.len() > 255) {
        return Err(format!(
            "must be less than 256 characters [json-pointer:{ptr}/action_id]"
        ));
    }
    Ok(())
}

/// The Block Kit limits that make Slack reject a message or view.
pub(crate) fn validate_blocks(blocks: &[Value], max: usize, ptr: &str) -> Result<(), String> {
    if blocks.len() > max {
        return Err(format!(
            "no more than {max} items allowed [json-pointer:{ptr}]"
        ));
    }
    let mut block_ids = HashSet::new();
    for (i, b) in blocks.iter().enumerate() {
        let bp = format!("{ptr}/{i}");
        let Some(kind) = b["type"].as_str() else {
            return Err(format!("missing required field: type [json-pointer:{bp}]"));
        };
        if let Some(id) = b["block_id"].as_str() {
            if id.len() > 255 {
                return Err(format!(
                    "must be less than 256 characters [json-pointer:{bp}/block_id]"
                ));
            }
            if !block_ids.insert(id.to_string()) {
                return Err(format!("duplicate block_id [json-pointer:{bp}/block_id]"));
            }
        }
        let mut action_ids = HashSet::new();
        let mut elements: Vec<(&Value, String)> = Vec::new();
        match kind {
            "section" => {
                if b.get("text").is_none() && b.get("fields").is_none() {
                    return Err(format!("must provide text or fields [json-pointer:{bp}]"));
                }
                check_len(&b["text"], 3000, format!("{bp}/text"))?;
                if let Some(fields) = b["fields"].as_array() {
                    if fields.len() > 10 {
                        return Err(format!(
                            "no more than 10 items allowed [json-pointer:{bp}/fields]"
                        ));
                    }
                    for (j, f) in fields.iter().enumerate() {
                        check_len(f, 2000, format!("{bp}/fields/{j}"))?;
                    }
                }
                if let Some(acc) = b.get("accessory") {
                    elements.push((acc, format!("{bp}/accessory")));
                }
            }
            "header" => check_len(&b["text"], 150, format!("{bp}/text"))?,
            "actions" | "context" => {
                let els = b["elements"].as_array().cloned().unwrap_or_default();
                let cap = if kind == "actions" { 25 } else { 10 };
                if els.is_empty() || els.len() > cap {
                    return Err(format!(
                        "must have between 1 and {cap} items [json-pointer:{bp}/elements]"
                    ));
                }
                for (j, e) in b["elements"].as_array().into_iter().flatten().enumerate() {
                    elements.push((e, format!("{bp}/elements/{j}")));
                }
            }
            "input" => {
                check_len(&b["label"], 2000, format!("{bp}/label"))?;
                if b.get("element").is_none() {
                    return Err(format!(
                        "missing required field: element [json-pointer:{bp}]"
                    ));
                }
            }
            _ => {}
        }
        for (e, ep) in elements {
            validate_element(e, ep.clone())?;
            if let Some(a) = e["action_id"].as_str() {
                if !action_ids.insert(a.to_string()) {
                    return Err(format!("duplicate action_id [json-pointer:{ep}/action_id]"));
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn validate_view(view: &Value) -> Result<(), String> {
    let blocks = view["blocks"]
        .as_array()
        .ok_or_else(|| "missing required field: blocks [json-pointer:/view/blocks]".to_string())?;
    validate_blocks(blocks, 100, "/view/blocks")?;
    for (k, max) in [
        ("private_metadata", 3000),
        ("callback_id", 255),
        ("external_id", 255),
    ] {
        if view[k].as_str().is_some_and(|s| s.chars().count() > max) {
            return Err(format!(
                "must be less than {} characters [json-pointer:/view/{k}]",
                max + 1
            ));
        }
    }
    if view["type"] == "modal" {
        if view.get("title").is_none() {
            return Err("missing required field: title [json-pointer:/view/title]".into());
        }
        for k in ["title", "submit", "close"] {
            check_len(&view[k], 24, format!("/view/{k}"))?;
        }
        let has_input = blocks.iter().any(|b| b["type"] == "input");
        if has_input && view.get("submit").is_none_or(Value::is_null) {
            return Err(
                "must provide submit when input blocks are present [json-pointer:/view/submit]"
                    .into(),
            );
        }
    }
    Ok(())
}

impl FakeSlack {
    /// Makes the next `times` calls of `method` fail with `failure`.
    pub fn fail_next(&self, method: &str, times: usize, failure: Failure) {
        let mut st = self.inner.lock();
        let q = st.failures.entry(method.to_string()).or_default();
        q.extend(std::iter::repeat_n(failure, times));
    }

    /// Drops the failures still queued for `method`: it answers normally again.
    pub fn clear_failures(&self, method: &str) {
        self.inner.lock().failures.remove(method);
    }

    /// Every recorded call, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.lock().calls.clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<RecordedCall> {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Waits for a call to `method` matching `pred` (already recorded ones count);
    /// panics after `timeout` listing what was called instead.
    pub async fn wait_for_call(
        &self,
        method: &str,
        pred: impl Fn(&RecordedCall) -> bool,
        timeout: Duration,
    ) -> RecordedCall {
        let found = self
            .wait_until(timeout, |f| {
                f.inner
                    .lock()
                    .calls
                    .iter()
                    .find(|c| c.method == method && pred(c))
                    .cloned()
            })
            .await;
        found.unwrap_or_else(|| {
            let seen: Vec<String> = self.calls().iter().map(|c| c.method.clone()).collect();
            panic!("fake Slack: no matching {method} call within {timeout:?}; calls: {seen:?}")
        })
    }

    /// Makes every `response_url`, issued so far or from now on, answer 404,
    /// as Slack's do 30 minutes after the click (an answer that waited out an
    /// outage).
    pub fn expire_response_urls(&self) {
        let mut st = self.inner.lock();
        st.hooks_expired = true;
        for hook in st.hooks.values_mut() {
            hook.expired = true;
        }
    }

    /// Everything `user` was told: ephemeral messages where they clicked
    /// (`chat.postEphemeral` or a `response_url`), then their DMs.
    pub fn notices_to(&self, user: &str) -> Vec<Value> {
        let mut told = self.ephemerals_to(user);
        told.extend(self.messages_to(user));
        told
    }

    /// Ephemeral messages shown to `user`, by `chat.postEphemeral` or a
    /// `response_url` (each has `channel`, `ephemeral_user`, `text`, `blocks`,
    /// `ts`; `via: "response_url"` for the latter).
    pub fn ephemerals_to(&self, user: &str) -> Vec<Value> {
        self.inner
            .lock()
            .ephemerals
            .iter()
            .filter(|e| e["ephemeral_user"] == user)
            .cloned()
            .collect()
    }

    /// The current version of a posted message (after `chat.update`s), unless deleted.
    pub fn message(&self, channel: &str, ts: &str) -> Option<Value> {
        let mut st = self.inner.lock();
        let channel = st.resolve_channel(channel)?;
        st.messages
            .iter()
            .find(|m| m.channel == channel && m.ts == ts && !m.deleted)
            .map(|m| m.message.clone())
    }

    /// A stored view by id (modal or Home tab).
    pub fn view(&self, id: &str) -> Option<Value> {
        self.inner.lock().views.get(id).cloned()
    }

    /// Current modal stack of `user`, bottom first.
    pub fn modal_stack(&self, user: &str) -> Vec<Value> {
        let st = self.inner.lock();
        st.modal_stacks
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| st.views.get(id).cloned())
            .collect()
    }

    /// Records per method, for quick assertions (`counts()["chat.postMessage"]`).
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for c in self.inner.lock().calls.iter() {
            *m.entry(c.method.clone()).or_default() += 1;
        }
        m
    }
}
