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
use accessd::provision::{Action, Outcome, Person, Provisioner, Request};
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
    // Nothing to take away.
    assert_eq!(
        p.provision(&request(Action::Revoke, &nobody, &name)).await,
        Outcome::AlreadyInState
    );
    assert_eq!(
        p.provision(&request(Action::Revoke, &email, &missing))
            .await,
        Outcome::AlreadyInState
    );
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
