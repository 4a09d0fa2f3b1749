//! The `scim` source against the real `scim2-server` (paging, filter,
//! enterprise manager, group entitlements) and against an axum fake for what
//! a healthy server will not show: failing pages, refused tokens, rate
//! limits, servers that drop members from listings or ignore `startIndex`.

#[path = "support/scim_server.rs"]
mod scim_server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accessd::config::Secret;
use accessd::sources::scim::ScimSource;
use accessd::sources::{AccountStatus, Snapshot, SourceError};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use scim_server::{free_port, server, unique, Admin, TOKEN};
use serde_json::{json, Value};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The real server's Groups listing is server-wide: a group created by a
/// parallel test between two pages would shift the offsets (and the source
/// rightly refuses the moved listing), so the real-server tests take turns.
static REAL_SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn source(url: &str, token: &str, filter: Option<String>) -> ScimSource {
    ScimSource::new(url, Secret::new(token.into()), filter, "idp".into()).expect("valid source")
}

/// Runs the source the way the daemon does: fetch, then normalize.
async fn fetch(source: &ScimSource) -> Result<Snapshot, SourceError> {
    source.fetch().await.and_then(Snapshot::normalized)
}

#[tokio::test]
async fn reads_filtered_users_and_groups_across_pages_of_the_real_server() {
    let _turn = REAL_SERVER.lock().await;
    let admin = Admin::new();
    let prefix = unique("src");
    let user = |name: &str, body: Value| {
        let mut body = body;
        body["userName"] = format!("{prefix}-{name}").into();
        body["schemas"] = json!([USER_SCHEMA, ENTERPRISE]);
        body
    };
    let boss = admin
        .post(
            "Users",
            user(
                "boss",
                json!({ "displayName": "Bo Boss",
                        "emails": [{ "value": "Boss@Example.com", "primary": true }] }),
            ),
        )
        .await;
    let ann = admin
        .post(
            "Users",
            user(
                "ann",
                json!({ "name": { "givenName": "Ann", "familyName": "Lee" },
                        "emails": [{ "value": "ann.old@example.com" },
                                   { "value": "ann@example.com", "primary": true }],
                        ENTERPRISE: { "manager": { "value": boss } } }),
            ),
        )
        .await;
    let cho = admin
        .post(
            "Users",
            user(
                "cho",
                json!({ "name": { "formatted": "Cho Park" }, "active": false,
                        "emails": [{ "value": "cho@example.com" }],
                        ENTERPRISE: { "manager": { "value": ann } } }),
            ),
        )
        .await;
    // No email at all: the userName stands in when it is one.
    let dee_name = format!("{prefix}-dee@example.com");
    let dee = admin
        .post(
            "Users",
            json!({ "schemas": [USER_SCHEMA], "userName": dee_name, "active": true }),
        )
        .await;
    let eve = admin
        .post(
            "Users",
            user(
                "eve",
                json!({ "emails": [{ "value": "eve@example.com", "primary": true }],
                        // A manager outside the filter cannot be resolved.
                        ENTERPRISE: { "manager": { "value": "not-listed" } } }),
            ),
        )
        .await;
    // Outside the filter, but a member of the same group.
    let outsider_name = unique("other");
    let outsider = admin
        .user(&outsider_name, &format!("{outsider_name}@example.com"))
        .await;

    let eng = format!("{prefix} eng");
    let ops = format!("{prefix} ops");
    let empty = format!("{prefix} empty");
    let group = |name: &str, members: &[&str]| {
        json!({ "schemas": [GROUP_SCHEMA], "displayName": name,
                "members": members.iter().map(|m| json!({ "value": m })).collect::<Vec<_>>() })
    };
    admin
        .post("Groups", group(&eng, &[&ann, &cho, &outsider]))
        .await;
    admin.post("Groups", group(&ops, &[&ann, &eve])).await;
    admin.post("Groups", group(&empty, &[])).await;

    let filter = format!("userName sw \"{prefix}-\"");
    let snap = fetch(&source(&server().url, TOKEN, Some(filter)).with_page_size(2))
        .await
        .expect("a complete snapshot");

    assert!(snap.apps.is_empty());
    let by_id: HashMap<&str, _> = snap.accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut ids: Vec<&str> = by_id.keys().copied().collect();
    ids.sort();
    let mut want = vec![
        boss.as_str(),
        ann.as_str(),
        cho.as_str(),
        dee.as_str(),
        eve.as_str(),
    ];
    want.sort();
    assert_eq!(ids, want, "exactly the filtered users, from 3 pages of 2");
    assert!(snap.accounts.iter().all(|a| a.app == "idp"));

    let a = by_id[ann.as_str()];
    assert_eq!(a.email.as_deref(), Some("ann@example.com"));
    assert_eq!(a.name.as_deref(), Some("Ann Lee"));
    assert_eq!(a.status, AccountStatus::Active);
    assert_eq!(a.manager.as_deref(), Some("boss@example.com"));
    assert_eq!(a.entitlements, vec![eng.clone(), ops.clone()]);

    let c = by_id[cho.as_str()];
    assert_eq!(c.email.as_deref(), Some("cho@example.com"));
    assert_eq!(c.name.as_deref(), Some("Cho Park"));
    assert_eq!(c.status, AccountStatus::Suspended);
    assert_eq!(c.manager.as_deref(), Some("ann@example.com"));
    assert_eq!(c.entitlements, vec![eng.clone()]);

    let b = by_id[boss.as_str()];
    assert_eq!(b.email.as_deref(), Some("boss@example.com"));
    assert_eq!(b.name.as_deref(), Some("Bo Boss"));
    assert_eq!(b.manager, None);
    assert!(b.entitlements.is_empty());

    let d = by_id[dee.as_str()];
    assert_eq!(d.email, Some(dee_name.to_lowercase()));
    assert_eq!(d.status, AccountStatus::Active);

    let e = by_id[eve.as_str()];
    assert_eq!(e.manager, None);
    assert_eq!(e.entitlements, vec![ops.clone()]);
}

#[tokio::test]
async fn the_real_server_refuses_a_wrong_token_and_the_error_does_not_show_it() {
    let secret = "sk-scim-0123456789-very-secret";
    let s = source(&server().url, secret, None);
    assert!(!format!("{s:?}").contains("0123456789"));
    let err = fetch(&s).await.expect_err("refused");
    assert!(matches!(err, SourceError::Auth(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("401") && shown.contains("/Users"), "{shown}");
    assert!(!shown.contains("0123456789"), "{shown}");
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable() {
    let s = source(&format!("http://127.0.0.1:{}", free_port()), TOKEN, None);
    let err = fetch(&s).await.expect_err("nobody listens");
    assert!(
        matches!(&err, SourceError::Unavailable(m) if m.contains("connect")),
        "{err:?}"
    );
}

// ---- the fake: RFC 7644 list responses, with faults on demand ----

#[derive(Default)]
struct Fake {
    users: Vec<Value>,
    groups: Vec<Value>,
    /// (resource kind, startIndex) → status (and Retry-After) answered there.
    faults: HashMap<(String, usize), (u16, Option<&'static str>)>,
    /// Drops `members` from the Groups listing, as some IdPs do.
    members_only_by_id: bool,
    /// Answers the first page whatever `startIndex` says.
    ignore_start_index: bool,
    /// Claims this many results but has fewer.
    claimed_total: Option<usize>,
    /// A user is created right after the first page is served.
    grows: bool,
    /// Every request as `path?startIndex`.
    seen: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn scim_error(status: u16, detail: &str) -> Response {
    let body = json!({ "schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail });
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn list(
    State(fake): State<Shared>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return scim_error(401, "Authorization failure");
    }
    let mut fake = fake.lock().unwrap();
    let start: usize = q
        .get("startIndex")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let count: usize = q.get("count").and_then(|s| s.parse().ok()).unwrap_or(100);
    fake.seen.push(format!(
        "/{kind}?startIndex={start}{}",
        q.get("filter")
            .map(|f| format!("&filter={f}"))
            .unwrap_or_default()
    ));
    if let Some((status, retry)) = fake.faults.get(&(kind.clone(), start)).copied() {
        let mut response = scim_error(status, "injected fault");
        if let Some(retry) = retry {
            response
                .headers_mut()
                .insert("retry-after", retry.parse().unwrap());
        }
        return response;
    }
    let mut all = match kind.as_str() {
        "Users" => fake.users.clone(),
        "Groups" => fake.groups.clone(),
        _ => return scim_error(404, "no such resource type"),
    };
    if kind == "Groups" && fake.members_only_by_id {
        all.iter_mut()
            .for_each(|g| drop(g.as_object_mut().unwrap().remove("members")));
    }
    let from = if fake.ignore_start_index { 1 } else { start };
    let page: Vec<Value> = all.iter().skip(from - 1).take(count).cloned().collect();
    let body = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": fake.claimed_total.unwrap_or(all.len()),
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    });
    if fake.grows && kind == "Users" {
        let n = fake.users.len() + 1;
        fake.users.insert(0, fake_users(n).remove(n - 1));
    }
    (
        [("content-type", "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

async fn one_group(
    State(fake): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return scim_error(401, "Authorization failure");
    }
    let mut fake = fake.lock().unwrap();
    fake.seen.push(format!("/Groups/{id}"));
    match fake.groups.iter().find(|g| g["id"] == id.as_str()) {
        Some(g) => ([("content-type", "application/scim+json")], g.to_string()).into_response(),
        None => scim_error(404, "Resource not found"),
    }
}

async fn start_fake(fake: Fake) -> (String, Shared) {
    let shared = Arc::new(Mutex::new(fake));
    let app = Router::new()
        .route("/scim/v2/Groups/{id}", get(one_group))
        .route("/scim/v2/{kind}", get(list))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/scim/v2"), shared)
}

fn fake_users(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            json!({ "schemas": [USER_SCHEMA], "id": format!("u{i}"), "userName": format!("user{i}@example.com"),
                    "active": true, "meta": { "resourceType": "User" } })
        })
        .collect()
}

#[tokio::test]
async fn an_error_on_the_second_page_fails_the_whole_fetch() {
    let mut fake = Fake {
        users: fake_users(5),
        ..Fake::default()
    };
    fake.faults.insert(("Users".into(), 3), (503, None));
    let (url, state) = start_fake(fake).await;
    let err = fetch(&source(&url, TOKEN, None).with_page_size(2))
        .await
        .expect_err("no partial snapshot");
    assert!(
        matches!(&err, SourceError::Unavailable(m) if m.contains("503") && m.contains("/scim/v2/Users")),
        "{err:?}"
    );
    assert_eq!(
        state.lock().unwrap().seen,
        vec!["/Users?startIndex=1", "/Users?startIndex=3"]
    );
}

#[tokio::test]
async fn a_failing_group_page_fails_the_whole_fetch_too() {
    let mut fake = Fake {
        users: fake_users(1),
        groups: vec![
            json!({"id": "g1", "displayName": "a", "members": [{"value": "u1"}]}),
            json!({"id": "g2", "displayName": "b", "members": [{"value": "u1"}]}),
        ],
        ..Fake::default()
    };
    fake.faults.insert(("Groups".into(), 2), (500, None));
    let (url, _) = start_fake(fake).await;
    let err = fetch(&source(&url, TOKEN, None).with_page_size(1))
        .await
        .expect_err("no partial snapshot");
    assert!(
        matches!(&err, SourceError::Unavailable(m) if m.contains("500") && m.contains("Groups")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_token_is_an_auth_error_that_never_shows_the_token() {
    let (url, _) = start_fake(Fake {
        users: fake_users(1),
        ..Fake::default()
    })
    .await;
    let secret = "scim-tok-ABCDEF-987654";
    let err = fetch(&source(&url, secret, None))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, SourceError::Auth(m) if m.contains("401") && m.contains("Authorization failure")),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("987654"));
    // A 403 on a later page is an auth error as well.
    let mut fake = Fake {
        users: fake_users(3),
        ..Fake::default()
    };
    fake.faults.insert(("Users".into(), 3), (403, None));
    let (url, _) = start_fake(fake).await;
    let err = fetch(&source(&url, TOKEN, None).with_page_size(2))
        .await
        .expect_err("forbidden");
    assert!(
        matches!(&err, SourceError::Auth(m) if m.contains("403")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_rate_limit_carries_the_retry_hint() {
    let mut fake = Fake {
        users: fake_users(3),
        ..Fake::default()
    };
    fake.faults.insert(("Users".into(), 3), (429, Some("42")));
    let (url, _) = start_fake(fake).await;
    let err = fetch(&source(&url, TOKEN, None).with_page_size(2))
        .await
        .expect_err("rate limited");
    assert!(
        matches!(err, SourceError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(42)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "rate limited; retry after 42s");
}

#[tokio::test]
async fn members_left_out_of_the_listing_are_read_from_each_group() {
    let (url, state) = start_fake(Fake {
        users: fake_users(3),
        groups: vec![
            json!({"schemas": [GROUP_SCHEMA], "id": "g1", "displayName": "Admins",
                   "members": [{"value": "u1"}, {"value": "u3"}, {"value": "gone"}]}),
            json!({"schemas": [GROUP_SCHEMA], "id": "g2", "displayName": "Readers",
                   "members": [{"value": "u3", "type": "User"}]}),
        ],
        members_only_by_id: true,
        ..Fake::default()
    })
    .await;
    let filter = Some("userName sw \"user\"".to_string());
    let snap = fetch(&source(&url, TOKEN, filter).with_page_size(2))
        .await
        .expect("complete");
    let ents: Vec<(&str, Vec<String>)> = snap
        .accounts
        .iter()
        .map(|a| (a.id.as_str(), a.entitlements.clone()))
        .collect();
    assert_eq!(
        ents,
        vec![
            ("u1", vec!["Admins".to_string()]),
            ("u2", vec![]),
            ("u3", vec!["Admins".to_string(), "Readers".to_string()]),
        ]
    );
    assert_eq!(snap.accounts[1].email.as_deref(), Some("user2@example.com"));
    assert_eq!(
        state.lock().unwrap().seen,
        vec![
            "/Users?startIndex=1&filter=userName sw \"user\"",
            "/Users?startIndex=3&filter=userName sw \"user\"",
            "/Groups?startIndex=1",
            "/Groups/g1",
            "/Groups/g2",
        ]
    );
}

#[tokio::test]
async fn a_server_that_ignores_start_index_is_refused_not_looped() {
    let (url, state) = start_fake(Fake {
        users: fake_users(4),
        ignore_start_index: true,
        ..Fake::default()
    })
    .await;
    let err = fetch(&source(&url, TOKEN, None).with_page_size(2))
        .await
        .expect_err("the same page twice");
    assert!(
        matches!(&err, SourceError::Invalid(m) if m.contains("\"u1\"") && m.contains("startIndex")),
        "{err:?}"
    );
    assert_eq!(state.lock().unwrap().seen.len(), 2);
}

#[tokio::test]
async fn fewer_results_than_announced_is_no_snapshot() {
    let (url, _) = start_fake(Fake {
        users: fake_users(3),
        claimed_total: Some(4),
        ..Fake::default()
    })
    .await;
    let err = fetch(&source(&url, TOKEN, None).with_page_size(2))
        .await
        .expect_err("one result missing");
    assert!(
        matches!(&err, SourceError::Invalid(m) if m.contains("3 of 4")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_listing_that_changes_while_paging_is_no_snapshot() {
    // The new user sorts first, shifting every offset: page 2 would repeat
    // one user and the last would never be read.
    let (url, _) = start_fake(Fake {
        users: fake_users(3),
        grows: true,
        ..Fake::default()
    })
    .await;
    let err = fetch(&source(&url, TOKEN, None).with_page_size(2))
        .await
        .expect_err("moved listing");
    assert!(
        matches!(&err, SourceError::Unavailable(m) if m.contains("totalResults changed from 3 to 4")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreadable_body_is_invalid() {
    // A list response without the required totalResults.
    let app = Router::new().route(
        "/Users",
        get(|| async {
            (
                [("content-type", "application/scim+json")],
                "{\"Resources\": []}",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let err = fetch(&source(&format!("http://{addr}"), TOKEN, None))
        .await
        .expect_err("no totalResults");
    assert!(
        matches!(&err, SourceError::Invalid(m) if m.contains("totalResults")),
        "{err:?}"
    );
}
