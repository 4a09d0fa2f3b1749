//! The `github` source against a fake GitHub Enterprise Server API (under
//! `/api/v3`) on loopback that answers as GitHub documents: simple-user,
//! team, invitation and user objects; `page`/`per_page` paging with one
//! `Link` header whose org links use `/organizations/{id}/…` paths;
//! `x-ratelimit-*` headers; `{"message": …}` error bodies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use accessd::config::Secret;
use accessd::sources::github::GithubSource;
use accessd::sources::{AccountStatus, Snapshot, SourceError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

const TOKEN: &str = "ghp_SECRETgithubTokenValue0123456789";
const PREFIX: &str = "/api/v3";
const ORG_ID: u64 = 4242;
/// The fake pages this small to make listings span several pages.
const PAGE: usize = 2;

#[derive(Clone, Default)]
struct Failure {
    path: String,
    page: usize,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

#[derive(Default)]
struct Hub {
    base: String,
    members: Vec<(&'static str, bool)>,
    collaborators: Vec<&'static str>,
    teams: Vec<(&'static str, Vec<&'static str>)>,
    invitations: Vec<Value>,
    profiles: HashMap<String, Value>,
    failures: Vec<Failure>,
    /// Replaces the next link of every page of this path.
    next_override: Option<(String, String)>,
    /// Path (without the prefix) and query of every request.
    seen: Vec<(String, String)>,
}

type Shared = Arc<Mutex<Hub>>;
/// Whether an error is the expected one.
type Check = fn(&SourceError) -> bool;

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn message(status: u16, text: &str) -> Failure {
    Failure {
        status,
        body: json!({
            "message": text,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.to_string()
        })
        .to_string(),
        ..Failure::default()
    }
}

fn simple_user(base: &str, login: &str) -> Value {
    json!({
        "login": login, "id": login.len() * 1000, "node_id": "MDQ6VXNlcjE=",
        "avatar_url": format!("{base}/avatars/u/{login}"), "gravatar_id": "",
        "url": format!("{base}{PREFIX}/users/{login}"), "html_url": format!("{base}/{login}"),
        "type": "User", "site_admin": false
    })
}

fn reply(status: u16, headers: Vec<(&'static str, String)>, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    let map = response.headers_mut();
    map.insert(
        "content-type",
        "application/json; charset=utf-8".parse().unwrap(),
    );
    map.insert("x-ratelimit-limit", "5000".parse().unwrap());
    map.insert("x-ratelimit-remaining", "4999".parse().unwrap());
    map.insert(
        "x-ratelimit-reset",
        (epoch() + 3600).to_string().parse().unwrap(),
    );
    map.insert("x-ratelimit-resource", "core".parse().unwrap());
    for (name, value) in headers {
        map.insert(HeaderName::from_static(name), value.parse().unwrap());
    }
    response
}

async fn handle(State(hub): State<Shared>, request: Request) -> Response {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let Some(path) = request
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .map(str::to_string)
    else {
        return reply(404, vec![], message(404, "Not Found").body);
    };
    let query = request.uri().query().unwrap_or("").to_string();
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut hub = hub.lock().unwrap();
    hub.seen.push((path.clone(), query.clone()));
    if header("user-agent").is_empty() {
        let text = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header";
        return reply(403, vec![], message(403, text).body);
    }
    if header("authorization") != format!("Bearer {TOKEN}") {
        return reply(401, vec![], message(401, "Bad credentials").body);
    }
    assert_eq!(header("accept"), "application/vnd.github+json");
    assert_eq!(header("x-github-api-version"), "2022-11-28");
    // Paging links name the org by id, as GitHub's do.
    let canonical = path.replacen(&format!("/organizations/{ORG_ID}/"), "/orgs/acme/", 1);
    let segments: Vec<&str> = canonical.trim_start_matches('/').split('/').collect();
    let base = hub.base.clone();
    let users = |logins: Vec<&str>| logins.iter().map(|l| simple_user(&base, l)).collect();
    let items: Vec<Value> = match segments.as_slice() {
        ["orgs", "acme", "members"] => {
            let admins_only = params.get("role").map(String::as_str) == Some("admin");
            users(
                hub.members
                    .iter()
                    .filter(|(_, admin)| *admin || !admins_only)
                    .map(|(l, _)| *l)
                    .collect(),
            )
        }
        ["orgs", "acme", "outside_collaborators"] => users(hub.collaborators.clone()),
        ["orgs", "acme", "teams"] => hub
            .teams
            .iter()
            .enumerate()
            .map(|(i, (slug, _))| {
                json!({
                    "id": i + 1, "node_id": "MDQ6VGVhbTE=", "name": slug.to_uppercase(), "slug": slug,
                    "url": format!("{base}{PREFIX}/teams/{}", i + 1),
                    "html_url": format!("{base}/orgs/acme/teams/{slug}"),
                    "description": null, "privacy": "closed", "notification_setting": "notifications_enabled",
                    "permission": "pull", "members_url": "", "repositories_url": "", "parent": null
                })
            })
            .collect(),
        ["orgs", "acme", "teams", slug, "members"] => {
            match hub.teams.iter().find(|(s, _)| s == slug) {
                Some((_, logins)) => users(logins.clone()),
                None => return reply(404, vec![], message(404, "Not Found").body),
            }
        }
        ["orgs", "acme", "invitations"] => hub.invitations.clone(),
        ["users", login] => {
            let failure = hub.failures.iter().find(|f| f.path == path).cloned();
            if let Some(f) = failure {
                return reply(f.status, f.headers, f.body);
            }
            return match hub.profiles.get(&login.to_lowercase()) {
                Some(profile) => reply(200, vec![], profile.to_string()),
                None => reply(404, vec![], message(404, "Not Found").body),
            };
        }
        _ => return reply(404, vec![], message(404, "Not Found").body),
    };
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    if let Some(f) = hub
        .failures
        .iter()
        .find(|f| f.path == canonical && f.page == page)
    {
        return reply(f.status, f.headers.clone(), f.body.clone());
    }
    let start = ((page - 1) * PAGE).min(items.len());
    let end = (start + PAGE).min(items.len());
    let last = items.len().div_ceil(PAGE).max(1);
    let link_to = |p: usize| {
        let mut q: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        q.sort();
        q.push(("page".into(), p.to_string()));
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish();
        let org_path = canonical.replacen("/orgs/acme/", &format!("/organizations/{ORG_ID}/"), 1);
        format!("{base}{PREFIX}{org_path}?{q}")
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
    }
    if page < last {
        let next = match &hub.next_override {
            Some((p, link)) if *p == canonical => link.clone(),
            _ => link_to(page + 1),
        };
        links.push(format!("<{next}>; rel=\"next\""));
        links.push(format!("<{}>; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    }
    let mut headers = Vec::new();
    if !links.is_empty() {
        headers.push(("link", links.join(", ")));
    }
    reply(
        200,
        headers,
        Value::Array(items[start..end].to_vec()).to_string(),
    )
}

fn profile(base: &str, login: &str, name: Value, email: Value, suspended_at: Value) -> Value {
    let mut user = simple_user(base, login);
    let extra = json!({
        "name": name, "company": null, "blog": "", "location": null, "email": email,
        "hireable": null, "bio": null, "twitter_username": null, "public_repos": 3,
        "public_gists": 0, "followers": 1, "following": 0,
        "created_at": "2020-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "suspended_at": suspended_at
    });
    if let (Some(u), Value::Object(extra)) = (user.as_object_mut(), extra) {
        u.extend(extra);
    }
    user
}

/// Four members (one admin, one with a mixed-case login), two outside
/// collaborators, three teams, three invitations.
fn populated(base: &str) -> Hub {
    let null = Value::Null;
    let mut hub = Hub {
        base: base.to_string(),
        members: vec![
            ("Ann-Lee", true),
            ("bob", false),
            ("carol", false),
            ("dave", false),
        ],
        collaborators: vec!["zed", "yan"],
        teams: vec![
            ("platform", vec!["ann-lee", "bob", "carol"]),
            ("security", vec!["ANN-LEE"]),
            ("ghosts", vec!["gone-already"]),
        ],
        invitations: vec![
            json!({ "id": 71, "login": "newbie", "email": null, "role": "direct_member" }),
            json!({ "id": 72, "login": null, "email": "Hire@Example.com", "role": "admin" }),
            json!({ "id": 73, "login": "yan", "email": null, "role": "direct_member" }),
        ],
        ..Hub::default()
    };
    for invitation in &mut hub.invitations {
        let extra = json!({
            "created_at": "2024-06-01T00:00:00Z", "failed_at": null, "failed_reason": null,
            "inviter": simple_user(base, "Ann-Lee"), "team_count": 0, "node_id": "MDIyOk9y",
            "invitation_teams_url": "", "invitation_source": "member"
        });
        if let (Some(i), Value::Object(extra)) = (invitation.as_object_mut(), extra) {
            i.extend(extra);
        }
    }
    let suspended = json!("2024-05-01T00:00:00Z");
    for (login, name, email, suspended_at) in [
        (
            "Ann-Lee",
            json!("Ann Lee"),
            json!("Ann@Example.com"),
            null.clone(),
        ),
        ("bob", null.clone(), null.clone(), null.clone()),
        (
            "carol",
            json!("Carol Diaz"),
            json!("carol@example.com"),
            suspended,
        ),
        ("dave", json!("Dave"), json!(""), null.clone()),
        (
            "zed",
            json!("Zed"),
            json!("zed@contractor.example"),
            null.clone(),
        ),
        ("yan", null.clone(), null.clone(), null.clone()),
    ] {
        let user = profile(base, login, name, email, suspended_at);
        hub.profiles.insert(login.to_lowercase(), user);
    }
    hub
}

async fn serve(customize: impl FnOnce(&mut Hub)) -> (Shared, GithubSource, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut hub = populated(&base);
    customize(&mut hub);
    let shared = Arc::new(Mutex::new(hub));
    let router = Router::new().fallback(handle).with_state(shared.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let api = format!("{base}{PREFIX}");
    let source =
        GithubSource::new(&api, "acme", Secret::new(TOKEN.into()), "github".into()).unwrap();
    (shared, source, base)
}

async fn fetch(source: &GithubSource) -> Result<Snapshot, SourceError> {
    source.fetch().await.and_then(Snapshot::normalized)
}

#[tokio::test]
async fn reads_members_collaborators_teams_and_invitations_across_pages() {
    let (hub, source, base) = serve(|_| {}).await;
    let snap = fetch(&source).await.unwrap();
    assert!(snap.apps.is_empty());
    let summary: Vec<(&str, Option<&str>, AccountStatus, Vec<&str>)> = snap
        .accounts
        .iter()
        .map(|a| {
            assert_eq!(a.app, "github");
            (
                a.id.as_str(),
                a.email.as_deref(),
                a.status,
                a.entitlements.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    use AccountStatus::*;
    assert_eq!(
        summary,
        vec![
            (
                "ann-lee",
                Some("ann@example.com"),
                Active,
                vec!["org:admin", "team:platform", "team:security"]
            ),
            ("bob", None, Active, vec!["org:member", "team:platform"]),
            (
                "carol",
                Some("carol@example.com"),
                Suspended,
                vec!["org:member", "team:platform"]
            ),
            ("dave", None, Active, vec!["org:member"]),
            (
                "invitation:72",
                Some("hire@example.com"),
                Pending,
                vec!["org:admin"]
            ),
            ("newbie", None, Pending, vec!["org:member"]),
            ("yan", None, Active, vec!["outside-collaborator"]),
            (
                "zed",
                Some("zed@contractor.example"),
                Active,
                vec!["outside-collaborator"]
            ),
        ]
    );
    let ann = &snap.accounts[0];
    assert_eq!(ann.name.as_deref(), Some("Ann Lee"));
    assert_eq!(
        ann.url.as_deref(),
        Some(format!("{base}/Ann-Lee").as_str()),
        "html_url"
    );
    assert_eq!(snap.accounts[1].name, None);
    assert_eq!(
        snap.accounts[5].url.as_deref(),
        Some(format!("{base}/newbie").as_str())
    );

    let seen = hub.lock().unwrap().seen.clone();
    let listings: Vec<_> = seen
        .iter()
        .filter(|(p, _)| !p.starts_with("/users/"))
        .collect();
    assert!(
        listings.iter().all(|(_, q)| q.contains("per_page=100")),
        "{listings:?}"
    );
    assert!(
        seen.iter()
            .any(|(p, q)| p == "/organizations/4242/members" && q.contains("page=2")),
        "the absolute next link was followed: {seen:?}"
    );
    assert!(seen
        .iter()
        .any(|(p, q)| p.ends_with("/teams/platform/members") && q.contains("page=2")));
    let lookups = seen
        .iter()
        .filter(|(p, _)| p.starts_with("/users/"))
        .count();
    assert_eq!(lookups, 6, "one profile per member and collaborator");

    // Profiles are cached between syncs: the second one makes no lookups.
    hub.lock().unwrap().seen.clear();
    let again = fetch(&source).await.unwrap();
    assert_eq!(again, snap);
    let seen = hub.lock().unwrap().seen.clone();
    assert!(
        !seen.iter().any(|(p, _)| p.starts_with("/users/")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn an_error_on_any_page_or_lookup_fails_the_whole_fetch() {
    for (path, page, status) in [
        ("/orgs/acme/members", 2, 500),
        ("/orgs/acme/teams/platform/members", 2, 502),
        ("/users/carol", 1, 503),
    ] {
        let (_, source, _) = serve(|hub| {
            hub.failures.push(Failure {
                path: path.into(),
                page,
                ..message(status, "Server Error")
            })
        })
        .await;
        let err = fetch(&source).await.unwrap_err();
        assert!(
            matches!(&err, SourceError::Unavailable(m) if m.contains(&format!("{status} Server Error"))),
            "{path}: {err:?}"
        );
    }
}

#[tokio::test]
async fn statuses_map_to_source_errors() {
    let (_, _, base) = serve(|_| {}).await;
    let wrong = GithubSource::new(
        &format!("{base}{PREFIX}"),
        "acme",
        Secret::new("ghp_wrong".into()),
        "github".into(),
    )
    .unwrap();
    let err = fetch(&wrong).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Auth(m) if m == "GitHub GET /api/v3/orgs/acme/members answered 401 Bad credentials"),
        "{err:?}"
    );

    let reset = epoch() + 300;
    let cases: Vec<(&str, Failure, Check)> = vec![
        (
            "/orgs/acme/outside_collaborators",
            message(
                403,
                "You must be an organization owner to list outside collaborators.",
            ),
            |e| matches!(e, SourceError::Auth(m) if m.contains("/outside_collaborators answered 403 You must be")),
        ),
        (
            "/orgs/acme/teams",
            Failure {
                headers: vec![
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", reset.to_string()),
                ],
                ..message(403, "API rate limit exceeded for user ID 1.")
            },
            |e| matches!(e.retry_after(), Some(d) if d > Duration::from_secs(280) && d <= Duration::from_secs(300)),
        ),
        (
            "/orgs/acme/invitations",
            Failure {
                headers: vec![("retry-after", "30".into())],
                ..message(429, "You have exceeded a secondary rate limit.")
            },
            |e| e.retry_after() == Some(Duration::from_secs(30)),
        ),
        (
            "/orgs/acme/members",
            message(404, "Not Found"),
            |e| matches!(e, SourceError::Invalid(m) if m.contains("404 Not Found")),
        ),
        (
            "/orgs/acme/teams",
            Failure {
                status: 200,
                body: "<!DOCTYPE html><title>Unicorn!</title>".into(),
                ..Failure::default()
            },
            |e| matches!(e, SourceError::Invalid(m) if m.contains("unreadable answer") && m.contains("Unicorn")),
        ),
    ];
    for (path, failure, expected) in cases {
        let (_, source, _) = serve(|hub| {
            hub.failures.push(Failure {
                path: path.into(),
                page: 1,
                ..failure
            })
        })
        .await;
        let err = fetch(&source).await.unwrap_err();
        assert!(expected(&err), "{path}: {err:?}");
    }
}

#[tokio::test]
async fn the_token_never_shows() {
    let (_, source, base) = serve(|hub| {
        hub.failures.push(Failure {
            path: "/orgs/acme/teams".into(),
            page: 1,
            ..message(400, &format!("Problems parsing request with token {TOKEN}"))
        })
    })
    .await;
    let err = fetch(&source).await.unwrap_err();
    let shown = format!("{err} {err:?} {source:?}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");

    let secret = "ghp_wrongButSecret";
    let wrong = GithubSource::new(
        &format!("{base}{PREFIX}"),
        "acme",
        Secret::new(secret.into()),
        "github".into(),
    )
    .unwrap();
    let err = fetch(&wrong).await.unwrap_err();
    let shown = format!("{err} {err:?} {wrong:?}");
    assert!(matches!(err, SourceError::Auth(_)));
    assert!(!shown.contains(secret), "{shown}");
}

#[tokio::test]
async fn a_next_link_back_to_a_read_page_is_refused() {
    let (hub, source, base) = serve(|_| {}).await;
    hub.lock().unwrap().next_override = Some((
        "/orgs/acme/teams/platform/members".into(),
        format!("{base}{PREFIX}/orgs/acme/teams/platform/members?per_page=100"),
    ));
    let err = fetch(&source).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Invalid(m) if m.contains("/teams/platform/members") && m.contains("already read")),
        "{err:?}"
    );
}
