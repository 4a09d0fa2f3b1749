//! Revocations that tell the truth, end to end: the running daemon grants
//! through the SCIM provisioner on a real SCIM server (scim2-server), the
//! target changes under it, and at expiry the access is either really gone
//! or a person is alerted while the grant stays active.

#[path = "support/scim_server.rs"]
mod scim_server;
mod support;

use std::time::Duration;

use accessd::domain::ticket::{parse_ticket_ref, Status};
use accessd::store::{GrantStatus, Store};
use scim_server::{server, unique, Admin, TOKEN};
use support::world::*;

const ALERTS: &str = "CALERTS";

struct Scim {
    world: World,
    /// Ann's Slack id here: her email is fresh per test, as the SCIM server
    /// is shared by every test and run.
    ann: String,
    admin: Admin,
    user: String,
    group: String,
    _secrets: tempfile::TempDir,
}

/// Ann exists in the SCIM server with her Slack email (a fresh one); GitHub's `editor`
/// role is membership of a fresh group there.
async fn start() -> Scim {
    let admin = Admin::new();
    let email = format!("{}@example.com", unique("ann"));
    let user = admin.user(&email, &email).await;
    let name = unique("wiki-editors");
    let group = admin.group(&name).await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("scim-token");
    std::fs::write(&token, TOKEN).unwrap();
    let catalog = format!(
        r#"
[requests]
admins = ["secops@example.com"]

[alerts.channels]
provisioning_failed = "{ALERTS}"

[[provisioners]]
id = "idp"
kind = "scim"
url = "{url}"
token_file = "{token}"

[[apps]]
id = "wiki"
name = "Wiki"
owners = ["dana@example.com"]
provisioner = "idp"
stages = [{{ approvers = ["bob@example.com"], required = 1 }}]

  [[apps.roles]]
  id = "editor"
  name = "Editor"
  entitlement = "{name}"
"#,
        url = server().url,
        token = token.display(),
    );
    let world = World::start_adjusted(
        &catalog,
        Some(Box::new(|o: &mut accessd::RunOptions| {
            o.jobs.poll = Duration::from_millis(200);
            o.jobs.retry_base = Duration::from_millis(200);
        })),
    )
    .await;
    world.fake.add_channel(ALERTS, "access-alerts");
    let ann = "UANNSCIM".to_string();
    world.fake.add_user(&ann, &email, "Ann Scim");
    Scim {
        world,
        ann,
        admin,
        user,
        group,
        _secrets: secrets,
    }
}

impl Scim {
    async fn store(&self) -> Store {
        Store::open(&self.world.dir.path().join("accessd.db")).unwrap()
    }

    async fn granted(&self, duration: &str) -> String {
        let t = self
            .world
            .request(
                &self.ann,
                "wiki",
                &["editor"],
                "Edit the runbooks",
                duration,
            )
            .await;
        self.world.decide(BOB, &t, "Approve", "ok", None).await;
        self.wait_grant(&t, |s| s == GrantStatus::Active).await;
        assert_eq!(
            self.admin.members(&self.group).await,
            vec![self.user.clone()]
        );
        t
    }

    async fn wait_grant(&self, t: &str, done: impl Fn(GrantStatus) -> bool) -> GrantStatus {
        let id = parse_ticket_ref(t).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let store = self.store().await;
            let grant = store.grants_of_ticket(id).await.unwrap().first().cloned();
            store.close().await;
            let status = grant.map(|g| g.status);
            if let Some(status) = status.filter(|s| done(*s)) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{t}: grant stayed {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_removes_the_member_even_after_the_target_renamed_her() {
    let scim = start().await;
    let t = scim.granted("3s").await;
    // Her userName and email change in the IdP while she has access.
    let renamed = format!("{}@example.com", unique("ann.lee"));
    scim.admin.rename(&scim.user, &renamed, &renamed).await;

    scim.wait_grant(&t, |s| s != GrantStatus::Active).await;
    assert_eq!(scim.world.ticket_status(&t).await, Status::Expired);
    assert!(
        scim.admin.members(&scim.group).await.is_empty(),
        "expired in accessd, still a member in the target"
    );
    assert!(scim.world.fake.messages_to(ALERTS).is_empty());
    scim.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_gone_at_expiry_alerts_and_the_grant_stays_active() {
    let scim = start().await;
    let t = scim.granted("3s").await;
    scim.admin.delete("Groups", &scim.group).await;

    let alert = scim
        .world
        .fake
        .wait_until(Duration::from_secs(20), |f| {
            f.messages_to(ALERTS)
                .into_iter()
                .find(|m| m.to_string().contains("Could not revoke"))
        })
        .await
        .expect("a revoke-failed alert");
    assert!(alert.to_string().contains("not found"), "{alert}");
    let store = scim.store().await;
    let grant = store
        .grants_of_ticket(parse_ticket_ref(&t).unwrap())
        .await
        .unwrap()[0]
        .clone();
    store.close().await;
    assert_eq!(
        grant.status,
        GrantStatus::Active,
        "never recorded as revoked"
    );
    assert_eq!(grant.provisioner_id.as_deref(), Some("idp"));
    assert!(grant
        .target
        .as_deref()
        .is_some_and(|t| t.contains(&scim.group)));
    assert_eq!(scim.world.ticket_status(&t).await, Status::Active);
    let command = format!(
        "accessd grants revoke {} --removed-by-hand",
        grant.reference()
    );
    assert!(alert.to_string().contains(&command), "{alert}");

    // An admin checks the app, finds the access gone, and says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_accessd"))
        .args(["grants", "revoke", &grant.reference(), "--removed-by-hand"])
        .args(["--reason", "group deleted in the IdP", "--config"])
        .arg(scim.world.dir.path().join("accessd.toml"))
        .env_remove("SLACK_APP_TOKEN")
        .env_remove("SLACK_BOT_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scim.wait_grant(&t, |s| s == GrantStatus::Revoked).await;
    assert_eq!(scim.world.ticket_status(&t).await, Status::Revoked);
    let store = scim.store().await;
    let rows = store.audit_rows(None).await.unwrap();
    store.close().await;
    let by_hand = rows
        .iter()
        .find(|r| r.action == "grant.removed_by_hand")
        .expect("audited");
    assert!(by_hand.actor.starts_with("cli:"), "{}", by_hand.actor);
    assert_eq!(by_hand.detail["reason"], "group deleted in the IdP");
    scim.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_goes_to_the_provisioner_that_granted_after_the_app_moved() {
    let mut scim = start().await;
    let t = scim.granted("6s").await;
    // The app moves to another provisioner while the grant runs: a command
    // that would "revoke" anything asked and log it.
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("calls.log");
    let script = tools.path().join("other.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat >> {}\necho >> {}\nexit 0\n",
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    scim.world.catalog = scim
        .world
        .catalog
        .replace("provisioner = \"idp\"", "provisioner = \"other\"")
        + &format!(
            "\n[[provisioners]]\nid = \"other\"\nkind = \"command\"\ncommand = [\"/bin/sh\", \"{}\"]\n",
            script.display()
        );
    scim.world.restart().await;

    scim.wait_grant(&t, |s| s != GrantStatus::Active).await;
    assert!(
        scim.admin.members(&scim.group).await.is_empty(),
        "the SCIM membership outlived the grant"
    );
    assert!(
        !log.exists(),
        "the app's new provisioner was asked to revoke"
    );
    scim.world.stop().await;
}
