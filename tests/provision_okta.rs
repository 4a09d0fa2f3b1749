//! The `okta` provisioner against a stand-in for Okta's management API on
//! loopback, following its documented shape: users by login or
//! `search=profile.email eq "…"`, groups by `q` (a prefix search), a user's
//! groups paged with `Link: rel="next"` (one per page here, so paging is
//! always exercised), `PUT`/`DELETE /api/v1/groups/{group}/users/{user}`
//! answering 204, 404 for what does not exist, and injected 429s (with
//! `X-Rate-Limit-Reset`), 5xx, redirects and silence.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accessd::config::Secret;
use accessd::provision::okta::OktaProvisioner;
use accessd::provision::{Action, Outcome, Person, Provisioner, Request, Target};
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::Response;
use serde_json::{json, Value};

const TOKEN: &str = "okta-test-token-00000000";

#[derive(Default)]
struct Org {
    /// (id, login, email)
    users: Vec<(String, String, String)>,
    /// (id, name)
    groups: Vec<(String, String)>,
    /// (group id, user id)
    members: BTreeSet<(String, String)>,
    /// Answer for the next PUT or DELETE instead of doing it.
    next_change: Option<Injected>,
    /// `METHOD path` of every call.
    seen: Vec<String>,
    /// Whether every call carried `Authorization: SSWS <TOKEN>`.
    bad_auth: bool,
}

#[derive(Clone)]
enum Injected {
    Status(u16, Vec<(&'static str, String)>),
    Silence,
}

type Shared = Arc<Mutex<Org>>;

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn not_found() -> Response {
    json_response(
        404,
        json!({ "errorCode": "E0000007", "errorSummary": "Not found" }),
    )
}

fn query_value(uri: &Uri, key: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn handle(
    State(org): State<Shared>,
    method: Method,
    headers: axum::http::HeaderMap,
    uri: Uri,
) -> Response {
    let injected = {
        let mut o = org.lock().unwrap();
        o.seen.push(format!("{method} {}", uri.path()));
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("SSWS {TOKEN}"))
        {
            o.bad_auth = true;
        }
        if method == Method::PUT || method == Method::DELETE {
            o.next_change.take()
        } else {
            None
        }
    };
    match injected {
        Some(Injected::Silence) => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return json_response(204, json!({}));
        }
        Some(Injected::Status(status, extra)) => {
            let mut response = Response::builder().status(status);
            for (name, value) in extra {
                response = response.header(name, value);
            }
            return response
                .body(Body::from("{\"errorSummary\":\"injected\"}"))
                .unwrap();
        }
        None => {}
    }
    let mut o = org.lock().unwrap();
    // Ids and the logins here need no percent-decoding.
    let parts: Vec<&str> = uri
        .path()
        .trim_start_matches("/api/v1/")
        .split('/')
        .collect();
    let user_json = |u: &(String, String, String)| json!({ "id": u.0, "profile": { "login": u.1, "email": u.2 } });
    let group_json = |g: &(String, String)| json!({ "id": g.0, "profile": { "name": g.1 } });
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["users"]) => {
            let search = query_value(&uri, "search").unwrap_or_default();
            let email = search
                .strip_prefix("profile.email eq ")
                .map(|q| q.trim_matches('"').to_string())
                .unwrap_or_default();
            let found: Vec<Value> = o
                .users
                .iter()
                .filter(|u| u.2.eq_ignore_ascii_case(&email))
                .map(user_json)
                .collect();
            json_response(200, Value::Array(found))
        }
        ("GET", ["users", key]) => match o.users.iter().find(|u| u.0 == *key || u.1 == *key) {
            Some(u) => json_response(200, user_json(u)),
            None => not_found(),
        },
        ("GET", ["users", user, "groups"]) => {
            if !o.users.iter().any(|u| u.0 == *user) {
                return not_found();
            }
            let mine: Vec<&(String, String)> = o
                .groups
                .iter()
                .filter(|g| o.members.contains(&(g.0.clone(), user.to_string())))
                .collect();
            let after = query_value(&uri, "after");
            let start = after
                .and_then(|a| mine.iter().position(|g| g.0 == a).map(|i| i + 1))
                .unwrap_or(0);
            let page: Vec<Value> = mine
                .iter()
                .skip(start)
                .take(1)
                .map(|g| group_json(g))
                .collect();
            let mut response = Response::builder()
                .status(200)
                .header("content-type", "application/json");
            if let Some(last) = mine.get(start) {
                if start + 1 < mine.len() {
                    response = response.header(
                        "link",
                        format!(
                            "</api/v1/users/{user}/groups?after={}&limit=1>; rel=\"next\"",
                            last.0
                        ),
                    );
                }
            }
            response
                .body(Body::from(Value::Array(page).to_string()))
                .unwrap()
        }
        ("GET", ["groups"]) => {
            let q = query_value(&uri, "q").unwrap_or_default();
            let found: Vec<Value> = o
                .groups
                .iter()
                .filter(|g| g.1.starts_with(&q))
                .map(group_json)
                .collect();
            json_response(200, Value::Array(found))
        }
        ("GET", ["groups", id]) => match o.groups.iter().find(|g| g.0 == *id) {
            Some(g) => json_response(200, group_json(g)),
            None => not_found(),
        },
        (verb @ ("PUT" | "DELETE"), ["groups", group, "users", user]) => {
            let exists =
                o.groups.iter().any(|g| g.0 == *group) && o.users.iter().any(|u| u.0 == *user);
            if !exists {
                return not_found();
            }
            let key = (group.to_string(), user.to_string());
            if verb == "PUT" {
                o.members.insert(key);
            } else {
                o.members.remove(&key);
            }
            Response::builder().status(204).body(Body::empty()).unwrap()
        }
        _ => not_found(),
    }
}

async fn start(org: Org) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(org));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, shared)
}

/// Ann (login `ann.lee`, not her email) in three groups already, so her
/// groups take three pages; `eng` and `eng-admins` share a prefix.
fn org() -> Org {
    let mut org = Org {
        users: vec![("00u1".into(), "ann.lee".into(), "ann@example.com".into())],
        groups: ["00g-a", "00g-b", "00g-c", "00g-eng", "00g-eng-admins"]
            .iter()
            .zip(["alpha", "beta", "gamma", "eng", "eng-admins"])
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect(),
        ..Org::default()
    };
    for g in ["00g-a", "00g-b", "00g-c"] {
        org.members.insert((g.into(), "00u1".into()));
    }
    org
}

fn provisioner(url: &str, timeout: Duration) -> OktaProvisioner {
    accessd::install_crypto_provider();
    OktaProvisioner::new(url, Secret::new(TOKEN.into()), timeout).expect("valid provisioner")
}

fn request(action: Action, entitlement: &str, target: Option<Target>) -> Request {
    Request {
        action,
        idempotency_key: "k".into(),
        ticket: "T-1".into(),
        app: "okta".into(),
        role: "member".into(),
        entitlement: entitlement.into(),
        user: Person {
            email: "ann@example.com".into(),
            slack_id: "U1".into(),
        },
        expires_at: None,
        target,
        account: None,
    }
}

fn member(org: &Shared, group: &str) -> bool {
    org.lock()
        .unwrap()
        .members
        .contains(&(group.to_string(), "00u1".to_string()))
}

#[tokio::test]
async fn a_grant_adds_the_member_by_email_and_reports_the_ids_then_is_already_there() {
    let (url, org) = start(org()).await;
    let p = provisioner(&url, Duration::from_secs(5));
    let (outcome, target) = p
        .provision_for_record(&request(Action::Grant, "eng", None))
        .await;
    assert_eq!(outcome, Outcome::Applied);
    let target = target.expect("ids to record");
    assert_eq!(
        target,
        Target {
            account: "00u1".into(),
            group: Some("00g-eng".into())
        }
    );
    assert!(member(&org, "00g-eng"));
    assert!(!member(&org, "00g-eng-admins"), "a prefix match was taken");
    // Her membership is on the fourth page now: read to the end.
    let (again, _) = p
        .provision_for_record(&request(Action::Grant, "eng", None))
        .await;
    assert_eq!(again, Outcome::AlreadyInState);
    let o = org.lock().unwrap();
    assert_eq!(o.seen.iter().filter(|s| s.starts_with("PUT")).count(), 1);
    assert!(!o.bad_auth, "a call without the SSWS token");
}

#[tokio::test]
async fn a_revoke_uses_the_recorded_ids_so_a_renamed_group_is_still_found() {
    let (url, org) = start(org()).await;
    let p = provisioner(&url, Duration::from_secs(5));
    let (_, target) = p
        .provision_for_record(&request(Action::Grant, "eng", None))
        .await;
    // The group is renamed in Okta: by its id the revoke still finds it.
    org.lock().unwrap().groups[3].1 = "engineering".into();
    let revoke = request(Action::Revoke, "eng", target.clone());
    assert_eq!(p.provision(&revoke).await, Outcome::Applied);
    assert!(!member(&org, "00g-eng"));
    assert_eq!(p.provision(&revoke).await, Outcome::AlreadyInState);

    // Already a member: nothing changed, and the ids are still reported, so
    // a later revoke of this ticket finds the same membership.
    let (outcome, target) = p
        .provision_for_record(&request(Action::Grant, "gamma", None))
        .await;
    assert_eq!(outcome, Outcome::AlreadyInState);
    assert_eq!(target.and_then(|t| t.group).as_deref(), Some("00g-c"));
}

#[tokio::test]
async fn a_group_or_user_gone_at_revoke_time_is_a_failure_not_done() {
    let (url, org) = start(org()).await;
    let p = provisioner(&url, Duration::from_secs(5));
    let (_, target) = p
        .provision_for_record(&request(Action::Grant, "eng", None))
        .await;
    org.lock().unwrap().groups.retain(|g| g.0 != "00g-eng");
    let outcome = p
        .provision(&request(Action::Revoke, "eng", target.clone()))
        .await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("00g-eng") && message.contains("check in Okta")),
        "{outcome:?}"
    );
    org.lock().unwrap().users.clear();
    let outcome = p
        .provision(&request(
            Action::Revoke,
            "alpha",
            Some(Target {
                account: "00u1".into(),
                group: Some("00g-a".into()),
            }),
        ))
        .await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("00u1") && message.contains("not found")),
        "{outcome:?}"
    );
    // Without ids, a lookup that misses is a failure too.
    let outcome = p.provision(&request(Action::Revoke, "alpha", None)).await;
    assert!(matches!(outcome, Outcome::Permanent { .. }), "{outcome:?}");
}

#[tokio::test]
async fn rate_limits_server_errors_redirects_and_silence() {
    let (url, org) = start(org()).await;
    let p = provisioner(&url, Duration::from_millis(400));
    let grant = request(Action::Grant, "eng", None);
    let inject = |i: Injected| org.lock().unwrap().next_change = Some(i);

    let reset = chrono::Utc::now().timestamp() + 7;
    inject(Injected::Status(
        429,
        vec![("x-rate-limit-reset", reset.to_string())],
    ));
    match p.provision(&grant).await {
        Outcome::Transient {
            retry_after: Some(wait),
            ..
        } => assert!((5..=7).contains(&wait.as_secs()), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    inject(Injected::Status(503, vec![]));
    assert!(matches!(
        p.provision(&grant).await,
        Outcome::Transient { .. }
    ));
    inject(Injected::Status(403, vec![]));
    let outcome = p.provision(&grant).await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("403")),
        "{outcome:?}"
    );
    inject(Injected::Status(
        302,
        vec![("location", format!("{url}/elsewhere"))],
    ));
    let outcome = p.provision(&grant).await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("/elsewhere") && message.contains("not followed")),
        "{outcome:?}"
    );
    inject(Injected::Silence);
    let outcome = p.provision(&grant).await;
    assert!(
        matches!(&outcome, Outcome::Transient { message, .. } if message.contains("timed out")),
        "{outcome:?}"
    );
    assert!(!member(&org, "00g-eng"));
    assert!(!org
        .lock()
        .unwrap()
        .seen
        .iter()
        .any(|s| s.contains("/elsewhere")));
    // And once Okta is itself again, the grant lands.
    assert_eq!(p.provision(&grant).await, Outcome::Applied);
}

#[test]
fn the_token_never_shows() {
    let p = provisioner("https://example.okta.com", Duration::from_secs(1));
    let shown = format!("{p:?}");
    assert!(
        !shown.contains(TOKEN) && shown.contains("example.okta.com"),
        "{shown}"
    );
}
