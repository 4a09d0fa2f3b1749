//! Identity sources and alerts end to end: `file` sources polled by the
//! running daemon, alerts posted through the fake Slack to channels named
//! by `#name`, fingerprint dedupe across ticks and restarts, failed and
//! shrunken sources, the digest, and every alert action as Slack users click
//! them (including the refusal for someone who is neither admin nor owner).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use accessd::store::Store;
use serde_json::{json, Value};
use support::world::{World, DANA, DIGESTS, EVE, IT_OPS, SEC, SEC_ALERTS, WAIT};

const TICK: &str = "every 1s";

struct Files {
    _dir: tempfile::TempDir,
    hr: PathBuf,
    saas: PathBuf,
    log: PathBuf,
}

fn account(app: &str, id: &str, email: &str, status: &str, ents: &[&str]) -> Value {
    json!({ "app": app, "id": id, "email": email, "name": id, "status": status,
            "entitlements": ents, "url": format!("https://{app}.example.com/u/{id}") })
}

fn write(path: &Path, accounts: Vec<Value>) {
    let doc = json!({ "apps": [], "accounts": accounts });
    // Write-then-rename: the daemon must never read a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn hr_people() -> Vec<Value> {
    vec![
        json!({ "id": "e1", "email": "ann@example.com", "status": "active", "manager": "bob@example.com" }),
        json!({ "id": "e2", "email": "bob@example.com", "status": "active" }),
        json!({ "id": "e3", "email": "carol@example.com", "status": "active" }),
        json!({ "id": "e4", "email": "dana@example.com", "status": "active" }),
        json!({ "id": "e5", "email": "zoe@example.com", "status": "deprovisioned" }),
    ]
}

fn saas_baseline() -> Vec<Value> {
    vec![
        account(
            "github",
            "ann",
            "ann@example.com",
            "active",
            &["gh-readers"],
        ),
        account(
            "github",
            "bob",
            "bob@example.com",
            "active",
            &["gh-writers"],
        ),
        account("dropbox", "carol", "carol@example.com", "active", &[]),
        account("slack", "ann", "ann@example.com", "active", &[]),
        account("slack", "bob", "bob@example.com", "active", &[]),
    ]
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let hr = dir.path().join("hr.json");
    let saas = dir.path().join("saas.json");
    let log = dir.path().join("provision.log");
    let people = hr_people()
        .into_iter()
        .map(|mut p| {
            p["app"] = json!("hr");
            p
        })
        .collect();
    write(&hr, people);
    write(&saas, saas_baseline());
    Files {
        _dir: dir,
        hr,
        saas,
        log,
    }
}

fn catalog(f: &Files) -> String {
    let script = f.log.with_extension("sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat >> {}\necho >> {}\nexit 0\n",
            f.log.display(),
            f.log.display()
        ),
    )
    .unwrap();
    format!(
        r##"
[requests]
admins = ["secops@example.com"]
fallback_approvers = ["secops@example.com"]

[[provisioners]]
id = "script"
kind = "command"
command = ["/bin/sh", "{script}"]

[[apps]]
id = "github"
name = "GitHub"
owners = ["dana@example.com"]
provisioner = "script"
stages = [{{ approvers = ["manager"], required = 1 }}]

  [[apps.roles]]
  id = "write"
  name = "Write"
  entitlement = "gh-writers"

[[apps]]
id = "slack"
name = "Slack"
owners = ["dana@example.com"]

[[sources]]
id = "hr"
kind = "file"
path = "{hr}"
schedule = "{TICK}"
authoritative = true

[[sources]]
id = "saas"
kind = "file"
path = "{saas}"
schedule = "{TICK}"

[alerts]
watchlist = ["dropbox"]
mass_change_guard = 0.5

[alerts.channels]
watchlist_signup = "#sec-alerts"
offboarded_active = "#{sec}"
new_app = "#it-ops"
source_failed = "{itops}"
findings_digest = "#security-digest"
"##,
        script = script.display(),
        hr = f.hr.display(),
        saas = f.saas.display(),
        sec = SEC_ALERTS.1,
        itops = IT_OPS.0,
    )
}

fn fast_retries() -> Option<support::world::AdjustOptions> {
    Some(Box::new(|o: &mut accessd::RunOptions| {
        o.jobs.retry_base = Duration::from_millis(300);
        o.jobs.retry_max = Duration::from_secs(1);
        o.jobs.poll = Duration::from_millis(200);
    }))
}

async fn store(world: &World) -> Store {
    Store::open(&world.dir.path().join("accessd.db")).unwrap()
}

async fn failed(world: &World, source: &str) -> i64 {
    let db = store(world).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let failures = loop {
        let states = db.source_states().await.unwrap();
        let f = states
            .iter()
            .find(|s| s.id == source)
            .map_or(0, |s| s.failures);
        if f > 0 {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{source} did not fail"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    db.close().await;
    failures
}

fn texts(world: &World, channel: &str) -> Vec<String> {
    world
        .fake
        .messages_to(channel)
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn wait_posts(world: &World, channel: &str, n: usize) -> Vec<Value> {
    world
        .fake
        .wait_until(WAIT, |f| {
            let m = f.messages_to(channel);
            (m.len() >= n).then_some(m)
        })
        .await
        .unwrap_or_else(|| panic!("{n} posts in {channel}; got {:?}", texts(world, channel)))
}

async fn start() -> (World, Files) {
    let f = files();
    let world = World::start_adjusted(&catalog(&f), fast_retries()).await;
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(30);
    world.wait_synced("hr", t0).await;
    world.wait_synced("saas", t0).await;
    (world, f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_is_silent_and_each_change_alerts_once_across_ticks_and_restarts() {
    let (mut world, f) = start().await;
    // Give a couple more ticks: the baseline posts nothing anywhere.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for channel in [SEC_ALERTS.0, IT_OPS.0, DIGESTS.0] {
        assert!(
            texts(&world, channel).is_empty(),
            "baseline posted to {channel}"
        );
    }

    // Eve signs up to Dropbox (watchlist), Zed appears in Notion (new app),
    // and deprovisioned Zoe turns up with an active GitHub account.
    let mut saas = saas_baseline();
    saas.push(account("dropbox", "eve", "eve@example.com", "active", &[]));
    saas.push(account("notion", "zed", "zed@example.com", "active", &[]));
    saas.push(account(
        "github",
        "zoe",
        "zoe@example.com",
        "active",
        &["gh-writers"],
    ));
    write(&f.saas, saas);

    let sec = wait_posts(&world, SEC_ALERTS.0, 2).await;
    let ops = wait_posts(&world, IT_OPS.0, 1).await;
    let sec_texts: Vec<&str> = sec.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(
        sec_texts
            .iter()
            .any(|t| t.contains("eve@example.com") && t.contains("watchlist app *dropbox*")),
        "{sec_texts:?}"
    );
    assert!(
        sec_texts.iter().any(|t| t.contains("zoe@example.com")
            && t.contains("deprovisioned in hr")
            && t.contains("*GitHub*")),
        "{sec_texts:?}"
    );
    assert!(ops[0]["text"]
        .as_str()
        .unwrap()
        .contains("New app *notion*"));

    // More ticks, then a restart: the same findings are not posted again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    world.restart().await;
    world.wait_synced("saas", chrono::Utc::now()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        texts(&world, SEC_ALERTS.0).len(),
        2,
        "{:?}",
        texts(&world, SEC_ALERTS.0)
    );
    assert_eq!(
        texts(&world, IT_OPS.0).len(),
        1,
        "{:?}",
        texts(&world, IT_OPS.0)
    );

    // Zoe's account goes: the finding resolves; when it comes back it alerts again.
    let mut saas = saas_baseline();
    saas.push(account("dropbox", "eve", "eve@example.com", "active", &[]));
    saas.push(account("notion", "zed", "zed@example.com", "active", &[]));
    write(&f.saas, saas.clone());
    let db = store(&world).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let open = db
            .alerts(Some("offboarded_active".into()), vec!["open".into()])
            .await
            .unwrap();
        if open.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "offboarded finding did not resolve"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    saas.push(account(
        "github",
        "zoe",
        "zoe@example.com",
        "active",
        &["gh-writers"],
    ));
    write(&f.saas, saas);
    let sec = wait_posts(&world, SEC_ALERTS.0, 3).await;
    assert!(sec[2]["text"].as_str().unwrap().contains("zoe@example.com"));
    db.close().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_alerts_once_keeps_its_snapshot_and_recovers() {
    let (world, f) = start().await;
    std::fs::write(&f.saas, "{ this is not json").unwrap();
    failed(&world, "saas").await;
    let ops = wait_posts(&world, IT_OPS.0, 1).await;
    let text = ops[0]["text"].as_str().unwrap();
    assert!(
        text.contains("Source *saas* failed") && text.contains("saas.json"),
        "{text}"
    );
    // Several failing ticks (with backoff) later: still one alert, and the
    // last good snapshot is intact (nobody "left").
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        texts(&world, IT_OPS.0).len(),
        1,
        "{:?}",
        texts(&world, IT_OPS.0)
    );
    let db = store(&world).await;
    assert_eq!(db.accounts_of_app("github".into()).await.unwrap().len(), 2);
    assert!(db.email_known("carol@example.com".into()).await.unwrap());

    // Good again: the finding resolves; a later failure alerts anew.
    write(&f.saas, saas_baseline());
    world.wait_synced("saas", chrono::Utc::now()).await;
    let failed_alert = db
        .alerts(Some("source_failed".into()), vec!["resolved".into()])
        .await
        .unwrap();
    assert_eq!(failed_alert.len(), 1);
    std::fs::write(&f.saas, "[]").unwrap();
    wait_posts(&world, IT_OPS.0, 2).await;
    db.close().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_removal_is_held_with_one_alert_and_nothing_removed() {
    let (world, f) = start().await;
    // 3 of 5 accounts gone at once, over the 50 % guard.
    write(&f.saas, saas_baseline()[..2].to_vec());
    failed(&world, "saas").await;
    let ops = wait_posts(&world, IT_OPS.0, 1).await;
    let text = ops[0]["text"].as_str().unwrap();
    assert!(
        text.contains("Source *saas* held") && text.contains("3 of 5 accounts"),
        "{text}"
    );
    let db = store(&world).await;
    assert_eq!(
        db.accounts_of_app("slack".into()).await.unwrap().len(),
        2,
        "nothing removed"
    );
    db.close().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_actions_are_refused_to_outsiders_and_applied_for_admins_and_owners() {
    let (world, f) = start().await;
    let mut saas = saas_baseline();
    saas.push(account("notion", "zed", "zed@example.com", "active", &[]));
    saas.push(account("figma", "zed", "zed@example.com", "active", &[]));
    saas.push(account(
        "github",
        "zoe",
        "zoe@example.com",
        "active",
        &["gh-writers"],
    ));
    write(&f.saas, saas.clone());
    let ops = wait_posts(&world, IT_OPS.0, 2).await;
    let sec = wait_posts(&world, SEC_ALERTS.0, 1).await;
    let notion = ops
        .iter()
        .find(|m| m["text"].as_str().unwrap().contains("notion"))
        .unwrap()
        .clone();
    let figma = ops
        .iter()
        .find(|m| m["text"].as_str().unwrap().contains("figma"))
        .unwrap()
        .clone();
    let zoe = sec[0].clone();

    // Eve is neither admin nor an owner: refused, ephemerally, nothing changes.
    let env = world.fake.click(EVE, &notion, "Add to watchlist");
    world.ack(&env).await;
    let refusal = world
        .fake
        .wait_until(WAIT, |fk| fk.ephemerals_to(EVE).pop())
        .await
        .expect("an ephemeral refusal");
    assert!(refusal["text"]
        .as_str()
        .unwrap()
        .contains("Only accessd admins"));
    let db = store(&world).await;
    assert!(db.app_marks().await.unwrap().is_empty());

    // The admin adds Notion to the watchlist: message updated, mark stored, audited.
    let env = world.fake.click(SEC, &notion, "Add to watchlist");
    world.ack(&env).await;
    let updated = world
        .fake
        .wait_until(WAIT, |fk| {
            let m = fk.message(IT_OPS.0, notion["ts"].as_str().unwrap())?;
            serde_json::to_string(&m["blocks"])
                .unwrap()
                .contains("added this app to the watchlist")
                .then_some(m)
        })
        .await
        .expect("notion alert updated");
    assert!(
        support::find_button(&updated, "Add to watchlist").is_none(),
        "buttons gone"
    );
    assert_eq!(
        db.app_marks()
            .await
            .unwrap()
            .get("notion")
            .map(String::as_str),
        Some("watch")
    );
    // A second click answers who did it.
    let env = world.fake.click(SEC, &notion, "Add to watchlist");
    world.ack(&env).await;
    let again = world
        .fake
        .wait_until(WAIT, |fk| {
            fk.ephemerals_to(SEC)
                .into_iter()
                .find(|e| e["text"].as_str().unwrap_or("").contains("Already handled"))
        })
        .await
        .expect("already handled");
    assert!(again["text"]
        .as_str()
        .unwrap()
        .contains("by secops@example.com"));

    // Ignore Figma; then a new Notion sign-up is a watchlist alert.
    world
        .ack(&world.fake.click(SEC, &figma, "Ignore app"))
        .await;
    saas.push(account("notion", "eve", "eve@example.com", "active", &[]));
    write(&f.saas, saas);
    let sec = wait_posts(&world, SEC_ALERTS.0, 2).await;
    assert!(sec[1]["text"].as_str().unwrap().contains("eve@example.com"));

    // Dana owns GitHub: she revokes Zoe's access; the provisioner is asked
    // to revoke gh-writers, and the outcome is posted in the alert's thread.
    world.ack(&world.fake.click(DANA, &zoe, "Revoke")).await;
    let log = world
        .fake
        .wait_until(Duration::from_secs(10), |_| {
            std::fs::read_to_string(&f.log)
                .ok()
                .filter(|l| l.contains("revoke"))
        })
        .await
        .expect("provisioner called");
    let call: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(call["action"], "revoke");
    assert_eq!(call["entitlement"], "gh-writers");
    assert_eq!(call["user"]["email"], "zoe@example.com");
    world
        .fake
        .wait_until(WAIT, |fk| {
            fk.messages_to(SEC_ALERTS.0).into_iter().find(|m| {
                m["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("`gh-writers` revoked")
            })
        })
        .await
        .expect("revocation reported");
    let actions: Vec<String> = db
        .audit_rows(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for expected in [
        "alert.action_refused",
        "alert.watch",
        "alert.ignore",
        "alert.revoke",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} audited: {actions:?}"
        );
    }
    db.close().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_lists_open_findings_and_acknowledges_them() {
    let (world, f) = start().await;
    let mut saas = saas_baseline();
    saas.push(account("notion", "zed", "zed@example.com", "active", &[]));
    saas.push(account("github", "zoe", "zoe@example.com", "active", &[]));
    write(&f.saas, saas);
    wait_posts(&world, IT_OPS.0, 1).await;
    wait_posts(&world, SEC_ALERTS.0, 1).await;
    // The digest timer, due now (as at `digest_at`).
    let db = store(&world).await;
    db.schedule_job(
        "findings_digest".into(),
        "daily".into(),
        chrono::Utc::now(),
        Value::Null,
    )
    .await
    .unwrap();
    let digest = wait_posts(&world, DIGESTS.0, 1).await.remove(0);
    let body = serde_json::to_string(&digest["blocks"]).unwrap();
    assert!(body.contains("Findings digest: 2 open"), "{body}");
    assert!(
        body.contains("Offboarded but still active") && body.contains("New apps"),
        "{body}"
    );
    // Acknowledge the new-apps group; it leaves the open findings.
    let envelope = {
        let button = support::buttons(&digest)
            .into_iter()
            .find(|b| {
                b.value
                    .as_deref()
                    .is_some_and(|v| v.starts_with("new_app|"))
            })
            .expect("a new_app acknowledge button");
        let env = world.fake.block_actions(SEC, &digest, &button);
        world.fake.send_envelope(None, env)
    };
    world.ack(&envelope).await;
    world
        .fake
        .wait_until(WAIT, |fk| {
            fk.ephemerals_to(SEC)
                .into_iter()
                .find(|e| e["text"].as_str().unwrap_or("").contains("Acknowledged 1"))
        })
        .await
        .expect("acknowledged");
    let open = db.alerts(None, vec!["open".into()]).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].kind, "offboarded_active");
    // The next digest is set for the next `digest_at` (09:00 local), not now.
    let conn = rusqlite::Connection::open(world.dir.path().join("accessd.db")).unwrap();
    let next: String = conn
        .query_row(
            "SELECT run_at FROM jobs WHERE kind = 'findings_digest' AND status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(&next).unwrap();
    let local = next.with_timezone(&chrono::Local);
    assert_eq!(local.format("%H:%M").to_string(), "09:00");
    assert!(next > chrono::Utc::now() && next <= chrono::Utc::now() + chrono::Duration::hours(25));
    db.close().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_from_the_authoritative_source_approves() {
    let (world, _f) = start().await;
    // hr says Ann's manager is Bob; GitHub's policy asks the manager.
    let ticket = world
        .request(
            support::world::ANN,
            "github",
            &["write"],
            "need to push",
            "2h",
        )
        .await;
    let dm = world.dm_about(support::world::BOB, &ticket).await;
    assert!(support::find_button(&dm, "Approve").is_some());
    world.stop().await;
}

/// hr's people with `email` given `status` (and no other change).
fn hr_with(email: &str, status: &str) -> Vec<Value> {
    hr_people()
        .into_iter()
        .map(|mut p| {
            if p["email"] == email {
                p["status"] = json!(status);
            }
            p["app"] = json!("hr");
            p
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_the_authoritative_source_suspended_cannot_request() {
    let (world, f) = start().await;
    let t0 = chrono::Utc::now();
    write(&f.hr, hr_with("ann@example.com", "suspended"));
    world.wait_synced("hr", t0).await;
    let modal = world.open_request(support::world::ANN, "github").await;
    let text = modal.to_string();
    assert!(
        text.contains("lists your account as suspended") && !text.contains("roles_select"),
        "{text}"
    );
    let db = store(&world).await;
    let audit = db.audit_rows(None).await.unwrap();
    db.close().await;
    assert!(
        audit
            .iter()
            .any(|r| r.action == "request.refused_offboarded" && r.actor == "ann@example.com"),
        "{:?}",
        audit.iter().map(|r| &r.action).collect::<Vec<_>>()
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_named_only_by_a_source_people_edit_is_never_asked() {
    let (world, f) = start().await;
    // The SaaS export (not authoritative) claims Eve manages Carol; hr names
    // no manager for Carol.
    let t0 = chrono::Utc::now();
    let mut saas = saas_baseline();
    saas.push(
        json!({ "app": "github", "id": "carol", "email": "carol@example.com",
                      "name": "carol", "status": "active", "manager": "eve@example.com",
                      "entitlements": [] }),
    );
    write(&f.saas, saas);
    world.wait_synced("saas", t0).await;
    let modal = world.open_request(support::world::CAROL, "github").await;
    assert!(modal.to_string().contains("roles_select"), "{modal}");
    let ack = world
        .submit(
            support::world::CAROL,
            support::world::roles_values(&["write"], "need to push a fix"),
        )
        .await
        .expect("answered");
    assert_eq!(ack["response_action"], "update", "{ack}");
    let ack = world
        .submit(
            support::world::CAROL,
            json!({ "duration": { "duration_input": support::payloads::plain_text_value("2h") } }),
        )
        .await
        .expect("answered");
    // Without a manager from hr, the manager stage has nobody: Carol is told
    // on the field. Had the form gone on, it would be submitted here.
    if ack["response_action"] == "update" {
        world.submit(support::world::CAROL, json!({})).await;
    } else {
        assert_eq!(ack["response_action"], "errors", "{ack}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        world
            .fake
            .messages_to(support::world::EVE)
            .iter()
            .all(|m| !m.to_string().contains("Approve")),
        "{:?}",
        world.fake.messages_to(support::world::EVE)
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_alert_channel_stops_start_up_naming_the_key() {
    let text = support::daemon::start_up_error("[alerts.channels]\nnew_app = \"#nowhere\"\n").await;
    assert!(
        text.contains("alerts.channels.new_app") && text.contains("#nowhere"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_known_email_admits_only_people_the_sources_list() {
    let f = files();
    let catalog = format!("[identity]\nrequire_known_email = true\n{}", catalog(&f));
    let world = World::start_adjusted(&catalog, fast_retries()).await;
    world
        .wait_synced("hr", chrono::Utc::now() - chrono::Duration::seconds(30))
        .await;
    // Eve is in no source: the modal explains, naming the email it saw.
    let refused = world.open_request(EVE, "github").await;
    let text = serde_json::to_string(&refused).unwrap();
    assert!(
        text.contains("eve@example.com") && text.contains("no identity source knows"),
        "{text}"
    );
    // Ann is in hr: she gets the request form.
    let modal = world.open_request(support::world::ANN, "github").await;
    assert!(support::world::has_block(&modal, "roles"), "{modal}");
    world.stop().await;
}
