//! Access review campaigns end to end through the fake Slack: a campaign of
//! 150 items across two reviewers (pages within Slack's block limits), Keep
//! and Revoke (carried out by the provisioner), a decision with a comment,
//! Keep all remaining, reassignment, refused forgeries, a restart mid-
//! campaign, reminders, closing soon, the close with the owner's summary,
//! the report an auditor reads, and accounts whose holder is unknown or
//! linked by Slack id (never reviewed by whom they may belong to).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use accessd::config::{ReviewNotifications, Reviewer};
use accessd::reviews::{create, CampaignAsk};
use accessd::store::{Campaign, Store};
use serde_json::{json, Value};
use support::world::{World, BOB, CAROL, DANA, EVE, SEC, WAIT, ZED};

const ITEMS: usize = 150;

struct Setup {
    _dir: tempfile::TempDir,
    log: PathBuf,
}

fn setup(reviews: &str, extra: &[Value]) -> (Setup, String) {
    let dir = tempfile::tempdir().unwrap();
    let people = dir.path().join("github.json");
    let mut accounts: Vec<Value> = (0..ITEMS)
        .map(|i| {
            let manager = if i % 2 == 0 { "bob@example.com" } else { "carol@example.com" };
            json!({ "app": "github", "id": format!("u{i:03}"), "email": format!("u{i:03}@example.com"),
                    "name": format!("User {i:03}"), "status": "active", "manager": manager,
                    "entitlements": ["gh-writers"] })
        })
        .collect();
    accounts.extend(extra.iter().cloned());
    std::fs::write(&people, json!({ "accounts": accounts }).to_string()).unwrap();
    let log = dir.path().join("provision.log");
    let script = dir.path().join("provision.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat >> {0}\necho >> {0}\n", log.display()),
    )
    .unwrap();
    let catalog = format!(
        r#"
[requests]
admins = ["secops@example.com", "zed@contractor.example"]

[reviews]
{reviews}

[[provisioners]]
id = "script"
kind = "command"
command = ["/bin/sh", "{script}"]

[[apps]]
id = "github"
name = "GitHub"
owners = ["dana@example.com"]
provisioner = "script"

[[sources]]
id = "gh"
kind = "file"
path = "{people}"
schedule = "every 1h"
"#,
        script = script.display(),
        people = people.display(),
    );
    (Setup { _dir: dir, log }, catalog)
}

fn fast() -> Option<support::world::AdjustOptions> {
    Some(Box::new(|o: &mut accessd::RunOptions| {
        o.jobs.poll = Duration::from_millis(200);
        o.jobs.retry_base = Duration::from_millis(300);
    }))
}

async fn start(reviews: &str) -> (World, Setup) {
    start_with(reviews, &[]).await
}

async fn start_with(reviews: &str, extra: &[Value]) -> (World, Setup) {
    let (s, catalog) = setup(reviews, extra);
    let world = World::start_adjusted(&catalog, fast()).await;
    world
        .wait_synced("gh", chrono::Utc::now() - chrono::Duration::seconds(30))
        .await;
    (world, s)
}

/// Creates a campaign as `accessd reviews create` does, while the daemon runs.
async fn campaign(world: &World, due: Duration) -> Campaign {
    campaign_notified(
        world,
        "Q4 GitHub review",
        due,
        ReviewNotifications::default(),
    )
    .await
}

/// As [`campaign`], with its own name and reminder settings.
async fn campaign_notified(
    world: &World,
    name: &str,
    due: Duration,
    notifications: ReviewNotifications,
) -> Campaign {
    let store = Store::open(&world.dir.path().join("accessd.db")).unwrap();
    let config = accessd::config::load(&world.dir.path().join("accessd.toml")).unwrap();
    let ask = CampaignAsk {
        name: Some(name.into()),
        apps: vec!["github".into()],
        reviewer: Reviewer::Manager,
        due,
        owner: None,
        schedule: None,
        created_by: "cli:test".into(),
        notifications,
    };
    let c = create(&store, &config, ask, chrono::Utc::now())
        .await
        .unwrap();
    store.close().await;
    c
}

async fn db(world: &World) -> Store {
    Store::open(&world.dir.path().join("accessd.db")).unwrap()
}

/// The reviewer's DMs once the launch message and `pages` pages arrived.
async fn pages(world: &World, user: &str, pages: usize) -> Vec<Value> {
    world
        .fake
        .wait_until(WAIT, |f| {
            let dms: Vec<Value> = f
                .messages_to(user)
                .into_iter()
                .filter(|m| m["text"].as_str().unwrap_or("").contains("— page"))
                .collect();
            (dms.len() >= pages).then_some(dms)
        })
        .await
        .unwrap_or_else(|| panic!("{pages} pages for {user}"))
}

/// The current version of a page (after chat.update).
fn reread(world: &World, page: &Value) -> Value {
    world
        .fake
        .message(
            page["channel"].as_str().unwrap(),
            page["ts"].as_str().unwrap(),
        )
        .unwrap()
}

fn block_count(message: &Value) -> usize {
    message["blocks"].as_array().map_or(0, Vec::len)
}

/// Picks an option of an item's overflow menu, as Slack sends it.
fn overflow(world: &World, user: &str, page: &Value, value: &str) -> String {
    let block = page["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b.to_string().contains(value))
        .unwrap_or_else(|| panic!("no menu option {value}"))
        .clone();
    let button = support::Button {
        action_id: "review_more".into(),
        block_id: block["block_id"].as_str().unwrap().into(),
        value: None,
        text: "menu".into(),
        style: None,
        url: None,
    };
    let mut envelope = world.fake.block_actions(user, page, &button);
    envelope["payload"]["actions"][0] = json!({
        "type": "overflow", "action_id": "review_more", "block_id": block["block_id"],
        "selected_option": { "text": { "type": "plain_text", "text": "menu", "emoji": true }, "value": value },
        "action_ts": "1700000000.000100"
    });
    world.fake.send_envelope(None, envelope)
}

async fn ephemeral_containing(world: &World, user: &str, text: &str) -> Value {
    world
        .fake
        .wait_until(WAIT, |f| {
            f.notices_to(user)
                .into_iter()
                .find(|e| e["text"].as_str().unwrap_or("").contains(text))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "ephemeral {text:?} to {user}: {:?}",
                world.fake.ephemerals_to(user)
            )
        })
}

fn first_item_id(page: &Value) -> i64 {
    support::find_button(page, "Keep")
        .unwrap()
        .value
        .unwrap()
        .parse()
        .unwrap()
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_150_item_campaign_across_two_reviewers() {
    let (mut world, s) = start("reminder_every = \"1d\"\nclosing_soon = \"1d\"").await;
    let c = campaign(&world, Duration::from_secs(14 * 86400)).await;

    // Each reviewer: one launch DM, then 75 items in pages of 20 within limits.
    let bob = pages(&world, BOB, 4).await;
    let carol = pages(&world, CAROL, 4).await;
    for p in bob.iter().chain(&carol) {
        assert!(block_count(p) <= 50, "page has {} blocks", block_count(p));
    }
    let keeps = |p: &Value| {
        support::buttons(p)
            .iter()
            .filter(|b| b.text == "Keep")
            .count()
    };
    assert_eq!(bob.iter().map(keeps).collect::<Vec<_>>(), [20, 20, 20, 15]);
    let launch = world.dm_about(BOB, "Keep all remaining").await;
    assert!(launch.to_string().contains("75"), "{launch}");

    // Keep and Revoke on Bob's first page; the page is updated in place.
    let page1 = bob[0].clone();
    let kept = first_item_id(&page1);
    world.ack(&world.fake.click(BOB, &page1, "Keep")).await;
    let page1 = world
        .fake
        .wait_until(WAIT, |_| {
            let p = reread(&world, &page1);
            p.to_string()
                .contains("Kept by bob@example.com")
                .then_some(p)
        })
        .await
        .expect("page updated with the keep");
    let revoked = first_item_id(&page1);
    world.ack(&world.fake.click(BOB, &page1, "Revoke")).await;
    // The revoke runs through the provisioner, once, and the outcome shows.
    let page1 = world
        .fake
        .wait_until(Duration::from_secs(10), |_| {
            let p = reread(&world, &page1);
            p.to_string()
                .contains("revoked: `gh-writers` revoked")
                .then_some(p)
        })
        .await
        .expect("revocation outcome on the page");
    let calls = log_lines(&s.log);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["action"], "revoke");
    assert_eq!(calls[0]["entitlement"], "gh-writers");

    // Forgeries: Carol on Bob's item, Eve on anything: refused, nothing changes.
    let target = first_item_id(&page1);
    world.ack(&world.fake.click(CAROL, &page1, "Keep")).await;
    ephemeral_containing(&world, CAROL, "is assigned to bob@example.com").await;
    world.ack(&world.fake.click(EVE, &page1, "Revoke")).await;
    ephemeral_containing(&world, EVE, "is assigned to bob@example.com").await;
    let store = db(&world).await;
    let item = store.review_item(target).await.unwrap().unwrap();
    assert_eq!(item.decision, None);

    // A decision with a comment, from the item's menu.
    world
        .ack(&overflow(&world, BOB, &page1, &format!("comment:{target}")))
        .await;
    let modal = world
        .fake
        .wait_until(WAIT, |f| f.last_modal(BOB))
        .await
        .expect("comment modal");
    let values = json!({
        "review_decision": { "review_decision_select": { "type": "radio_buttons",
            "selected_option": { "text": { "type": "plain_text", "text": "Keep" }, "value": "keep" } } },
        "comment": { "comment_input": { "type": "plain_text_input", "value": "needed for on-call" } }
    });
    world.ack(&world.fake.submit(BOB, &modal, values)).await;
    world
        .fake
        .wait_until(WAIT, |_| {
            reread(&world, &page1)
                .to_string()
                .contains("needed for on-call")
                .then_some(())
        })
        .await
        .expect("comment on the page");

    // Reassign one item to Dana: she is told and gets a page; Bob is told.
    let moved = first_item_id(&reread(&world, &page1));
    reassign(&world, BOB, &page1, moved, DANA, "Dana owns this repo").await;
    let dana = pages(&world, DANA, 1).await;
    assert_eq!(keeps(&dana[0]), 1);
    world.dm_about(DANA, "Dana owns this repo").await;
    world.dm_about(BOB, "reassigned to dana@example.com").await;
    world
        .fake
        .wait_until(WAIT, |_| {
            reread(&world, &page1)
                .to_string()
                .contains("Reassigned to dana@example.com")
                .then_some(())
        })
        .await
        .expect("Bob's page shows the move");

    // A restart mid-campaign: decisions keep working afterwards.
    world.restart().await;
    let carol1 = reread(&world, &carol[0]);
    world.ack(&world.fake.click(CAROL, &carol1, "Keep")).await;
    world
        .fake
        .wait_until(WAIT, |_| {
            reread(&world, &carol1)
                .to_string()
                .contains("Kept by carol@example.com")
                .then_some(())
        })
        .await
        .expect("Carol's keep after the restart");

    // Keep all remaining (Slack confirms first): every undecided item of Bob's.
    let launch = world.dm_about(BOB, "Keep all remaining").await;
    world
        .ack(&world.fake.click(BOB, &launch, "Keep all remaining"))
        .await;
    ephemeral_containing(&world, BOB, "Kept 71 item(s)").await;
    let items = store.review_items(c.id).await.unwrap();
    let of = |who: &str, d: Option<&str>| {
        items
            .iter()
            .filter(|i| i.reviewer_email == who && i.decision.as_deref() == d)
            .count()
    };
    assert_eq!(of("bob@example.com", None), 0);
    assert_eq!(of("bob@example.com", Some("keep")), 73);
    assert_eq!(of("bob@example.com", Some("revoke")), 1);
    assert_eq!(of("dana@example.com", None), 1);
    assert_eq!(of("carol@example.com", Some("keep")), 1);
    let revoked_item = items.iter().find(|i| i.id == revoked).unwrap();
    assert!(revoked_item
        .revoke_outcome
        .as_deref()
        .unwrap()
        .starts_with("revoked"));
    let commented = items.iter().find(|i| i.id == target).unwrap();
    assert_eq!(commented.comment.as_deref(), Some("needed for on-call"));
    assert!(items
        .iter()
        .any(|i| i.id == kept && i.decision.as_deref() == Some("keep")));

    // The Home tab shows Carol her progress.
    world.ack(&world.fake.open_home(CAROL)).await;
    let home = world
        .fake
        .wait_until(WAIT, |f| {
            f.home_view(CAROL)
                .filter(|v| v.to_string().contains("Reviews waiting for you"))
        })
        .await
        .expect("reviews on Home");
    assert!(home.to_string().contains("1 of 75 decided"), "{home}");

    // Every decision and refusal is audited.
    let actions: Vec<String> = store
        .audit_rows(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for a in [
        "review.created",
        "review.kept",
        "review.revoked",
        "review.decision_refused",
        "review.reassigned",
        "review.revoke_done",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} audited");
    }
    // The auditor's report shows the decided, commented, revoked and moved items.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_accessd"))
        .args([
            "reviews",
            "report",
            &c.reference(),
            "--format",
            "csv",
            "--config",
        ])
        .arg(world.dir.path().join("accessd.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), ITEMS + 1);
    assert!(csv.contains("needed for on-call"));
    assert!(csv.contains("Dana owns this repo"));
    assert!(csv
        .lines()
        .any(|l| l.contains(",revoke,") && l.contains("revoked: `gh-writers` revoked")));
    if std::env::var_os("ACCESSD_PRINT_REPORT").is_some() {
        for line in csv.lines().take(1).chain(csv.lines().filter(|l| {
            l.contains(",revoke,")
                || l.contains("on-call")
                || l.contains("Dana owns")
                || l.contains(&format!("RI-{kept},"))
        })) {
            println!("{line}");
        }
    }
    store.close().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_closing_soon_and_the_close_with_a_summary_and_report() {
    let (world, _s) = start("reminder_every = \"2s\"\nclosing_soon = \"4s\"").await;
    let c = campaign(&world, Duration::from_secs(7)).await;
    let bob = pages(&world, BOB, 4).await;
    // Carol's page as her client shows it before the close (a stale copy).
    let carol = pages(&world, CAROL, 4).await;
    world.ack(&world.fake.click(BOB, &bob[0], "Keep")).await;

    // Reminders are new DMs (so Slack notifies), then "closing soon".
    world.dm_about(BOB, "Reminder: *Q4 GitHub review*").await;
    world.dm_about(CAROL, "Reminder: *Q4 GitHub review*").await;
    world.dm_about(BOB, "closes").await;
    // At the due date the campaign closes; the owner (first admin) gets the summary.
    let summary = world
        .fake
        .wait_until(Duration::from_secs(15), |f| {
            f.messages_to(SEC)
                .into_iter()
                .find(|m| m["text"].as_str().unwrap_or("").contains("closed"))
        })
        .await
        .expect("summary to the owner");
    assert!(
        summary["text"]
            .as_str()
            .unwrap()
            .contains("1 kept, 0 revoked, 149 undecided of 150"),
        "{summary}"
    );
    let store = db(&world).await;
    assert_eq!(
        store.campaign(c.id).await.unwrap().unwrap().status,
        "closed"
    );
    // Pages lose their buttons; a late click is refused.
    let late = world
        .fake
        .wait_until(WAIT, |_| {
            let p = reread(&world, &bob[1]);
            support::find_button(&p, "Keep").is_none().then_some(p)
        })
        .await
        .expect("buttons gone after the close");
    assert!(late
        .to_string()
        .contains("Not decided before the campaign closed"));
    world.ack(&world.fake.click(CAROL, &carol[0], "Keep")).await;
    ephemeral_containing(&world, CAROL, "is closed").await;

    // The auditor's report, through the CLI.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_accessd"))
        .args([
            "reviews",
            "report",
            &c.reference(),
            "--format",
            "csv",
            "--config",
        ])
        .arg(world.dir.path().join("accessd.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), 151, "header + 150 items");
    assert_eq!(csv.lines().filter(|l| l.contains(",keep,")).count(), 1);
    assert_eq!(
        csv.lines().filter(|l| l.contains(",undecided,")).count(),
        149
    );
    if std::env::var_os("ACCESSD_PRINT_REPORT").is_some() {
        println!("{}", csv.lines().take(6).collect::<Vec<_>>().join("\n"));
    }
    store.close().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_campaign_is_created_launched_and_set_again() {
    let (world, _s) = start(
        "reminder_every = \"1d\"\nclosing_soon = \"1d\"\n\n[[reviews.schedules]]\nname = \"Monthly GitHub\"\napps = [\"github\"]\nreviewer = \"owners\"\ncron = \"0 9 1 * *\"\ndue = \"14d\"",
    )
    .await;
    // At start the next run is set for the cron's next time, not now.
    let conn = rusqlite::Connection::open(world.dir.path().join("accessd.db")).unwrap();
    let next_run = || -> String {
        conn.query_row(
            "SELECT run_at FROM jobs WHERE kind = 'review_scheduled' AND subject = 'Monthly GitHub' AND status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let first = chrono::DateTime::parse_from_rfc3339(&next_run()).unwrap();
    assert!(first > chrono::Utc::now());
    assert_eq!(
        first
            .with_timezone(&chrono::Local)
            .format("%d %H:%M")
            .to_string(),
        "01 09:00"
    );
    // The timer comes due (as on the 1st at 09:00): a campaign for the owner.
    let store = db(&world).await;
    store
        .schedule_job(
            "review_scheduled".into(),
            "Monthly GitHub".into(),
            chrono::Utc::now(),
            Value::Null,
        )
        .await
        .unwrap();
    let dana = pages(&world, DANA, 8).await;
    assert_eq!(dana.len(), 8, "150 items for the one owner, 20 a page");
    let campaigns = store.campaigns(None).await.unwrap();
    assert_eq!(campaigns.len(), 1);
    assert_eq!(campaigns[0].schedule.as_deref(), Some("Monthly GitHub"));
    assert!(campaigns[0].name.starts_with("Monthly GitHub "));
    // …and the next run is set again.
    world
        .fake
        .wait_until(WAIT, |_| {
            chrono::DateTime::parse_from_rfc3339(&next_run())
                .ok()
                .filter(|t| *t > chrono::Utc::now())
        })
        .await
        .expect("next run set");
    store.close().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassigning_an_item_to_the_person_it_is_about_is_a_field_error() {
    let (world, _s) = start("reminder_every = \"1d\"\nclosing_soon = \"1d\"").await;
    campaign(&world, Duration::from_secs(14 * 86400)).await;
    let bob = pages(&world, BOB, 4).await;
    let page1 = &bob[0];
    let id = first_item_id(page1);
    let store = db(&world).await;
    let holder = store
        .review_item(id)
        .await
        .unwrap()
        .and_then(|item| item.email)
        .expect("the item names its holder");
    store.close().await;
    // The holder is on Slack too; Bob tries to hand them their own item.
    world.fake.add_user("UHOLDER1", &holder, "The Holder");
    let ack = reassign(&world, BOB, page1, id, "UHOLDER1", "They know it best")
        .await
        .expect("answered");
    assert_eq!(ack["response_action"], "errors", "{ack}");
    assert!(
        ack["errors"]["reviewer"]
            .as_str()
            .is_some_and(|e| e.contains("choose someone else")),
        "{ack}"
    );
    let store = db(&world).await;
    let item = store.review_item(id).await.unwrap().expect("item");
    assert_eq!(item.reviewer_email, "bob@example.com");
    store.close().await;
    world.stop().await;
}

/// Picks *Reassign…* on item `id` of a page, chooses `to` with `reason` in
/// the modal and submits it; returns the ack.
async fn reassign(
    world: &World,
    user: &str,
    page: &Value,
    id: i64,
    to: &str,
    reason: &str,
) -> Option<Value> {
    world
        .ack(&overflow(world, user, page, &format!("reassign:{id}")))
        .await;
    let modal = world
        .fake
        .wait_until(WAIT, |f| {
            f.last_modal(user)
                .filter(|m| m.to_string().contains("New reviewer"))
        })
        .await
        .expect("reassign modal");
    let values = json!({
        "reviewer": { "reviewer_select": { "type": "users_select", "selected_user": to } },
        "reassign_reason": { "reassign_reason_input": { "type": "plain_text_input", "value": reason } }
    });
    world.ack(&world.fake.submit(user, &modal, values)).await
}

/// The Keep button of item `id` on a page.
fn keep_of(world: &World, user: &str, page: &Value, id: i64) -> String {
    let button = support::buttons(page)
        .into_iter()
        .find(|b| b.text == "Keep" && b.value.as_deref() == Some(id.to_string().as_str()))
        .unwrap_or_else(|| panic!("no Keep for item {id}"));
    let envelope = world.fake.block_actions(user, page, &button);
    world.fake.send_envelope(None, envelope)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_nobody_can_place_goes_to_the_campaign_owner_and_a_linked_one_never_to_its_holder(
) {
    // Dana owns GitHub. Two accounts carry no email: `dana-gh` (nobody can
    // tell whose it is; it may be Dana's) and one named by Dana's Slack id
    // (a Slack-workspace style account, linked to her by `users link`).
    let extra = [
        json!({ "app": "github", "id": "dana-gh", "name": "dana-gh", "status": "active",
                "entitlements": ["gh-admins"] }),
        json!({ "app": "github", "id": DANA, "name": "Dana Kim", "status": "active",
                "entitlements": ["gh-owners"] }),
    ];
    let (world, _s) = start_with("reminder_every = \"1d\"\nclosing_soon = \"1d\"", &extra).await;
    let store = db(&world).await;
    store
        .link_manually(DANA.into(), "dana@example.com".into(), "cli:test".into())
        .await
        .unwrap();
    store.close().await;
    let c = campaign(&world, Duration::from_secs(14 * 86400)).await;
    let store = db(&world).await;
    let items = store.review_items(c.id).await.unwrap();
    store.close().await;
    let unknown = items
        .iter()
        .find(|i| i.account_id == "dana-gh")
        .expect("the unplaced account is reviewed")
        .clone();
    let linked = items
        .iter()
        .find(|i| i.account_id == DANA)
        .expect("the linked account is reviewed")
        .clone();
    // Neither reaches Dana (the only owner, who may hold both).
    assert_eq!(unknown.reviewer_email, "secops@example.com", "{unknown:?}");
    assert_eq!(unknown.email, None);
    assert_eq!(
        linked.email.as_deref(),
        Some("dana@example.com"),
        "{linked:?}"
    );
    assert_eq!(linked.reviewer_email, "secops@example.com", "{linked:?}");
    assert!(items
        .iter()
        .all(|i| !i.reviewer_email.eq_ignore_ascii_case("dana@example.com")));

    // The campaign owner's page says nobody knows whose `dana-gh` is.
    let sec = pages(&world, SEC, 1).await;
    let page = sec
        .iter()
        .find(|p| p.to_string().contains("dana-gh"))
        .expect("the page with dana-gh");
    assert!(page.to_string().contains("holder unknown"), "{page}");

    // Another admin cannot decide it: they could be its holder too.
    world.ack(&keep_of(&world, ZED, page, unknown.id)).await;
    ephemeral_containing(&world, ZED, "Nobody can tell whose account").await;
    // Handing the linked account to Dana is a field error.
    let ack = reassign(&world, SEC, page, linked.id, DANA, "Dana knows it")
        .await
        .expect("answered");
    assert_eq!(ack["response_action"], "errors", "{ack}");
    // The owner decides the unplaced one.
    world.ack(&keep_of(&world, SEC, page, unknown.id)).await;
    // Decisions are committed before the ack.
    let store = db(&world).await;
    let after = store.review_item(unknown.id).await.unwrap().expect("item");
    let linked_after = store.review_item(linked.id).await.unwrap().expect("item");
    store.close().await;
    assert_eq!(after.decision.as_deref(), Some("keep"), "{after:?}");
    assert_eq!(after.decided_by.as_deref(), Some("secops@example.com"));
    assert_eq!(linked_after.reviewer_email, "secops@example.com");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_keeps_its_own_reminders_whatever_the_config_says() {
    // The config reminds daily: only the campaigns' own settings can make
    // reminders arrive within seconds, or none at all.
    let (world, _s) = start("reminder_every = \"1d\"\nclosing_soon = \"1d\"").await;
    let own = ReviewNotifications {
        remind_every: Some(Duration::from_secs(1)),
        closing_soon: Some(Duration::from_secs(3)),
        reminders: true,
    };
    let quiet = ReviewNotifications {
        reminders: false,
        closing_soon: Some(Duration::from_secs(1)),
        ..ReviewNotifications::default()
    };
    let fast = campaign_notified(&world, "Fast review", Duration::from_secs(6), own).await;
    campaign_notified(&world, "Quiet review", Duration::from_secs(6), quiet).await;
    assert!(fast.reminders && fast.remind_every == Some(Duration::from_secs(1)));

    let reminders = |f: &support::FakeSlack, name: &str| {
        f.messages_to(BOB)
            .into_iter()
            .filter(|m| m.to_string().contains(&format!("Reminder: *{name}*")))
            .count()
    };
    world
        .fake
        .wait_until(Duration::from_secs(10), |f| {
            (reminders(f, "Fast review") >= 2).then_some(())
        })
        .await
        .expect("the fast campaign reminds every second");
    world.dm_about(BOB, "*Quiet review* closes").await;
    world.dm_about(BOB, "*Fast review* closes").await;
    assert_eq!(
        reminders(&world.fake, "Quiet review"),
        0,
        "no reminders for the quiet one"
    );
    world.stop().await;
}
