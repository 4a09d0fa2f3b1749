//! The `github` provisioner against a stand-in for GitHub's REST and GraphQL
//! APIs on loopback, following their documented shapes: `GET /users/{login}`
//! and `GET /user/{id}`, team memberships by slug (`PUT` answers the
//! membership, `DELETE` 204, a non-member 404), GraphQL
//! `organizationVerifiedDomainEmails` paged one member at a time, and
//! injected 404, 409, 429, a spent 403 and silence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accessd::config::Secret;
use accessd::provision::github::GithubProvisioner;
use accessd::provision::{Action, Outcome, Person, Provisioner, Request, Target};
use axum::body::{to_bytes, Body};
use axum::extract::{Request as HttpRequest, State};
use axum::response::Response;
use serde_json::{json, Value};

const TOKEN: &str = "ghp_test_token_0000";
const ORG: &str = "acme";

#[derive(Default)]
struct Hub {
    /// (id, login, verified org emails)
    users: Vec<(u64, String, Vec<String>)>,
    teams: BTreeSet<String>,
    /// (team slug, login)
    members: BTreeSet<(String, String)>,
    next_change: Option<(u16, Vec<(&'static str, String)>)>,
    silent: bool,
    seen: Vec<String>,
}

type Shared = Arc<Mutex<Hub>>;

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn missing() -> Response {
    reply(404, json!({ "message": "Not Found" }))
}

async fn handle(State(hub): State<Shared>, request: HttpRequest) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body = to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let (injected, silent) = {
        let mut h = hub.lock().unwrap();
        h.seen.push(format!("{method} {path}"));
        let change = method == "PUT" || method == "DELETE";
        (
            if change { h.next_change.take() } else { None },
            change && h.silent,
        )
    };
    if silent {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if let Some((status, headers)) = injected {
        let mut response = Response::builder().status(status);
        for (k, v) in headers {
            response = response.header(k, v);
        }
        return response
            .body(Body::from("{\"message\":\"injected\"}"))
            .unwrap();
    }
    let mut h = hub.lock().unwrap();
    // Enterprise Server's layout: REST under /api/v3, GraphQL at /api/graphql.
    let parts: Vec<&str> = path
        .trim_start_matches("/api/v3")
        .trim_start_matches('/')
        .split('/')
        .collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["api", "graphql"]) => {
            let query: Value = serde_json::from_slice(&body).unwrap_or_default();
            let after = query["variables"]["after"]
                .as_str()
                .and_then(|a| a.parse::<usize>().ok());
            let start = after.map_or(0, |a| a + 1);
            let node = h
                .users
                .get(start)
                .map(|u| json!({ "login": u.1, "organizationVerifiedDomainEmails": u.2 }));
            reply(
                200,
                json!({ "data": { "organization": { "membersWithRole": {
                    "pageInfo": { "hasNextPage": start + 1 < h.users.len(), "endCursor": start.to_string() },
                    "nodes": node.into_iter().collect::<Vec<_>>() } } } }),
            )
        }
        ("GET", ["users", login]) => match h.users.iter().find(|u| u.1 == *login) {
            Some(u) => reply(200, json!({ "id": u.0, "login": u.1 })),
            None => missing(),
        },
        ("GET", ["user", id]) => match h.users.iter().find(|u| u.0.to_string() == *id) {
            Some(u) => reply(200, json!({ "id": u.0, "login": u.1 })),
            None => missing(),
        },
        ("GET", ["orgs", ORG, "teams", team]) if h.teams.contains(*team) => {
            reply(200, json!({ "slug": team }))
        }
        ("GET", ["orgs", ORG, "teams", team, "memberships", login]) => {
            if h.members.contains(&(team.to_string(), login.to_string())) {
                reply(200, json!({ "state": "active", "role": "member" }))
            } else {
                missing()
            }
        }
        ("PUT", ["orgs", ORG, "teams", team, "memberships", login]) if h.teams.contains(*team) => {
            h.members.insert((team.to_string(), login.to_string()));
            reply(200, json!({ "state": "active", "role": "member" }))
        }
        ("DELETE", ["orgs", ORG, "teams", team, "memberships", login]) => {
            if h.members.remove(&(team.to_string(), login.to_string())) {
                Response::builder().status(204).body(Body::empty()).unwrap()
            } else {
                missing()
            }
        }
        _ => missing(),
    }
}

/// Ann (`ann-gh`, her email verified by the org) is the third member, so
/// finding her takes three GraphQL pages.
async fn start() -> (String, Shared) {
    let hub = Hub {
        users: vec![
            (1, "zed".into(), vec!["zed@example.com".into()]),
            (2, "bob-gh".into(), vec!["bob@example.com".into()]),
            (3, "ann-gh".into(), vec!["ann@example.com".into()]),
        ],
        teams: ["platform".to_string(), "sre".to_string()].into(),
        ..Hub::default()
    };
    let shared: Shared = Arc::new(Mutex::new(hub));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v3", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, shared)
}

fn provisioner(url: &str, logins: &[(&str, &str)], timeout: Duration) -> GithubProvisioner {
    accessd::install_crypto_provider();
    let logins: BTreeMap<String, String> = logins
        .iter()
        .map(|(e, l)| (e.to_string(), l.to_string()))
        .collect();
    GithubProvisioner::new(url, ORG, logins, Secret::new(TOKEN.into()), timeout)
        .expect("valid provisioner")
}

fn request(action: Action, email: &str, team: &str, target: Option<Target>) -> Request {
    Request {
        action,
        idempotency_key: "k".into(),
        ticket: "T-1".into(),
        app: "github".into(),
        role: "member".into(),
        entitlement: team.into(),
        user: Person {
            email: email.into(),
            slack_id: "U1".into(),
        },
        expires_at: None,
        target,
        account: None,
    }
}

fn member(hub: &Shared, team: &str, login: &str) -> bool {
    hub.lock()
        .unwrap()
        .members
        .contains(&(team.to_string(), login.to_string()))
}

#[tokio::test]
async fn a_grant_finds_the_login_by_verified_email_and_a_revoke_by_the_recorded_id() {
    let (url, hub) = start().await;
    let p = provisioner(&url, &[], Duration::from_secs(5));
    let (outcome, target) = p
        .provision_for_record(&request(
            Action::Grant,
            "Ann@Example.com",
            "team:platform",
            None,
        ))
        .await;
    assert_eq!(outcome, Outcome::Applied);
    let target = target.expect("ids to record");
    assert_eq!(
        (target.account.as_str(), target.group.as_deref()),
        ("3", Some("platform"))
    );
    assert!(member(&hub, "platform", "ann-gh"));
    assert!(
        hub.lock()
            .unwrap()
            .seen
            .iter()
            .any(|s| s == "POST /api/graphql"),
        "Enterprise GraphQL path"
    );
    let (again, _) = p
        .provision_for_record(&request(Action::Grant, "ann@example.com", "platform", None))
        .await;
    assert_eq!(again, Outcome::AlreadyInState);

    // She renames her account: the recorded id still finds her.
    hub.lock().unwrap().users[2].1 = "ann-lee".into();
    hub.lock().unwrap().members = [("platform".to_string(), "ann-lee".to_string())].into();
    let revoke = request(
        Action::Revoke,
        "ann@example.com",
        "platform",
        Some(target.clone()),
    );
    assert_eq!(p.provision(&revoke).await, Outcome::Applied);
    assert!(!member(&hub, "platform", "ann-lee"));
    assert_eq!(p.provision(&revoke).await, Outcome::AlreadyInState);
}

#[tokio::test]
async fn the_logins_table_wins_and_an_unknown_person_or_team_is_a_failure() {
    let (url, hub) = start().await;
    let p = provisioner(
        &url,
        &[("carol@example.com", "bob-gh")],
        Duration::from_secs(5),
    );
    let (outcome, _) = p
        .provision_for_record(&request(Action::Grant, "carol@example.com", "sre", None))
        .await;
    assert_eq!(outcome, Outcome::Applied);
    assert!(member(&hub, "sre", "bob-gh"));
    assert!(!hub
        .lock()
        .unwrap()
        .seen
        .iter()
        .any(|s| s.contains("graphql")));

    let outcome = p
        .provision(&request(Action::Grant, "nobody@example.com", "sre", None))
        .await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("no GitHub login is known for nobody@example.com")),
        "{outcome:?}"
    );
    let outcome = p
        .provision(&request(
            Action::Grant,
            "ann@example.com",
            "no-such-team",
            None,
        ))
        .await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("no team \"no-such-team\"")),
        "{outcome:?}"
    );
    // A user deleted since the grant: a failure, not "already gone".
    let target = Target {
        account: "99".into(),
        group: Some("sre".into()),
    };
    let outcome = p
        .provision(&request(
            Action::Revoke,
            "x@example.com",
            "sre",
            Some(target),
        ))
        .await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("GitHub user 99 is not found")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn not_found_conflict_rate_limits_and_silence() {
    let (url, hub) = start().await;
    let p = provisioner(&url, &[], Duration::from_millis(400));
    let grant = request(Action::Grant, "ann@example.com", "platform", None);
    let inject = |status: u16, headers: Vec<(&'static str, String)>| {
        hub.lock().unwrap().next_change = Some((status, headers))
    };
    for (status, headers) in [(404, vec![]), (409, vec![]), (422, vec![])] {
        inject(status, headers);
        let outcome = p.provision(&grant).await;
        assert!(
            matches!(&outcome, Outcome::Permanent { message } if message.contains(&status.to_string())),
            "{status}: {outcome:?}"
        );
    }
    let reset = chrono::Utc::now().timestamp() + 9;
    for status in [429, 403] {
        inject(
            status,
            vec![
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset.to_string()),
            ],
        );
        match p.provision(&grant).await {
            Outcome::Transient {
                retry_after: Some(wait),
                ..
            } => assert!((7..=9).contains(&wait.as_secs()), "{status}: {wait:?}"),
            other => panic!("{status}: {other:?}"),
        }
    }
    hub.lock().unwrap().silent = true;
    let outcome = p.provision(&grant).await;
    assert!(
        matches!(&outcome, Outcome::Transient { message, .. } if message.contains("timed out")),
        "{outcome:?}"
    );
    hub.lock().unwrap().silent = false;
    assert!(!member(&hub, "platform", "ann-gh"));
    assert_eq!(p.provision(&grant).await, Outcome::Applied);
}
