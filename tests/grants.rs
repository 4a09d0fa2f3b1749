//! Just-in-time access end to end: approved requests provisioned through a
//! real `command` provisioner (a shell script that logs every call and keeps
//! its own state keyed by idempotency key), expiry, Release now, extensions,
//! manual tasks, failures and retries, reminders and staleness, and restarts
//! of the real binary killed with SIGKILL at the worst moments.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use accessd::domain::ticket::{parse_ticket_ref, Status};
use accessd::store::{GrantStatus, Store};
use serde_json::json;
use support::payloads;
use support::world::*;
use support::{Failure, APP_TOKEN, BOT_TOKEN};

const ALERTS: &str = "CALERTS";
const SECURITY: &str = "CSECURITY";

/// Logs `action key` to calls.log for every call; `hang`, `fail` and
/// `tempfail` files in its folder steer it; state.log makes it idempotent
/// (a second grant with the same key exits 3, "already present").
const SCRIPT: &str = r#"#!/bin/sh
input=$(cat)
action=$(printf '%s' "$input" | sed -n 's/.*"action":"\([a-z]*\)".*/\1/p')
key=$(printf '%s' "$input" | sed -n 's/.*"idempotency_key":"\([^"]*\)".*/\1/p')
dir=$(dirname "$0")
echo "$action $key" >> "$dir/calls.log"
if [ -f "$dir/hang" ]; then sleep 30; fi
if [ -f "$dir/fail" ]; then echo "no such team: $(cat "$dir/fail") (as xoxb-leaked-42 on https://admin:pw@idp.example/)" >&2; exit 1; fi
if [ -f "$dir/tempfail" ]; then rm -f "$dir/tempfail"; echo "busy" >&2; exit 75; fi
if grep -qx "$action $key" "$dir/state.log" 2>/dev/null; then exit 3; fi
echo "$action $key" >> "$dir/state.log"
exit 0
"#;

fn catalog(script: &Path, requests: &str) -> String {
    format!(
        r#"
[requests]
default_duration = "8h"
max_duration = "30d"
fallback_approvers = ["group:it"]
admins = ["secops@example.com"]
{requests}

[groups]
it = ["ivan@example.com"]

[alerts.channels]
provisioning_failed = "{ALERTS}"
break_glass = "{SECURITY}"

[[provisioners]]
id = "script"
kind = "command"
command = ["/bin/sh", "{script}"]
timeout = "20s"

[[apps]]
id = "github"
name = "GitHub"
owners = ["dana@example.com"]
provisioner = "script"
stages = [{{ approvers = ["bob@example.com"], required = 1 }}]

  [[apps.roles]]
  id = "write"
  name = "Write"
  entitlement = "gh-writers"

  [[apps.roles]]
  id = "admin"
  name = "Org admin"
  entitlement = "gh-admins"
  max_duration = "1h"
  break_glass = true
  break_glass_by = ["ann@example.com"]

[[apps]]
id = "legacy"
name = "Legacy ERP"
owners = ["dana@example.com"]
stages = [{{ approvers = ["bob@example.com"], required = 1 }}]
"#,
        script = script.display()
    )
}

struct Jit {
    world: World,
    tools: tempfile::TempDir,
}

impl Jit {
    async fn start(requests: &str) -> Jit {
        let tools = tempfile::tempdir().unwrap();
        let script = tools.path().join("provision.sh");
        std::fs::write(&script, SCRIPT).unwrap();
        let mut world = World::start_with(&catalog(&script, requests)).await;
        world.fake.add_channel(ALERTS, "access-alerts");
        world.fake.add_channel(SECURITY, "security");
        world.options = Some(Box::new(|o: &mut accessd::RunOptions| {
            o.jobs.retry_base = Duration::from_millis(100);
            o.jobs.retry_max = Duration::from_millis(400);
            o.jobs.poll = Duration::from_millis(200);
            o.jobs.max_attempts = 3;
        }));
        world.restart().await;
        Jit { world, tools }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.tools.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn steer(&self, file: &str, content: Option<&str>) {
        let path = self.tools.path().join(file);
        match content {
            Some(c) => std::fs::write(path, c).unwrap(),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Runs the real CLI on the daemon's config, as an admin would.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_accessd"))
            .args(args)
            .arg("--config")
            .arg(self.world.dir.path().join("accessd.toml"))
            .env_remove("SLACK_APP_TOKEN")
            .env_remove("SLACK_BOT_TOKEN")
            .env_remove("SUDO_USER")
            // Not believed: the audit names the OS user.
            .env("USER", "ops-admin")
            .output()
            .unwrap()
    }

    async fn store(&self) -> Store {
        Store::open(&self.world.dir.path().join("accessd.db")).unwrap()
    }

    async fn wait_status(&self, t: &str, want: Status) {
        let id = parse_ticket_ref(t).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let store = self.store().await;
            let status = store.ticket(id).await.unwrap().unwrap().status;
            store.close().await;
            if status == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{t} is {status}, never became {want}; calls {:?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Requests GitHub write for Ann and has Bob approve it.
    async fn approved(&self, duration: &str) -> String {
        let t = self
            .world
            .request(ANN, "github", &["write"], "Ship the hotfix", duration)
            .await;
        self.world.decide(BOB, &t, "Approve", "ok", None).await;
        t
    }

    /// An answer to `user` (a refused click): where they clicked, or by DM
    /// when they cannot see an ephemeral message there.
    async fn told(&self, user: &str, needle: &str) {
        self.world
            .fake
            .wait_until(Duration::from_secs(10), |f| {
                f.notices_to(user)
                    .into_iter()
                    .find(|m| m.to_string().contains(needle))
            })
            .await
            .unwrap_or_else(|| panic!("{user} was not told {needle:?}"));
    }

    async fn dm_containing(&self, user: &str, needle: &str) -> serde_json::Value {
        self.world
            .fake
            .wait_until(Duration::from_secs(15), |f| {
                f.messages_to(user)
                    .into_iter()
                    .rev()
                    .find(|m| m.to_string().contains(needle))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no message to {user} containing {needle:?}: {:#?}",
                    self.world.fake.messages_to(user)
                )
            })
    }
}

#[tokio::test]
async fn approval_provisions_once_and_expiry_revokes_once() {
    let jit = Jit::start("expiry_warning = \"2s\"").await;
    let t = jit.approved("4s").await;
    jit.wait_status(&t, Status::Active).await;
    let granted = jit.dm_containing(ANN, "Access granted").await;
    assert_eq!(
        support::buttons(&granted)
            .into_iter()
            .map(|b| b.text)
            .collect::<Vec<_>>(),
        ["Extend", "Release now"]
    );
    let key = format!("accessd/{t}/write");
    assert_eq!(jit.calls(), [format!("grant {key}")]);
    // The warning comes before the end, with the same buttons.
    jit.dm_containing(ANN, "Extend it or release it now").await;
    jit.wait_status(&t, Status::Expired).await;
    jit.dm_containing(ANN, "expired and was removed").await;
    assert_eq!(
        jit.calls(),
        [format!("grant {key}"), format!("revoke {key}/revoke")]
    );
    let store = jit.store().await;
    let grants = store
        .grants_of_ticket(parse_ticket_ref(&t).unwrap())
        .await
        .unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].status, GrantStatus::Expired);
    assert_eq!(grants[0].entitlement, "gh-writers");
    let granted_at = grants[0].granted_at.unwrap();
    let expires_at = grants[0].expires_at.unwrap();
    assert_eq!(
        (expires_at - granted_at).num_seconds(),
        4,
        "the clock starts at the grant"
    );
    store.close().await;
    let audit = jit.world.audit_actions(&t).await;
    for action in ["ticket.approve", "ticket.provisioning", "ticket.active"] {
        assert!(audit.contains(&action.to_string()), "{audit:?}");
    }
    jit.world.stop().await;
}

#[tokio::test]
async fn release_now_revokes_at_once_and_the_requester_is_told() {
    let jit = Jit::start("").await;
    let t = jit.approved("2h").await;
    jit.wait_status(&t, Status::Active).await;
    let granted = jit.dm_containing(ANN, "Access granted").await;
    // The Home tab lists it with its expiry and the same buttons.
    jit.world.fake.open_home(ANN);
    let home = jit
        .world
        .fake
        .wait_until(WAIT, |f| {
            f.home_view(ANN)
                .filter(|h| h.to_string().contains(&t) && h.to_string().contains("until"))
        })
        .await
        .expect("home shows the active access");
    assert!(support::find_button(&home, "Release now").is_some());
    assert!(support::find_button(&home, "Extend").is_some());
    // Only the requester may release it.
    let click = jit.world.fake.click(BOB, &granted, "Release now");
    jit.world.ack(&click).await;
    jit.told(BOB, "Only the requester").await;
    let click = jit.world.fake.click(ANN, &granted, "Release now");
    jit.world.ack(&click).await;
    jit.wait_status(&t, Status::Revoked).await;
    jit.dm_containing(ANN, "was revoked").await;
    assert_eq!(jit.calls().len(), 2, "{:?}", jit.calls());
    assert!(jit.calls()[1].starts_with("revoke "));
    jit.world.stop().await;
}

#[tokio::test]
async fn an_extension_goes_through_policy_and_moves_the_expiry_without_provisioning() {
    let jit = Jit::start("").await;
    let t = jit.approved("1h").await;
    jit.wait_status(&t, Status::Active).await;
    let id = parse_ticket_ref(&t).unwrap();
    let store = jit.store().await;
    let before = store.ticket(id).await.unwrap().unwrap().expires_at.unwrap();
    store.close().await;
    let granted = jit.dm_containing(ANN, "Access granted").await;
    let click = jit.world.fake.click(ANN, &granted, "Extend");
    jit.world.ack(&click).await;
    jit.world
        .fake
        .wait_until(WAIT, |f| {
            f.last_modal(ANN)
                .filter(|m| m["callback_id"] == "extend_access")
        })
        .await
        .expect("extend modal");
    // Too long for the app's cap is answered inline.
    let ack = jit
        .world
        .submit(
            ANN,
            json!({
                "duration": { "duration_input": payloads::plain_text_value("90d") },
                "reason": { "reason_input": payloads::plain_text_value("release slipped") },
            }),
        )
        .await
        .expect("answered");
    assert_eq!(ack["response_action"], "errors", "{ack}");
    let ack = jit
        .world
        .submit(
            ANN,
            json!({
                "duration": { "duration_input": payloads::plain_text_value("2h") },
                "reason": { "reason_input": payloads::plain_text_value("release slipped") },
            }),
        )
        .await
        .expect("answered");
    let text = ack["view"]["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ext = text
        .split('*')
        .nth(1)
        .filter(|t| t.starts_with("T-"))
        .unwrap_or_else(|| panic!("no extension ticket in {ack}"))
        .to_string();
    jit.world.decide(BOB, &ext, "Approve", "fine", None).await;
    jit.wait_status(&ext, Status::Active).await;
    jit.dm_containing(ANN, &format!("Extension {ext} approved"))
        .await;
    let store = jit.store().await;
    let after = store.ticket(id).await.unwrap().unwrap().expires_at.unwrap();
    store.close().await;
    assert_eq!((after - before).num_seconds(), 7200);
    assert_eq!(jit.calls().len(), 1, "no second grant: {:?}", jit.calls());
    jit.world.stop().await;
}

#[tokio::test]
async fn an_extension_never_ends_later_than_the_roles_cap_from_its_approval() {
    let jit = Jit::start("").await;
    // Org admin is capped at 1h; Ann has it for the full hour.
    let t = jit
        .world
        .request(ANN, "github", &["admin"], "Rotate the org secrets", "1h")
        .await;
    jit.world.decide(BOB, &t, "Approve", "ok", None).await;
    jit.wait_status(&t, Status::Active).await;
    let id = parse_ticket_ref(&t).unwrap();
    let granted = jit.dm_containing(ANN, "Access granted").await;
    let click = jit.world.fake.click(ANN, &granted, "Extend");
    jit.world.ack(&click).await;
    jit.world
        .fake
        .wait_until(WAIT, |f| {
            f.last_modal(ANN)
                .filter(|m| m["callback_id"] == "extend_access")
        })
        .await
        .expect("extend modal");
    // One more hour is within the cap on its own, but not on top of the hour left.
    let ack = jit
        .world
        .submit(
            ANN,
            json!({
                "duration": { "duration_input": payloads::plain_text_value("1h") },
                "reason": { "reason_input": payloads::plain_text_value("the rotation is slow") },
            }),
        )
        .await
        .expect("answered");
    let text = ack["view"]["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ext = text
        .split('*')
        .nth(1)
        .filter(|t| t.starts_with("T-"))
        .unwrap_or_else(|| panic!("no extension ticket in {ack}"))
        .to_string();
    // Bob's DM says it is an extension, of which ticket, when the access
    // ends now and where approving moves the end: capped, not an hour on top.
    let dm = jit.world.dm_about(BOB, &ext).await;
    let asked_at = chrono::Utc::now();
    assert!(
        text_of(&dm).contains("extend") && dm.to_string().contains(&t),
        "{dm}"
    );
    let store = jit.store().await;
    let current = store.ticket(id).await.unwrap().unwrap().expires_at.unwrap();
    store.close().await;
    let shown = |label: &str| -> i64 {
        let all = dm.to_string();
        let after = all
            .split(&format!("*{label}*\\n<!date^"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {label} in {dm}"));
        after
            .split('^')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no time after {label} in {dm}"))
    };
    assert_eq!(shown("Ends now"), current.timestamp(), "{dm}");
    let new_end = shown("New end");
    assert!(
        new_end >= current.timestamp()
            && new_end <= (asked_at + chrono::Duration::hours(1)).timestamp() + 1,
        "new end {new_end} should be the cap from now, not an hour past {current}: {dm}"
    );
    jit.world.decide(BOB, &ext, "Approve", "fine", None).await;
    jit.wait_status(&ext, Status::Active).await;
    // Applied by now: the cap counts from no later than this moment.
    let approved_at = chrono::Utc::now();
    let store = jit.store().await;
    let after = store.ticket(id).await.unwrap().unwrap().expires_at.unwrap();
    store.close().await;
    assert!(
        after <= approved_at + chrono::Duration::hours(1),
        "ends {after}, more than the 1h cap after the approval at {approved_at}"
    );
    jit.world.stop().await;
}

#[tokio::test]
async fn a_permanent_failure_alerts_and_an_admin_retry_provisions_it() {
    let jit = Jit::start("").await;
    jit.steer("fail", Some("gh-writers"));
    let t = jit.approved("1h").await;
    jit.wait_status(&t, Status::Failed).await;
    // The requester learns what failed, in words that cannot carry a
    // secret: nothing the program printed reaches them.
    let told = jit
        .dm_containing(ANN, "could not be granted")
        .await
        .to_string();
    assert!(
        told.contains("the provisioning program failed (exit 1)"),
        "{told}"
    );
    for leak in ["no such team", "xoxb-leaked-42", "admin:pw", "/bin/sh"] {
        assert!(!told.contains(leak), "{leak} reached the requester: {told}");
    }
    // The admins get the whole of it.
    let alert = jit
        .dm_containing(ALERTS, "Provisioning failed")
        .await
        .to_string();
    assert!(alert.contains(&format!("accessd tickets retry {t}")));
    assert!(alert.contains("no such team: gh-writers"), "{alert}");
    jit.steer("fail", None);
    let out = jit.cli(&["tickets", "retry", &t]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    jit.wait_status(&t, Status::Active).await;
    // Only a failed ticket can be retried.
    let out = jit.cli(&["tickets", "retry", &t]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only a failed request"));
    assert!(jit
        .world
        .audit_actions(&t)
        .await
        .contains(&"ticket.retry".to_string()));
    let key = format!("grant accessd/{t}/write");
    assert_eq!(jit.calls(), [key.clone(), key], "the retry keeps the key");
    jit.world.stop().await;
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_key() {
    let jit = Jit::start("").await;
    jit.steer("tempfail", Some(""));
    let t = jit.approved("1h").await;
    jit.wait_status(&t, Status::Active).await;
    let key = format!("grant accessd/{t}/write");
    assert_eq!(jit.calls(), [key.clone(), key]);
    let store = jit.store().await;
    let grant = &store
        .grants_of_ticket(parse_ticket_ref(&t).unwrap())
        .await
        .unwrap()[0];
    assert_eq!(grant.attempts, 2);
    assert!(!grant.preexisting);
    store.close().await;
    jit.world.stop().await;
}

#[tokio::test]
async fn an_app_without_provisioner_is_a_manual_task_for_its_owners() {
    let jit = Jit::start("").await;
    let t = jit
        .world
        .request(ANN, "legacy", &[], "Month-end close", "8h")
        .await;
    jit.world.decide(BOB, &t, "Approve", "", None).await;
    jit.wait_status(&t, Status::Provisioning).await;
    jit.dm_containing(ANN, "waiting for the app owners").await;
    let task = jit.dm_containing(DANA, "Please grant").await;
    // Someone who is not an owner is refused, and told nothing of the task.
    let click = jit.world.fake.click(EVE, &task, "Mark done");
    jit.world.ack(&click).await;
    jit.told(EVE, "not yours to act on").await;
    let click = jit.world.fake.click(DANA, &task, "Mark done");
    jit.world.ack(&click).await;
    jit.wait_status(&t, Status::Active).await;
    jit.dm_containing(ANN, "Access granted").await;
    // The owner's copy says who did it and loses its buttons.
    let updated = jit.dm_containing(DANA, "Done by").await;
    assert!(support::buttons(&updated).is_empty());
    assert!(jit.calls().is_empty(), "no provisioner was called");
    jit.world.stop().await;
}

#[tokio::test]
async fn approvers_are_reminded_and_an_unanswered_request_goes_stale() {
    let jit =
        Jit::start("reminder_after = \"1s\"\nreminder_every = \"1s\"\nstale_after = \"3s\"").await;
    let t = jit
        .world
        .request(ANN, "github", &["write"], "Ship the hotfix", "1h")
        .await;
    jit.dm_containing(BOB, "still waiting").await;
    jit.wait_status(&t, Status::Stale).await;
    jit.dm_containing(ANN, "got no decision").await;
    // Every copy Bob has (the first DM and the reminders) lost its buttons.
    let copies = jit
        .world
        .fake
        .wait_until(Duration::from_secs(10), |f| {
            let all: Vec<_> = f
                .messages_to(BOB)
                .into_iter()
                .filter(|m| m.to_string().contains(&t))
                .collect();
            all.iter()
                .all(|m| support::buttons(m).is_empty())
                .then_some(all)
        })
        .await
        .expect("approver copies updated");
    assert!(copies.len() >= 2, "the first DM and at least one reminder");
    assert!(jit
        .world
        .audit_actions(&t)
        .await
        .contains(&"ticket.stale".to_string()));
    jit.world.stop().await;
}

#[tokio::test]
async fn an_admin_lists_and_revokes_grants_from_the_cli() {
    let jit = Jit::start("").await;
    let t = jit.approved("2h").await;
    jit.wait_status(&t, Status::Active).await;
    let out = jit.cli(&["grants", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let grant = &list[0];
    assert_eq!(grant["ticket"], t.as_str());
    assert_eq!(grant["status"], "active");
    assert_eq!(grant["person"], "ann@example.com");
    assert_eq!(grant["entitlement"], "gh-writers");
    let id = grant["id"].as_str().unwrap().to_string();
    let out = jit.cli(&["grants", "revoke", &id, "--reason", "left the project"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    jit.wait_status(&t, Status::Revoked).await;
    jit.dm_containing(
        ANN,
        &format!("left the project by {}", support::cli::os_actor()),
    )
    .await;
    let out = jit.cli(&["grants", "revoke", &id]);
    assert_eq!(out.status.code(), Some(1), "not active any more");
    let out = jit.cli(&["grants", "list", "--status", "revoked"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&id) && table.contains("left the project"),
        "{table}"
    );
    let store = jit.store().await;
    let audit = store.audit_rows(None).await.unwrap();
    store.close().await;
    assert!(audit.iter().any(|r| r.action == "grant.revoke_requested"
        && r.actor == support::cli::os_actor()
        && r.subject == id));
    jit.world.stop().await;
}

fn urgent_roles(role: &str, reason: &str) -> serde_json::Value {
    let option = |text: &str, value: &str| json!({ "text": { "type": "plain_text", "text": text, "emoji": true }, "value": value });
    json!({
        "roles": { "roles_select": { "type": "checkboxes", "selected_options": [option(role, role)] } },
        "reason": { "reason_input": payloads::plain_text_value(reason) },
        "urgent": { "urgent_check": { "type": "checkboxes", "selected_options": [option("Break-glass", "urgent")] } },
    })
}

#[tokio::test]
async fn break_glass_grants_at_once_tells_approvers_and_security_and_can_be_revoked() {
    let jit = Jit::start("").await;
    // A role that does not allow it is refused inline.
    jit.world.open_request(ANN, "github").await;
    let ack = jit
        .world
        .submit(
            ANN,
            urgent_roles("write", "Production is down, need it now"),
        )
        .await
        .expect("answered");
    assert_eq!(ack["response_action"], "errors", "{ack}");
    assert!(ack["errors"]["urgent"].is_string(), "{ack}");

    jit.world.open_request(ANN, "github").await;
    let ack = jit
        .world
        .submit(
            ANN,
            urgent_roles("admin", "Production is down, need it now"),
        )
        .await
        .expect("answered");
    assert_eq!(ack["response_action"], "update", "{ack}");
    // Over the role's 1h cap is refused; within it, it is granted.
    let ack = jit
        .world
        .submit(
            ANN,
            json!({ "duration": { "duration_input": payloads::plain_text_value("2h") } }),
        )
        .await
        .expect("answered");
    assert_eq!(ack["response_action"], "errors", "{ack}");
    let ack = jit
        .world
        .submit(
            ANN,
            json!({ "duration": { "duration_input": payloads::plain_text_value("30m") } }),
        )
        .await
        .expect("answered");
    let text = ack["view"]["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("break-glass"), "{text}");
    let t = text.split('*').nth(1).unwrap().to_string();
    jit.wait_status(&t, Status::Active).await;
    assert_eq!(jit.calls(), [format!("grant accessd/{t}/admin")]);
    jit.dm_containing(ANN, "Access granted").await;
    jit.dm_containing(SECURITY, "Break-glass").await;
    let notice = jit.dm_containing(BOB, "Break-glass").await;
    assert!(notice.to_string().contains("Production is down"));
    let audit = jit.world.audit_actions(&t).await;
    assert!(
        audit.contains(&"ticket.break_glass".to_string()),
        "{audit:?}"
    );
    // Someone who is neither approver nor admin cannot revoke it; Bob can.
    let click = jit.world.fake.click(EVE, &notice, "Revoke");
    jit.world.ack(&click).await;
    jit.told(EVE, "not yours to act on").await;
    let click = jit.world.fake.click(BOB, &notice, "Revoke");
    jit.world.ack(&click).await;
    jit.wait_status(&t, Status::Revoked).await;
    jit.dm_containing(ANN, "revoked by bob@example.com").await;
    jit.world.stop().await;
}

#[tokio::test]
async fn break_glass_is_only_for_admins_and_the_people_a_role_names() {
    let jit = Jit::start("").await;
    // Eve is neither an admin nor in the role's break_glass_by: the modal
    // does not offer it, though the role allows break-glass.
    jit.world.open_request(EVE, "github").await;
    let roles_step = jit.world.fake.last_modal(EVE).expect("roles step");
    assert!(!has_block(&roles_step, "urgent"), "{roles_step}");
    // A crafted submission is refused on the field and audited.
    let ack = jit
        .world
        .submit(
            EVE,
            urgent_roles("admin", "Production is down, need it now"),
        )
        .await
        .expect("answered");
    assert_eq!(ack["response_action"], "errors", "{ack}");
    assert!(ack["errors"]["urgent"].is_string(), "{ack}");
    let store = jit.store().await;
    let audit = store.audit_rows(None).await.unwrap();
    store.close().await;
    assert!(
        audit
            .iter()
            .any(|r| r.action == "ticket.break_glass_refused" && r.actor == "eve@example.com"),
        "{:?}",
        audit.iter().map(|r| &r.action).collect::<Vec<_>>()
    );
    // Ann, whom the role names, and the admin are offered it.
    for user in [ANN, SEC] {
        jit.world.open_request(user, "github").await;
        let roles_step = jit.world.fake.last_modal(user).expect("roles step");
        assert!(has_block(&roles_step, "urgent"), "{user}: {roles_step}");
    }
    jit.world.stop().await;
}

// --- The real binary, killed with SIGKILL -----------------------------------

fn spawn_binary(config: &Path, log: &Path) -> Child {
    spawn_binary_logging(config, log, "info")
}

fn spawn_binary_logging(config: &Path, log: &Path, filter: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_accessd"))
        .args(["run", "--config"])
        .arg(config)
        .env("SLACK_APP_TOKEN", APP_TOKEN)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("RUST_LOG", filter)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

fn kill_9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

/// Swaps the in-process daemon for the binary on the same config and database.
async fn binary_world(requests: &str) -> (Jit, PathBuf, PathBuf, Child) {
    binary_world_logging(requests, "info").await
}

async fn binary_world_logging(requests: &str, filter: &str) -> (Jit, PathBuf, PathBuf, Child) {
    let mut jit = Jit::start(requests).await;
    if let Some(daemon) = jit.world.daemon.take() {
        daemon.stop().await.expect("clean stop");
    }
    // Until the fake has seen the old sockets close, it could hand the first
    // envelope to one of them, and nobody would ack it.
    jit.world
        .fake
        .wait_until(WAIT, |f| f.live_connections().is_empty().then_some(()))
        .await
        .expect("the in-process daemon's sockets closed");
    let config = jit.world.dir.path().join("accessd.toml");
    let log = jit.world.dir.path().join("daemon.log");
    let child = spawn_binary_logging(&config, &log, filter);
    jit.world
        .fake
        .wait_for_connections(2, Duration::from_secs(20))
        .await;
    (jit, config, log, child)
}

/// A whole request → approve → provision → expiry run of the binary logged
/// at `RUST_LOG=trace` (every crate), with Slack answering 429s and 500s and
/// a malformed envelope on the way: no token appears in any log line.
#[tokio::test]
async fn a_full_run_logged_at_trace_level_never_prints_a_token() {
    let (jit, _config, log, mut child) = binary_world_logging("", "trace").await;
    let fake = &jit.world.fake;
    fake.fail_next(
        "chat.postMessage",
        2,
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    fake.fail_next("conversations.open", 1, Failure::Status(500));
    fake.send_raw(
        None,
        "{\"type\":\"interactive\",\"envelope_id\":\"bad-1\",\"payload\":7}",
    );
    let t = jit.approved("3s").await;
    jit.wait_status(&t, Status::Active).await;
    jit.wait_status(&t, Status::Expired).await;
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let logs = std::fs::read_to_string(&log).unwrap();
    // It was a full run at trace level, or the check proves nothing.
    assert!(logs.contains("TRACE"), "not logged at trace level");
    for job in [
        format!("\"kind\":\"provision\",\"subject\":\"{t}\",\"result\":\"Done\""),
        "\"kind\":\"revoke\"".to_string(),
        "envelope not understood; acked".to_string(),
    ] {
        assert!(logs.contains(&job), "the run did not log {job}");
    }
    assert!(
        logs.contains("ratelimited") || logs.contains("429"),
        "no 429 in the log"
    );
    for secret in [APP_TOKEN, BOT_TOKEN, "fake-app-token", "fake-bot-token"] {
        let line = logs.lines().find(|l| l.contains(secret));
        assert!(line.is_none(), "a token in the log: {line:?}");
    }
    let _ = child.kill();
}

#[tokio::test]
async fn an_expiry_missed_while_killed_runs_once_at_start_up() {
    let (jit, config, log, mut child) = binary_world("").await;
    let t = jit.approved("3s").await;
    jit.wait_status(&t, Status::Active).await;
    kill_9(&mut child);
    // The expiry passes while the daemon is down.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(jit.calls().len(), 1);
    let mut child = spawn_binary(&config, &log);
    jit.wait_status(&t, Status::Expired).await;
    let key = format!("accessd/{t}/write");
    assert_eq!(
        jit.calls(),
        [format!("grant {key}"), format!("revoke {key}/revoke")],
        "granted once, revoked once"
    );
    kill_9(&mut child);
}

#[tokio::test]
async fn a_kill_during_the_provisioner_call_does_not_grant_twice() {
    let (jit, config, log, mut child) = binary_world("").await;
    jit.steer("hang", Some(""));
    let t = jit.approved("1h").await;
    let key = format!("grant accessd/{t}/write");
    jit.world
        .fake
        .wait_until(Duration::from_secs(15), |_| {
            jit.calls().contains(&key).then_some(())
        })
        .await
        .expect("the provisioner was called");
    // The grant is applied (in state.log) but the daemon dies before it
    // hears back and commits.
    std::fs::write(jit.tools.path().join("state.log"), format!("{key}\n")).unwrap();
    kill_9(&mut child);
    jit.steer("hang", None);
    let mut child = spawn_binary(&config, &log);
    jit.wait_status(&t, Status::Active).await;
    assert_eq!(jit.calls(), [key.clone(), key], "retried with the same key");
    let store = jit.store().await;
    let grant = &store
        .grants_of_ticket(parse_ticket_ref(&t).unwrap())
        .await
        .unwrap()[0];
    assert_eq!(grant.status, GrantStatus::Active);
    assert!(
        !grant.preexisting,
        "our own earlier call applied it: it must be revoked at expiry"
    );
    store.close().await;
    let state = std::fs::read_to_string(jit.tools.path().join("state.log")).unwrap();
    assert_eq!(state.lines().count(), 1, "applied once in the app");
    kill_9(&mut child);
}

#[tokio::test]
async fn a_kill_during_the_revoke_call_revokes_once_after_restart() {
    let (jit, config, log, mut child) = binary_world("").await;
    let t = jit.approved("2s").await;
    jit.wait_status(&t, Status::Active).await;
    jit.steer("hang", Some(""));
    let revoke = format!("revoke accessd/{t}/write/revoke");
    jit.world
        .fake
        .wait_until(Duration::from_secs(15), |_| {
            jit.calls().contains(&revoke).then_some(())
        })
        .await
        .expect("the revoke was called");
    // The app removed it, but the daemon dies before it hears back.
    let state = std::fs::read_to_string(jit.tools.path().join("state.log")).unwrap();
    std::fs::write(
        jit.tools.path().join("state.log"),
        format!("{state}{revoke}\n"),
    )
    .unwrap();
    kill_9(&mut child);
    jit.steer("hang", None);
    let mut child = spawn_binary(&config, &log);
    jit.wait_status(&t, Status::Expired).await;
    let calls = jit.calls();
    assert_eq!(
        calls.iter().filter(|c| **c == revoke).count(),
        2,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("grant")).count(),
        1,
        "{calls:?}"
    );
    kill_9(&mut child);
}

#[tokio::test]
async fn a_manual_grant_stays_active_until_an_owner_confirms_its_removal() {
    let jit = Jit::start("reminder_every = \"1s\"").await;
    let t = jit
        .world
        .request(ANN, "legacy", &[], "Month-end close", "3s")
        .await;
    jit.world.decide(BOB, &t, "Approve", "", None).await;
    let task = jit.dm_containing(DANA, "Please grant").await;
    let click = jit.world.fake.click(DANA, &task, "Mark done");
    jit.world.ack(&click).await;
    jit.wait_status(&t, Status::Active).await;

    // At the end the owner is asked, and accessd does not pretend it is gone.
    let ask = jit.dm_containing(DANA, "Please remove").await;
    assert_eq!(buttons_of(&ask), ["Removed", "Could not remove"]);
    jit.dm_containing(DANA, "Reminder: Please remove").await;
    let grant_status = || async {
        let store = jit.store().await;
        let g = store
            .grants_of_ticket(parse_ticket_ref(&t).unwrap())
            .await
            .unwrap()[0]
            .status;
        store.close().await;
        g
    };
    assert_eq!(grant_status().await, GrantStatus::Active);
    assert_eq!(jit.world.ticket_status(&t).await, Status::Active);

    // Ann cannot close her own access's record; Eve has no part in it.
    let click = jit.world.fake.click(ANN, &ask, "Removed");
    jit.world.ack(&click).await;
    jit.told(ANN, "your own request").await;
    let click = jit.world.fake.click(EVE, &ask, "Removed");
    jit.world.ack(&click).await;
    jit.told(EVE, "not yours to act on").await;
    assert_eq!(grant_status().await, GrantStatus::Active);

    // Could not remove: the admins hear of it, the grant stays active.
    let click = jit.world.fake.click(DANA, &ask, "Could not remove");
    jit.world.ack(&click).await;
    jit.told(DANA, "admins were alerted").await;
    let alert = jit.dm_containing(ALERTS, "could not remove").await;
    assert!(alert.to_string().contains("dana@example.com"), "{alert}");
    assert_eq!(grant_status().await, GrantStatus::Active);
    // Answered: no more reminders.
    let reminders = || {
        jit.world
            .fake
            .messages_to(DANA)
            .iter()
            .filter(|m| m.to_string().contains("Reminder: Please remove"))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = reminders();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(reminders(), before, "reminded after an answer");

    // Removed, later: only now it ends.
    let click = jit.world.fake.click(DANA, &ask, "Removed");
    jit.world.ack(&click).await;
    jit.wait_status(&t, Status::Expired).await;
    assert_eq!(grant_status().await, GrantStatus::Expired);
    jit.dm_containing(ANN, "ended").await;
    let store = jit.store().await;
    let rows = store.audit_rows(None).await.unwrap();
    store.close().await;
    let of_grant: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.action.starts_with("grant.removal"))
        .map(|r| (r.action.as_str(), r.actor.as_str()))
        .collect();
    assert_eq!(
        of_grant,
        [
            ("grant.removal_asked", "accessd"),
            ("grant.removal_failed", "dana@example.com")
        ]
    );
    jit.world.stop().await;
}
