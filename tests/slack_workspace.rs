//! Slack itself as a governed app, end to end through the fake Slack (which
//! keeps user groups with Slack's whole-list replace): the `slack` source's
//! accounts, roles and groups; new owners and guests alerted; an offboarded
//! person still active in Slack alerted and deactivated through the real
//! SCIM server; grants into a user group that overlap; user-group approvers.

#[path = "support/scim_server.rs"]
mod scim_server;
mod support;

use std::path::Path;
use std::time::Duration;

use accessd::config::Secret;
use accessd::domain::ticket::{parse_ticket_ref, Status};
use accessd::provision::slack_usergroup::SlackUsergroupProvisioner;
use accessd::provision::{Action, Outcome, Person, Provisioner, Request, Target};
use accessd::store::{GrantStatus, Store};
use scim_server::{server, unique, Admin, TOKEN};
use serde_json::{json, Value};
use support::world::*;
use support::{Failure, FakeSlack, BOT_TOKEN};

const SRE_LEADS: &str = "SSRELEADS";
const ONCALL: &str = "SONCALL";

fn people_file(path: &Path, people: &[(&str, &str)]) {
    let accounts: Vec<Value> = people
        .iter()
        .map(
            |(email, status)| json!({ "app": "hr", "id": email, "email": email, "status": status }),
        )
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        json!({ "apps": [], "accounts": accounts }).to_string(),
    )
    .unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn store(world: &World) -> Store {
    Store::open(&world.dir.path().join("accessd.db")).unwrap()
}

async fn slack_account(world: &World, id: &str) -> accessd::sources::Account {
    let store = store(world).await;
    let accounts = store.accounts_of_app("slack".into()).await.unwrap();
    store.close().await;
    accounts
        .into_iter()
        .map(|(_, a)| a)
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("no slack account {id}"))
}

async fn posted_to(world: &World, channel: &str, needle: &str) -> Value {
    world
        .fake
        .wait_until(Duration::from_secs(10), |f| {
            f.messages_to(channel)
                .into_iter()
                .find(|m| text_of(m).contains(needle))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "nothing with {needle:?} in {channel}: {:?}",
                world.fake.messages_to(channel)
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_is_an_app_whose_admins_guests_and_leavers_are_alerted_and_deactivated() {
    let admin = Admin::new();
    let gus_email = format!("{}@example.com", unique("gus"));
    // Slack's SCIM user id is the member's Slack id.
    let gus = admin.user(&gus_email, &gus_email).await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("slack-scim");
    std::fs::write(&token, TOKEN).unwrap();
    let hr = secrets.path().join("hr.json");
    let everyone = [
        ("ann@example.com", "active"),
        ("bob@example.com", "active"),
        ("dana@example.com", "active"),
        ("ivan@example.com", "active"),
        ("secops@example.com", "active"),
        (gus_email.as_str(), "active"),
    ];
    people_file(&hr, &everyone);
    let catalog = format!(
        r##"
[requests]
admins = ["secops@example.com"]
fallback_approvers = ["secops@example.com"]

[alerts.channels]
offboarded_active = "#sec-alerts"
privileged = "#sec-alerts"

[[sources]]
id = "hr"
kind = "file"
path = "{hr}"
authoritative = true
schedule = "every 1s"

[[sources]]
id = "workspace"
kind = "slack"
schedule = "every 1s"
scim_token_file = "{token}"
scim_url = "{scim}"

[[apps]]
id = "wiki"
owners = ["dana@example.com"]

[[apps]]
id = "slack"
name = "Slack"
owners = ["dana@example.com"]
"##,
        hr = hr.display(),
        token = token.display(),
        scim = server().url,
    );
    let mut world = World::unbooted(&catalog, "", None).await;
    world.fake.add_user(&gus, &gus_email, "Gus Leaver");
    world.fake.update_user(SEC, |u| u["is_admin"] = json!(true));
    world
        .fake
        .add_usergroup(SRE_LEADS, "sre-leads", &[BOB, DANA]);
    let started = chrono::Utc::now();
    world.boot().await;
    world.wait_synced("workspace", started).await;

    // One account per member of app `slack`, one role each, their groups.
    let bob = slack_account(&world, BOB).await;
    assert_eq!(bob.email.as_deref(), Some("bob@example.com"));
    assert_eq!(bob.entitlements, ["role:member", "usergroup:sre-leads"]);
    assert_eq!(
        slack_account(&world, SEC).await.entitlements,
        ["role:admin"]
    );
    assert!(
        bob.url
            .as_deref()
            .is_some_and(|u| u.ends_with("/team/UBOB")),
        "{:?}",
        bob.url
    );
    // The first sync is a baseline: nobody is "new".
    assert!(world.fake.messages_to(SEC_ALERTS.0).is_empty());

    // Its roles and user groups are reviewed like any app's entitlements.
    let db = store(&world).await;
    let campaign = accessd::reviews::create(
        &db,
        &accessd::config::load(&world.dir.path().join("accessd.toml")).unwrap(),
        accessd::reviews::CampaignAsk {
            name: Some("Slack roles".into()),
            apps: vec!["slack".into()],
            reviewer: accessd::config::Reviewer::Owners,
            due: Duration::from_secs(3600),
            owner: None,
            schedule: None,
            created_by: "cli:test".into(),
            notifications: Default::default(),
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let items = db.review_items(campaign.id).await.unwrap();
    db.close().await;
    let reviewed = |account: &str, entitlement: &str| {
        items
            .iter()
            .any(|i| i.account_id == account && i.entitlement.as_deref() == Some(entitlement))
    };
    assert!(reviewed(BOB, "usergroup:sre-leads"), "{items:?}");
    assert!(reviewed(SEC, "role:admin"), "{items:?}");

    // Ann becomes an owner, Ivan a guest: each a finding in #sec-alerts.
    world.fake.update_user(ANN, |u| {
        u["is_owner"] = json!(true);
        u["is_admin"] = json!(true);
    });
    world
        .fake
        .update_user(IVAN, |u| u["is_restricted"] = json!(true));
    let owner = posted_to(&world, SEC_ALERTS.0, "ann@example.com").await;
    assert!(text_of(&owner).contains("`owner`"), "{owner}");
    let guest = posted_to(&world, SEC_ALERTS.0, "ivan@example.com").await;
    assert!(text_of(&guest).contains("`guest`"), "{guest}");

    // Gus leaves (suspended in HR) but is still active in Slack.
    let mut gone = everyone.to_vec();
    gone.retain(|(e, _)| *e != gus_email);
    gone.push((gus_email.as_str(), "suspended"));
    people_file(&hr, &gone);
    let alert = posted_to(&world, SEC_ALERTS.0, &gus_email).await;
    assert!(text_of(&alert).contains("still active"), "{alert}");
    assert!(
        buttons_of(&alert).contains(&"Deactivate in Slack".to_string()),
        "{alert}"
    );

    // Dana owns an app but is no admin: she cannot deactivate anyone.
    let click = world.fake.click(DANA, &alert, "Deactivate in Slack");
    world.ack(&click).await;
    world.told(DANA, "Only accessd admins can deactivate").await;
    assert!(admin.active(&gus).await, "a refused click changes nothing");

    // Sec Ops can: the SCIM server has Gus inactive, the thread says so.
    let click = world.fake.click(SEC, &alert, "Deactivate in Slack");
    world.ack(&click).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while admin.active(&gus).await {
        assert!(
            std::time::Instant::now() < deadline,
            "gus is still active in SCIM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = posted_to(&world, SEC_ALERTS.0, "Deactivated").await;
    assert!(reply["thread_ts"].is_string(), "{reply}");
    let store = store(&world).await;
    let rows = store.audit_rows(None).await.unwrap();
    store.close().await;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&"alert.action_refused"), "{actions:?}");
    assert!(actions.contains(&"alert.deactivate"), "{actions:?}");
    assert!(actions.contains(&"alert.slack_deactivated"), "{actions:?}");
    world.stop().await;
}

/// Requests `oncall` (auto-approved) as `user` for `duration`; answers `T-n`.
async fn on_call(world: &World, user: &str, duration: &str) -> String {
    world
        .request(
            user,
            "slack",
            &["oncall"],
            "Covering the pager tonight",
            duration,
        )
        .await
}

async fn wait_grant(
    world: &World,
    t: &str,
    done: impl Fn(GrantStatus) -> bool,
) -> (GrantStatus, bool) {
    let id = parse_ticket_ref(t).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let store = store(world).await;
        let grant = store.grants_of_ticket(id).await.unwrap().first().cloned();
        store.close().await;
        if let Some(g) = grant.as_ref().filter(|g| done(g.status)) {
            return (g.status, g.preexisting);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{t}: grant stayed {:?}",
            grant.map(|g| g.status)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const GROUPS_CATALOG: &str = r#"
[requests]
admins = ["secops@example.com"]

[[provisioners]]
id = "slack-groups"
kind = "slack_usergroup"

[[apps]]
id = "slack"
name = "Slack"
owners = ["dana@example.com"]
provisioner = "slack-groups"

  [[apps.roles]]
  id = "oncall"
  name = "On call"
  entitlement = "oncall"
  auto_approve = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_grants_into_one_group_all_land_and_expiry_leaves_who_was_there() {
    let mut world = World::unbooted(
        GROUPS_CATALOG,
        "",
        Some(Box::new(|o: &mut accessd::RunOptions| {
            o.jobs.poll = Duration::from_millis(200);
            o.jobs.retry_base = Duration::from_millis(200);
        })),
    )
    .await;
    world.fake.add_usergroup(ONCALL, "oncall", &[CAROL]);
    world.boot().await;
    // The first write to the group is slow: a grant that did not wait for
    // it would read the old list and write over it.
    world.fake.fail_next(
        "usergroups.users.update",
        1,
        Failure::Delay(Duration::from_millis(1500)),
    );
    let (ann, bob, carol) = tokio::join!(
        on_call(&world, ANN, "4s"),
        on_call(&world, BOB, "4s"),
        on_call(&world, CAROL, "4s"),
    );
    let (_, ann_pre) = wait_grant(&world, &ann, |s| s == GrantStatus::Active).await;
    let (_, bob_pre) = wait_grant(&world, &bob, |s| s == GrantStatus::Active).await;
    let (_, carol_pre) = wait_grant(&world, &carol, |s| s == GrantStatus::Active).await;
    let mut members = world.fake.usergroup_members("oncall");
    members.sort();
    assert_eq!(members, [ANN, BOB, CAROL], "both grants landed");
    assert!(!ann_pre && !bob_pre, "ours");
    assert!(carol_pre, "Carol was in the group already");

    // Expiry removes exactly the people it granted.
    for t in [&ann, &bob, &carol] {
        wait_grant(&world, t, |s| s == GrantStatus::Expired).await;
    }
    assert_eq!(world.fake.usergroup_members("oncall"), [CAROL]);
    assert_eq!(world.ticket_status(&ann).await, Status::Expired);
    world.stop().await;
}

fn request(action: Action, entitlement: &str, slack_id: &str, email: &str) -> Request {
    Request {
        action,
        idempotency_key: format!("k/{entitlement}/{slack_id}/{action:?}"),
        ticket: "T-1".into(),
        app: "slack".into(),
        role: "member".into(),
        entitlement: entitlement.into(),
        user: Person {
            email: email.into(),
            slack_id: slack_id.into(),
        },
        expires_at: None,
        target: None,
        account: None,
    }
}

#[tokio::test]
async fn the_provisioner_never_empties_a_group_and_names_what_is_missing() {
    let fake = FakeSlack::start().await;
    fake.add_user("UANN", "ann@example.com", "Ann Lee");
    fake.add_user("UBOB", "bob@example.com", "Bob Ray");
    fake.add_usergroup("SSOLO", "solo", &["UANN"]);
    let bot = Secret::new(BOT_TOKEN.into());
    let groups =
        SlackUsergroupProvisioner::new("g", &fake.api_url(), &bot, true, Duration::from_secs(5))
            .unwrap();

    // Ann is the only member: removing her would leave the group empty.
    let revoke = request(Action::Revoke, "solo", "UANN", "ann@example.com");
    match groups.provision(&revoke).await {
        Outcome::Permanent { message } => {
            assert!(message.contains("last member of @solo"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.usergroup_members("solo"), ["UANN"]);
    assert!(fake.calls_to("usergroups.users.update").is_empty());

    // Bob is looked up by email when the token is another workspace's, and
    // the grant records the group's id for the revoke.
    let other =
        SlackUsergroupProvisioner::new("g", &fake.api_url(), &bot, false, Duration::from_secs(5))
            .unwrap();
    let grant = request(Action::Grant, "usergroup:solo", "", "bob@example.com");
    let (outcome, target) = other.provision_for_record(&grant).await;
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(
        target,
        Some(Target {
            account: "UBOB".into(),
            group: Some("SSOLO".into())
        })
    );
    assert_eq!(fake.usergroup_members("solo"), ["UANN", "UBOB"]);
    assert_eq!(other.provision(&grant).await, Outcome::AlreadyInState);

    let mut revoke = request(Action::Revoke, "solo", "", "bob@example.com");
    revoke.target = target;
    assert_eq!(other.provision(&revoke).await, Outcome::Applied);
    assert_eq!(fake.usergroup_members("solo"), ["UANN"]);

    match groups
        .provision(&request(Action::Grant, "nope", "UBOB", "bob@example.com"))
        .await
    {
        Outcome::Permanent { message } => {
            assert!(message.contains("no user group @nope"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match groups
        .provision(&request(
            Action::Revoke,
            "role:admin",
            "UBOB",
            "bob@example.com",
        ))
        .await
    {
        Outcome::Permanent { message } => assert!(message.contains("workspace role"), "{message}"),
        other => panic!("{other:?}"),
    }
    fake.fail_next(
        "usergroups.users.list",
        1,
        Failure::RateLimited {
            retry_after_secs: 7,
        },
    );
    match groups
        .provision(&request(Action::Grant, "solo", "UBOB", "bob@example.com"))
        .await
    {
        Outcome::Transient { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
}

const APPROVERS_CATALOG: &str = r#"
[requests]
admins = ["secops@example.com"]

[[apps]]
id = "wiki"
name = "Wiki"
owners = ["ivan@example.com"]
stages = [{ approvers = ["usergroup:sre-leads"], required = 1 }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_group_member_approves_and_someone_outside_it_is_refused() {
    let mut world = World::unbooted(
        APPROVERS_CATALOG,
        "",
        Some(Box::new(|o: &mut accessd::RunOptions| {
            o.jobs.usergroup_refresh = Duration::from_millis(200);
        })),
    )
    .await;
    world.fake.add_usergroup(SRE_LEADS, "sre-leads", &[DANA]);
    world.boot().await;
    let t = world
        .request(ANN, "wiki", &[], "Fix the runbook", "2h")
        .await;
    let dm = world.dm_about(DANA, &t).await;
    assert!(buttons_of(&dm).contains(&"Approve".to_string()), "{dm}");

    // Bob is not in @sre-leads: his click on (a copy of) Dana's DM is refused.
    let click = world.fake.click(BOB, &dm, "Approve");
    world.ack(&click).await;
    world.told(BOB, "not yours to decide").await;
    assert_eq!(world.ticket_status(&t).await, Status::Pending);

    world.decide(DANA, &t, "Approve", "ok", None).await;
    let deadline = std::time::Instant::now() + WAIT;
    while world.ticket_status(&t).await == Status::Pending {
        assert!(std::time::Instant::now() < deadline, "{t} is still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What follows the approval (the manual task for the owner) may land later.
    let audit = world.audit_actions(&t).await;
    assert_eq!(
        audit[..3],
        ["ticket.create", "ticket.decision_refused", "ticket.approve"],
        "{audit:?}"
    );

    // Dana leaves @sre-leads and Ivan joins: the next request asks Ivan,
    // and Dana's click on it is refused, as the group is re-read.
    world.fake.add_usergroup(SRE_LEADS, "sre-leads", &[IVAN]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let t2 = world
        .request(ANN, "wiki", &[], "Fix the other runbook", "2h")
        .await;
    let ivan_dm = world.dm_about(IVAN, &t2).await;
    let click = world.fake.click(DANA, &ivan_dm, "Approve");
    world.ack(&click).await;
    world.told(DANA, "not yours to decide").await;
    assert_eq!(world.ticket_status(&t2).await, Status::Pending);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_group_the_workspace_does_not_have_stops_start_up_naming_the_key() {
    let why = support::daemon::start_up_error(APPROVERS_CATALOG).await;
    assert!(
        why.contains("apps.wiki.stages: no Slack user group @sre-leads"),
        "{why}"
    );
}
