//! The SCIM provisioner against a real SCIM 2.0 server, `scim2-server` from
//! PyPI, over HTTP on loopback. CI starts one and sets ACCESSD_TEST_SCIM_URL;
//! otherwise the first test starts one on a free port and all tests share it,
//! each with its own users and groups.

#[path = "support/scim_server.rs"]
mod scim_server;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use accessd::config::Secret;
use accessd::provision::scim::ScimProvisioner;
use accessd::provision::{Action, Outcome, Person, Provisioner, Request, Target};
use scim_server::{free_port, server, unique, Admin, TOKEN};

fn provisioner(url: &str, token: &str) -> ScimProvisioner {
    accessd::install_crypto_provider();
    ScimProvisioner::new(
        url.into(),
        Secret::new(token.into()),
        Duration::from_secs(5),
    )
    .expect("valid provisioner")
}

fn request(action: Action, email: &str, entitlement: &str) -> Request {
    Request {
        action,
        idempotency_key: unique("key"),
        ticket: "T-1".into(),
        app: "idp".into(),
        role: "member".into(),
        entitlement: entitlement.into(),
        user: Person {
            email: email.into(),
            slack_id: "U1".into(),
        },
        expires_at: None,
        target: None,
        account: None,
    }
}

#[tokio::test]
async fn grant_adds_the_member_once() {
    let admin = Admin::new();
    let email = format!("{}@example.com", unique("ann"));
    let user = admin.user(&email, &email).await;
    let other = admin.user(&unique("bob"), &unique("bob@x")).await;
    // Quotes and a backslash: the filter must escape them to find the group.
    let name = format!(r#"ops "blue" \ {}"#, unique("team"));
    let group = admin.group(&name).await;
    let p = provisioner(&server().url, TOKEN);

    let grant = request(Action::Grant, &email, &name);
    assert_eq!(p.provision(&grant).await, Outcome::Applied);
    assert_eq!(admin.members(&group).await, vec![user.clone()]);
    assert_eq!(p.provision(&grant).await, Outcome::AlreadyInState);
    assert_eq!(admin.members(&group).await, vec![user]);
    assert!(!admin.members(&group).await.contains(&other));
}

#[tokio::test]
async fn grant_finds_the_user_by_email_when_the_user_name_differs() {
    let admin = Admin::new();
    let email = format!("{}@example.com", unique("cho"));
    let user = admin.user(&unique("cho-handle"), &email).await;
    let name = unique("readers");
    let group = admin.group(&name).await;
    let p = provisioner(&server().url, TOKEN);

    assert_eq!(
        p.provision(&request(Action::Grant, &email, &name)).await,
        Outcome::Applied
    );
    assert_eq!(admin.members(&group).await, vec![user]);
}

#[tokio::test]
async fn revoke_removes_only_that_member_once() {
    let admin = Admin::new();
    let email = format!("{}@example.com", unique("dee"));
    let user = admin.user(&email, &email).await;
    let stay_email = format!("{}@example.com", unique("eve"));
    let stays = admin.user(&stay_email, &stay_email).await;
    let name = unique("admins");
    let group = admin.group(&name).await;
    let p = provisioner(&server().url, TOKEN);
    for who in [&email, &stay_email] {
        assert_eq!(
            p.provision(&request(Action::Grant, who, &name)).await,
            Outcome::Applied
        );
    }
    let mut members = admin.members(&group).await;
    members.sort();
    let mut both = vec![user.clone(), stays.clone()];
    both.sort();
    assert_eq!(members, both);

    let revoke = request(Action::Revoke, &email, &name);
    assert_eq!(p.provision(&revoke).await, Outcome::Applied);
    assert_eq!(admin.members(&group).await, vec![stays]);
    assert_eq!(p.provision(&revoke).await, Outcome::AlreadyInState);

    // The last member: an empty group comes back without `members` at all.
    let revoke = request(Action::Revoke, &stay_email, &name);
    assert_eq!(p.provision(&revoke).await, Outcome::Applied);
    assert!(admin.members(&group).await.is_empty());
    assert_eq!(p.provision(&revoke).await, Outcome::AlreadyInState);
}

#[tokio::test]
async fn unknown_users_and_groups() {
    let admin = Admin::new();
    let email = format!("{}@example.com", unique("fay"));
    admin.user(&email, &email).await;
    let name = unique("devs");
    admin.group(&name).await;
    let p = provisioner(&server().url, TOKEN);

    let nobody = format!("{}@example.com", unique("nobody"));
    let outcome = p.provision(&request(Action::Grant, &nobody, &name)).await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains(&nobody)),
        "{outcome:?}"
    );
    let missing = unique("no-such-group");
    let outcome = p.provision(&request(Action::Grant, &email, &missing)).await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains(&missing)),
        "{outcome:?}"
    );
    // A revoke that cannot find the user or the group cannot know the
    // access is gone: a failure for a person, never "already absent".
    for (who, group, named) in [(&nobody, &name, &nobody), (&email, &missing, &missing)] {
        let outcome = p.provision(&request(Action::Revoke, who, group)).await;
        assert!(
            matches!(&outcome, Outcome::Permanent { message } if message.contains(named.as_str()) && message.contains("check in the SCIM server")),
            "{outcome:?}"
        );
    }
    // Both there, and the server says she is no member: nothing to take away.
    assert_eq!(
        p.provision(&request(Action::Revoke, &email, &name)).await,
        Outcome::AlreadyInState
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_retried_later() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let p = provisioner(&dead, TOKEN);
    let started = Instant::now();
    let outcome = p
        .provision(&request(Action::Grant, "ann@example.com", "g"))
        .await;
    assert!(
        matches!(&outcome, Outcome::Transient { message, .. } if message.contains("connect")),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_retried_later() {
    // Accepts connections (the kernel backlog does) but never replies.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    accessd::install_crypto_provider();
    let p = ScimProvisioner::new(url, Secret::new(TOKEN.into()), Duration::from_millis(300))
        .expect("valid provisioner");
    let started = Instant::now();
    let outcome = p
        .provision(&request(Action::Revoke, "ann@example.com", "g"))
        .await;
    assert!(
        matches!(&outcome, Outcome::Transient { message, .. } if message.contains("timed out")),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_token_is_sent_and_never_shown() {
    let secret = "sk-scim-0123456789-very-secret";
    let p = provisioner(&server().url, secret);
    let shown = format!("{p:?}");
    assert!(
        !shown.contains(secret) && !shown.contains("0123456789"),
        "{shown}"
    );
    assert!(shown.contains(&server().url), "{shown}");

    // The server was started with another token: refused, and the refusal
    // does not echo the one sent.
    let outcome = p
        .provision(&request(Action::Grant, "ann@example.com", "g"))
        .await;
    let Outcome::Permanent { message } = &outcome else {
        panic!("a refused token is permanent: {outcome:?}");
    };
    assert!(message.contains("401"), "{message}");
    assert!(
        !message.contains(secret) && !message.contains("0123456789"),
        "{message}"
    );
    assert!(!format!("{outcome:?}").contains("0123456789"));
}

/// A grant as the daemon makes it: the outcome and the ids to record.
async fn granted(p: &ScimProvisioner, email: &str, group: &str) -> Target {
    let (outcome, target) = p
        .provision_for_record(&request(Action::Grant, email, group))
        .await;
    assert_eq!(outcome, Outcome::Applied);
    target.expect("a grant reports the SCIM ids it used")
}

fn revoke_of(email: &str, group: &str, target: &Target) -> Request {
    Request {
        target: Some(target.clone()),
        ..request(Action::Revoke, email, group)
    }
}

#[tokio::test]
async fn a_revoke_reaches_the_granted_user_after_their_user_name_and_email_changed() {
    let admin = Admin::new();
    let email = format!("{}@example.com", unique("ann"));
    let user = admin.user(&email, &email).await;
    let name = unique("wiki-editors");
    let group = admin.group(&name).await;
    let p = provisioner(&server().url, TOKEN);
    let target = granted(&p, &email, &name).await;
    assert_eq!(
        target,
        Target {
            account: user.clone(),
            group: Some(group.clone())
        }
    );
    // The IdP renames her: neither the old userName nor the old email exists.
    let renamed = format!("{}@example.com", unique("ann-lee"));
    admin.rename(&user, &renamed, &renamed).await;
    assert_eq!(admin.members(&group).await, vec![user.clone()]);

    // Looked up by the email of the request, the revoke would not find her.
    let blind = p.provision(&request(Action::Revoke, &email, &name)).await;
    assert!(matches!(blind, Outcome::Permanent { .. }), "{blind:?}");
    assert_eq!(admin.members(&group).await, vec![user.clone()]);
    // By the ids the grant recorded, it does.
    assert_eq!(
        p.provision(&revoke_of(&email, &name, &target)).await,
        Outcome::Applied
    );
    assert!(admin.members(&group).await.is_empty());
    assert_eq!(
        p.provision(&revoke_of(&email, &name, &target)).await,
        Outcome::AlreadyInState
    );
}

#[tokio::test]
async fn a_revoke_whose_user_or_group_is_gone_is_a_failure_not_done() {
    let admin = Admin::new();
    let email = format!("{}@example.com", unique("gil"));
    let user = admin.user(&email, &email).await;
    let name = unique("finance");
    let group = admin.group(&name).await;
    let p = provisioner(&server().url, TOKEN);
    let target = granted(&p, &email, &name).await;

    admin.delete("Groups", &group).await;
    let outcome = p.provision(&revoke_of(&email, &name, &target)).await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains(&group) && message.contains("not found")),
        "{outcome:?}"
    );

    let other = unique("finance-2");
    admin.group(&other).await;
    let target = granted(&p, &email, &other).await;
    admin.delete("Users", &user).await;
    let outcome = p.provision(&revoke_of(&email, &other, &target)).await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains(&user) && message.contains("not found")),
        "{outcome:?}"
    );
}

/// Calls a stand-in SCIM endpoint received: `METHOD path?query`.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A stand-in for SCIM behaviours scim2-server does not have (redirects, a
/// truncated member list): every request is noted, then answered by `answer`.
async fn stand_in(
    answer: fn(&axum::http::Method, &str) -> axum::response::Response,
) -> (String, Seen) {
    use axum::extract::State;
    let seen: Seen = Default::default();
    let app =
        axum::Router::new()
            .fallback(
                move |State(seen): State<Seen>,
                      method: axum::http::Method,
                      uri: axum::http::Uri| async move {
                    let path = uri.to_string();
                    seen.lock().unwrap().push(format!("{method} {path}"));
                    answer(&method, &path)
                },
            )
            .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

fn scim_json(status: u16, body: serde_json::Value) -> axum::response::Response {
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/scim+json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_names_where_it_pointed() {
    let (url, seen) = stand_in(|method, path| {
        if *method == axum::http::Method::GET && path.starts_with("/Users") {
            return scim_json(200, serde_json::json!({ "Resources": [{ "id": "u1" }] }));
        }
        if path.contains("members.value") {
            return scim_json(200, serde_json::json!({ "Resources": [] }));
        }
        if *method == axum::http::Method::GET {
            return scim_json(
                200,
                serde_json::json!({ "Resources": [{ "id": "g1", "displayName": "g" }] }),
            );
        }
        // The PATCH is moved: followed, it would come back as a GET and 200.
        axum::response::Response::builder()
            .status(301)
            .header("location", "/moved/Groups/g1")
            .body(axum::body::Body::empty())
            .unwrap()
    })
    .await;
    let p = provisioner(&url, TOKEN);
    let outcome = p
        .provision(&request(Action::Grant, "ann@example.com", "g"))
        .await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("answered 301") && message.contains("/moved/Groups/g1") && message.contains("not followed")),
        "{outcome:?}"
    );
    let calls = seen.lock().unwrap().clone();
    assert!(
        calls.iter().any(|c| c.starts_with("PATCH /Groups/g1")),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("/moved/")),
        "followed: {calls:?}"
    );
}

#[tokio::test]
async fn a_member_missing_from_a_truncated_list_is_asked_about_not_taken_as_gone() {
    let (url, seen) = stand_in(|method, path| {
        if path.starts_with("/Users/u1") {
            return scim_json(200, serde_json::json!({ "id": "u1" }));
        }
        if path.starts_with("/Groups/g1") && *method == axum::http::Method::GET {
            // A server capping inline members at one: u1 is not shown.
            return scim_json(
                200,
                serde_json::json!({ "id": "g1", "displayName": "g", "members": [{ "value": "u0" }] }),
            );
        }
        if path.starts_with("/Groups?") {
            // Asked with a filter, the server says u1 is a member.
            return scim_json(200, serde_json::json!({ "Resources": [{ "id": "g1" }] }));
        }
        axum::response::Response::builder()
            .status(204)
            .body(axum::body::Body::empty())
            .unwrap()
    })
    .await;
    let p = provisioner(&url, TOKEN);
    let target = Target {
        account: "u1".into(),
        group: Some("g1".into()),
    };
    assert_eq!(
        p.provision(&revoke_of("ann@example.com", "g", &target))
            .await,
        Outcome::Applied
    );
    let calls = seen.lock().unwrap().clone();
    assert!(
        calls.iter().any(|c| c.starts_with("PATCH /Groups/g1")),
        "{calls:?}"
    );
}
