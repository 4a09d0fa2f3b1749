//! The `okta` source against a fake Okta org on loopback that answers like
//! the Management API documents: user, group, app and app-user objects,
//! `after` cursors in `Link` headers (one header per link, `self` and
//! `next`), `X-Rate-Limit-*` headers, and Okta's error bodies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use accessd::config::Secret;
use accessd::sources::okta::OktaSource;
use accessd::sources::{AccountStatus, Snapshot, SourceError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

const TOKEN: &str = "00abcSECRETokta-token-value";
/// The fake pages this small to make every listing span several pages.
const PAGE: usize = 2;

#[derive(Clone)]
struct Failure {
    path: String,
    page: usize,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Default)]
struct Org {
    base: String,
    users: Vec<Value>,
    groups: Vec<Value>,
    members: HashMap<String, Vec<&'static str>>,
    apps: Vec<Value>,
    app_users: HashMap<String, Vec<Value>>,
    failures: Vec<Failure>,
    /// Replaces the next link of every page of this path.
    next_override: Option<(String, String)>,
    /// X-Rate-Limit-Remaining / -Reset on the first answer.
    first_window: Option<(u64, u64)>,
    /// Path, query and Host of every request.
    seen: Vec<(String, String, String)>,
}

type Shared = Arc<Mutex<Org>>;
/// Whether an error is the expected one.
type Check = fn(&SourceError) -> bool;

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn okta_error(status: u16, code: &str, summary: &str) -> Failure {
    Failure {
        path: String::new(),
        page: 0,
        status,
        headers: vec![],
        body: json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oaeSQAZ2qCYRwWxNDvqbxJOjA",
            "errorCauses": []
        })
        .to_string(),
    }
}

async fn handle(State(org): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let auth = request
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut org = org.lock().unwrap();
    let first = org.seen.is_empty();
    org.seen.push((path.clone(), query.clone(), host));
    let reset = epoch() + 60;
    let (remaining, reset) = match (first, org.first_window) {
        (true, Some(window)) => window,
        _ => (599, reset),
    };
    let reply = |status: u16, headers: Vec<(String, String)>, body: String| {
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
        let defaults = [
            ("content-type", "application/json".to_string()),
            ("x-rate-limit-limit", "600".to_string()),
            ("x-rate-limit-remaining", remaining.to_string()),
            ("x-rate-limit-reset", reset.to_string()),
        ];
        let map = response.headers_mut();
        for (name, value) in defaults {
            map.insert(name, value.parse().unwrap());
        }
        // A failure's headers replace the defaults; Link headers add up.
        for (name, value) in headers {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            if name == "link" {
                map.append(name, value.parse().unwrap());
            } else {
                map.insert(name, value.parse().unwrap());
            }
        }
        response
    };
    if auth != format!("SSWS {TOKEN}") {
        let e = okta_error(401, "E0000011", "Invalid token provided");
        return reply(401, vec![], e.body);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let items: Vec<Value> = match segments.as_slice() {
        ["api", "v1", "users"] => {
            let deprovisioned = match params.get("filter").map(String::as_str) {
                None => false,
                Some(r#"status eq "DEPROVISIONED""#) => true,
                Some(_) => {
                    let e = okta_error(400, "E0000031", "Invalid search criteria.");
                    return reply(400, vec![], e.body);
                }
            };
            org.users
                .iter()
                .filter(|u| (u["status"] == "DEPROVISIONED") == deprovisioned)
                .cloned()
                .collect()
        }
        ["api", "v1", "groups"] => org.groups.clone(),
        ["api", "v1", "groups", id, "users"] => {
            let ids = org.members.get(*id).cloned().unwrap_or_default();
            ids.iter()
                .filter_map(|m| org.users.iter().find(|u| u["id"] == *m).cloned())
                .collect()
        }
        ["api", "v1", "apps"] => org.apps.clone(),
        ["api", "v1", "apps", id, "users"] => org.app_users.get(*id).cloned().unwrap_or_default(),
        _ => {
            let e = okta_error(
                404,
                "E0000007",
                &format!("Not found: Resource not found: {path}"),
            );
            return reply(404, vec![], e.body);
        }
    };
    let start = match params.get("after") {
        Some(after) => match items.iter().position(|i| i["id"] == after.as_str()) {
            Some(i) => i + 1,
            None => items.len(),
        },
        None => 0,
    };
    let page = start / PAGE;
    if let Some(f) = org
        .failures
        .iter()
        .find(|f| f.path == path && f.page == page)
    {
        return reply(f.status, f.headers.clone(), f.body.clone());
    }
    let end = (start + PAGE).min(items.len());
    let body = Value::Array(items[start..end].to_vec()).to_string();
    let limit = params.get("limit").cloned().unwrap_or_else(|| "200".into());
    let mut links = vec![(
        "link".to_string(),
        format!("<{}{path}?{query}>; rel=\"self\"", org.base),
    )];
    if end < items.len() {
        let next = match &org.next_override {
            Some((p, link)) if *p == path => link.clone(),
            _ => format!(
                "{}{path}?after={}&limit={limit}",
                org.base,
                items[end - 1]["id"].as_str().unwrap()
            ),
        };
        links.push(("link".to_string(), format!("<{next}>; rel=\"next\"")));
    }
    reply(200, links, body)
}

fn user(id: &str, status: &str, first: &str, last: &str, email: &str, extra: Value) -> Value {
    let mut profile = json!({
        "firstName": first, "lastName": last, "mobilePhone": null, "secondEmail": null,
        "login": email, "email": email
    });
    if let (Some(p), Value::Object(extra)) = (profile.as_object_mut(), extra) {
        p.extend(extra);
    }
    json!({
        "id": id, "status": status,
        "created": "2023-01-05T10:00:00.000Z", "activated": null,
        "statusChanged": "2024-02-01T09:00:00.000Z", "lastLogin": null,
        "lastUpdated": "2024-02-01T09:00:00.000Z", "passwordChanged": null,
        "type": { "id": "otyfnjfba4ye7pgjB0g4" },
        "profile": profile,
        "credentials": { "provider": { "type": "OKTA", "name": "OKTA" } },
        "_links": { "self": { "href": format!("https://example.okta.com/api/v1/users/{id}") } }
    })
}

fn group(id: &str, kind: &str, name: &str) -> Value {
    json!({
        "id": id, "created": "2023-01-01T00:00:00.000Z",
        "lastUpdated": "2023-01-01T00:00:00.000Z",
        "lastMembershipUpdated": "2024-01-01T00:00:00.000Z",
        "objectClass": ["okta:user_group"], "type": kind,
        "profile": { "name": name, "description": null },
        "_links": {}
    })
}

fn app(id: &str, name: &str, label: &str, status: &str) -> Value {
    json!({
        "id": id, "name": name, "label": label, "status": status,
        "lastUpdated": "2024-01-01T00:00:00.000Z", "created": "2023-01-01T00:00:00.000Z",
        "accessibility": { "selfService": false }, "visibility": { "hide": { "iOS": false, "web": false } },
        "features": [], "signOnMode": "SAML_2_0", "credentials": {}, "settings": {}, "_links": {}
    })
}

fn app_user(id: &str, user_name: &str, profile: Value) -> Value {
    json!({
        "id": id, "externalId": null, "created": "2023-03-01T00:00:00.000Z",
        "lastUpdated": "2023-03-01T00:00:00.000Z", "scope": "USER", "status": "PROVISIONED",
        "statusChanged": "2023-03-01T00:00:00.000Z", "passwordChanged": null,
        "syncState": "DISABLED", "credentials": { "userName": user_name },
        "profile": profile, "_links": {}
    })
}

/// Five users of five statuses, three groups (one built-in), three apps
/// (one inactive).
fn populated() -> Org {
    let mut org = Org {
        users: vec![
            user(
                "00u1ann",
                "ACTIVE",
                "Ann",
                "Lee",
                "Ann.Lee@Example.com",
                json!({ "managerId": "00u2bob" }),
            ),
            user(
                "00u2bob",
                "LOCKED_OUT",
                "Bob",
                "Stone",
                "bob@example.com",
                json!({ "manager": "Carol Diaz" }),
            ),
            user(
                "00u3cat",
                "SUSPENDED",
                "Cat",
                "Ng",
                "cat@example.com",
                json!({ "managerId": "mia@example.com" }),
            ),
            user(
                "00u4dan",
                "STAGED",
                "Dan",
                "Oak",
                "dan@example.com",
                json!({}),
            ),
            user(
                "00u5eve",
                "DEPROVISIONED",
                "Eve",
                "Park",
                "eve@example.com",
                json!({}),
            ),
            user(
                "00u6fay",
                "DEPROVISIONED",
                "Fay",
                "Quinn",
                "fay@example.com",
                json!({}),
            ),
        ],
        groups: vec![
            group("00g0all", "BUILT_IN", "Everyone"),
            group("00g1eng", "OKTA_GROUP", "Engineering"),
            group("00g2adm", "OKTA_GROUP", "Okta Admins"),
            group("00g3ad", "APP_GROUP", "AD Finance"),
        ],
        apps: vec![
            app("0oa1slack", "slack", "Slack", "ACTIVE"),
            app("0oa2gh", "githubcloud", "GitHub Enterprise", "ACTIVE"),
            app("0oa3old", "template_saml_2_0", "Old Wiki", "INACTIVE"),
        ],
        ..Org::default()
    };
    org.members.insert(
        "00g0all".into(),
        vec!["00u1ann", "00u2bob", "00u3cat", "00u4dan"],
    );
    org.members
        .insert("00g1eng".into(), vec!["00u1ann", "00u2bob", "00u3cat"]);
    org.members.insert("00g2adm".into(), vec!["00u1ann"]);
    org.members
        .insert("00g3ad".into(), vec!["00u3cat", "00u6fay"]);
    org.app_users.insert(
        "0oa1slack".into(),
        vec![
            app_user(
                "00u1ann",
                "ann.lee@example.com",
                json!({ "role": "Workspace Admin" }),
            ),
            app_user("00u3cat", "cat@example.com", json!({ "role": null })),
            app_user("00u5eve", "eve@example.com", json!({ "role": "Member" })),
        ],
    );
    org.app_users.insert(
        "0oa2gh".into(),
        vec![app_user(
            "00u2bob",
            "bstone",
            json!({ "role": ["maintainer", "billing"] }),
        )],
    );
    org.app_users.insert(
        "0oa3old".into(),
        vec![app_user("00u1ann", "ann", json!({}))],
    );
    org
}

async fn serve(mut org: Org) -> (Shared, OktaSource, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    org.base = base.clone();
    let shared = Arc::new(Mutex::new(org));
    let router = Router::new().fallback(handle).with_state(shared.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let source = OktaSource::new(&base, Secret::new(TOKEN.into()), "okta".into()).unwrap();
    (shared, source, base)
}

async fn fetch(source: &OktaSource) -> Result<Snapshot, SourceError> {
    source.fetch().await.and_then(Snapshot::normalized)
}

#[tokio::test]
async fn reads_every_status_groups_and_assignments_across_pages() {
    let (org, source, base) = serve(populated()).await;
    let snap = fetch(&source).await.unwrap();

    let apps: Vec<(&str, &str, &str)> = snap
        .apps
        .iter()
        .map(|a| (a.id.as_str(), a.name.as_str(), a.url.as_deref().unwrap()))
        .collect();
    let admin = |p: &str| format!("{base}/admin/app/{p}");
    assert_eq!(
        apps,
        vec![
            (
                "github-enterprise",
                "GitHub Enterprise",
                admin("githubcloud/instance/0oa2gh/").as_str()
            ),
            (
                "old-wiki",
                "Old Wiki",
                admin("template_saml_2_0/instance/0oa3old/").as_str()
            ),
            (
                "slack",
                "Slack",
                admin("slack/instance/0oa1slack/").as_str()
            ),
        ]
    );

    let find = |app: &str, id: &str| {
        snap.accounts
            .iter()
            .find(|a| a.app == app && a.id == id)
            .unwrap_or_else(|| panic!("no account {app}/{id}"))
    };
    let directory: Vec<_> = snap.accounts.iter().filter(|a| a.app == "okta").collect();
    assert_eq!(directory.len(), 6, "both listings, DEPROVISIONED included");

    let ann = find("okta", "00u1ann");
    assert_eq!(ann.email.as_deref(), Some("ann.lee@example.com"));
    assert_eq!(ann.name.as_deref(), Some("Ann Lee"));
    assert_eq!(ann.status, AccountStatus::Active);
    assert_eq!(
        ann.manager.as_deref(),
        Some("bob@example.com"),
        "managerId is Bob's Okta id"
    );
    assert_eq!(
        ann.entitlements,
        vec!["Engineering", "Okta Admins"],
        "Everyone is left out"
    );
    assert_eq!(
        ann.url.as_deref(),
        Some(format!("{base}/admin/user/profile/view/00u1ann").as_str())
    );

    let bob = find("okta", "00u2bob");
    assert_eq!(
        bob.status,
        AccountStatus::Active,
        "LOCKED_OUT is still an account in use"
    );
    assert_eq!(bob.manager, None, "a display name is not a manager email");
    assert_eq!(bob.entitlements, vec!["Engineering"]);

    let cat = find("okta", "00u3cat");
    assert_eq!(cat.status, AccountStatus::Suspended);
    assert_eq!(cat.manager.as_deref(), Some("mia@example.com"));
    assert_eq!(cat.entitlements, vec!["AD Finance", "Engineering"]);

    assert_eq!(find("okta", "00u4dan").status, AccountStatus::Pending);
    assert!(find("okta", "00u4dan").entitlements.is_empty());
    assert_eq!(find("okta", "00u5eve").status, AccountStatus::Deprovisioned);
    let fay = find("okta", "00u6fay");
    assert_eq!(fay.status, AccountStatus::Deprovisioned);
    assert_eq!(fay.entitlements, vec!["AD Finance"]);

    let slack: Vec<_> = snap.accounts.iter().filter(|a| a.app == "slack").collect();
    assert_eq!(slack.len(), 3, "two pages of Slack assignments");
    let ann_slack = find("slack", "00u1ann");
    assert_eq!(ann_slack.email.as_deref(), Some("ann.lee@example.com"));
    assert_eq!(ann_slack.entitlements, vec!["Workspace Admin"]);
    assert_eq!(ann_slack.status, AccountStatus::Active);
    assert!(find("slack", "00u3cat").entitlements.is_empty());
    assert_eq!(find("slack", "00u3cat").status, AccountStatus::Suspended);
    let eve_slack = find("slack", "00u5eve");
    assert_eq!(
        eve_slack.status,
        AccountStatus::Deprovisioned,
        "the Okta user's status wins"
    );
    assert_eq!(eve_slack.entitlements, vec!["Member"]);
    let bob_gh = find("github-enterprise", "00u2bob");
    assert_eq!(
        bob_gh.email.as_deref(),
        Some("bob@example.com"),
        "from the user, not userName"
    );
    assert_eq!(bob_gh.entitlements, vec!["billing", "maintainer"]);
    assert!(!snap.accounts.iter().any(|a| a.app == "old-wiki"));
    assert_eq!(snap.accounts.len(), 6 + 3 + 1);

    let seen = org.lock().unwrap().seen.clone();
    let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert!(!paths.contains(&"/api/v1/groups/00g0all/users"));
    assert!(!paths.contains(&"/api/v1/apps/0oa3old/users"));
    // 4 non-deprovisioned users → 2 pages; the other listings 1 or 2 pages.
    assert_eq!(
        seen.iter()
            .filter(|(p, q, _)| p == "/api/v1/users" && !q.contains("filter"))
            .count(),
        2
    );
    assert!(
        seen.iter().all(|(_, q, _)| q.contains("limit=200")),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .any(|(p, q, _)| p == "/api/v1/users" && q.contains("after=00u2bob")));
}

#[tokio::test]
async fn an_error_on_a_later_page_fails_the_whole_fetch() {
    for (path, status) in [
        ("/api/v1/users", 500),
        ("/api/v1/groups/00g1eng/users", 503),
        ("/api/v1/apps/0oa1slack/users", 502),
    ] {
        let mut org = populated();
        org.failures.push(Failure {
            path: path.into(),
            page: 1,
            ..okta_error(status, "E0000009", "Internal Server Error")
        });
        let (seen, source, _) = serve(org).await;
        let err = fetch(&source).await.unwrap_err();
        let SourceError::Unavailable(message) = &err else {
            panic!("{path}: {err:?}")
        };
        assert!(
            message.contains(&format!(
                "Okta GET {path} answered {status} E0000009 Internal Server Error"
            )),
            "{message}"
        );
        let seen = seen.lock().unwrap();
        assert!(seen
            .seen
            .iter()
            .any(|(p, q, _)| p == path && q.contains("after=")));
    }
}

#[tokio::test]
async fn statuses_map_to_source_errors() {
    // A wrong token, answered the way Okta answers it.
    let (_, _, base) = serve(populated()).await;
    let wrong = OktaSource::new(&base, Secret::new("00wrong".into()), "okta".into()).unwrap();
    let err = fetch(&wrong).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Auth(m) if m == "Okta GET /api/v1/users answered 401 E0000011 Invalid token provided"),
        "{err:?}"
    );

    let reset = epoch() + 120;
    let cases: Vec<(Failure, Check)> = vec![
        (
            okta_error(
                403,
                "E0000006",
                "You do not have permission to perform the requested action",
            ),
            |e| matches!(e, SourceError::Auth(m) if m.contains("403 E0000006")),
        ),
        (
            Failure {
                headers: vec![
                    ("x-rate-limit-remaining".into(), "0".into()),
                    ("x-rate-limit-reset".into(), reset.to_string()),
                ],
                ..okta_error(
                    429,
                    "E0000047",
                    "API call exceeded rate limit due to too many requests.",
                )
            },
            |e| matches!(e.retry_after(), Some(d) if d > Duration::from_secs(100) && d <= Duration::from_secs(120)),
        ),
        (
            okta_error(
                404,
                "E0000007",
                "Not found: Resource not found: 00g1eng (UserGroup)",
            ),
            |e| matches!(e, SourceError::Invalid(m) if m.contains("404 E0000007")),
        ),
        (
            Failure {
                status: 200,
                body: "<html><body>Okta is down for maintenance</body></html>".into(),
                ..okta_error(200, "", "")
            },
            |e| matches!(e, SourceError::Invalid(m) if m.contains("unreadable answer") && m.contains("maintenance")),
        ),
    ];
    for (failure, expected) in cases {
        let mut org = populated();
        // The mapping must hold wherever it happens: on a group's members.
        org.failures.push(Failure {
            path: "/api/v1/groups/00g2adm/users".into(),
            page: 0,
            ..failure
        });
        let (_, source, _) = serve(org).await;
        let err = fetch(&source).await.unwrap_err();
        assert!(expected(&err), "{err:?}");
    }

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gone = OktaSource::new(&url, Secret::new(TOKEN.into()), "okta".into()).unwrap();
    let err = fetch(&gone).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Unavailable(m) if m.contains("Okta GET /api/v1/users: cannot connect")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_token_never_shows() {
    let mut org = populated();
    // A misbehaving proxy that echoes the request headers into its error.
    org.failures.push(Failure {
        path: "/api/v1/groups".into(),
        page: 0,
        status: 400,
        headers: vec![],
        body: format!("bad request; you sent Authorization: SSWS {TOKEN}"),
    });
    let (_, source, base) = serve(org).await;
    let err = fetch(&source).await.unwrap_err();
    let shown = format!("{err} {err:?} {source:?}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");

    let wrong_token = "00wrong-but-still-secret";
    let wrong = OktaSource::new(&base, Secret::new(wrong_token.into()), "okta".into()).unwrap();
    let err = fetch(&wrong).await.unwrap_err();
    let shown = format!("{err} {err:?} {wrong:?}");
    assert!(matches!(err, SourceError::Auth(_)));
    assert!(!shown.contains(wrong_token), "{shown}");

    let bad = OktaSource::new(
        &base,
        Secret::new("line\nbreak-secret".into()),
        "okta".into(),
    )
    .unwrap_err();
    assert!(!bad.contains("break-secret"), "{bad}");
}

#[tokio::test]
async fn paging_loops_and_foreign_hosts_are_refused() {
    let (shared, source, base) = serve(populated()).await;
    // A next link back to the first page.
    shared.lock().unwrap().next_override = Some((
        "/api/v1/groups".into(),
        format!("{base}/api/v1/groups?limit=200"),
    ));
    let err = fetch(&source).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Invalid(m) if m.contains("/api/v1/groups") && m.contains("already read")),
        "{err:?}"
    );

    // A next link to another host (here: the same server under another
    // name, so a request that got through would be seen).
    let port = base.rsplit(':').next().unwrap().to_string();
    {
        let mut org = shared.lock().unwrap();
        org.seen.clear();
        org.next_override = Some((
            "/api/v1/users".into(),
            format!("http://localhost:{port}/api/v1/users?after=00u2bob&limit=200"),
        ));
    }
    let err = fetch(&source).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Invalid(m) if m.contains("another host (localhost)")),
        "{err:?}"
    );
    let seen = shared.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 1);
    assert!(seen
        .iter()
        .all(|(_, _, host)| host.starts_with("127.0.0.1")));
}

#[tokio::test]
async fn a_used_up_window_pauses_or_hands_back_the_wait() {
    // The window resets within a couple of seconds: wait, then carry on.
    let mut org = populated();
    org.first_window = Some((0, epoch() + 2));
    let (_, source, _) = serve(org).await;
    let started = Instant::now();
    let snap = fetch(&source).await.unwrap();
    assert_eq!(snap.accounts.len(), 10);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Ten minutes away: no doomed request, the scheduler gets the wait.
    let mut org = populated();
    org.first_window = Some((0, epoch() + 600));
    let (shared, source, _) = serve(org).await;
    let err = fetch(&source).await.unwrap_err();
    assert!(
        matches!(err.retry_after(), Some(d) if d > Duration::from_secs(590)),
        "{err:?}"
    );
    assert_eq!(shared.lock().unwrap().seen.len(), 1);
}
