//! Crash test, run by hand: many request → approve → provision flows through
//! the real binary while a killer SIGKILLs and restarts it at random moments;
//! then checks that every acked approval is in the database, that no grant was
//! provisioned twice (the `command` provisioner's own log), that nothing was
//! granted for an unapproved ticket, and that every expiry that came due ran.
//!
//! ```text
//! cargo test --release --test crash -- --ignored --nocapture
//! CRASH_FLOWS=120 CRASH_KILLS=40 cargo test --release --test crash -- --ignored --nocapture
//! ```
//! `CRASH_LANES` (concurrent requester/approver pairs) and `CRASH_SEED`
//! (replay a run's random delays) are optional.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accessd::domain::ticket::{parse_ticket_ref, Status, Verdict};
use accessd::store::{GrantFilter, GrantStatus, Store, TicketFilter};
use serde_json::{json, Value};
use support::world::*;
use support::{payloads, FakeSlack, APP_TOKEN, BOT_TOKEN};

/// Same contract as the script in tests/grants.rs: every call is logged as
/// `action key` in calls.log; state.log holds what was applied, and a call
/// whose `action key` is already applied exits 3 ("already").
const SCRIPT: &str = r#"#!/bin/sh
input=$(cat)
action=$(printf '%s' "$input" | sed -n 's/.*"action":"\([a-z]*\)".*/\1/p')
key=$(printf '%s' "$input" | sed -n 's/.*"idempotency_key":"\([^"]*\)".*/\1/p')
dir=$(dirname "$0")
echo "$action $key" >> "$dir/calls.log"
if grep -qx "$action $key" "$dir/state.log" 2>/dev/null; then exit 3; fi
echo "$action $key" >> "$dir/state.log"
exit 0
"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: no extra dependency, replayable with `CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

struct Lane {
    requester: String,
    approver: String,
    approver_email: String,
}

fn lanes(fake: &FakeSlack, n: usize) -> Vec<Lane> {
    (0..n)
        .map(|i| {
            let requester = format!("UREQ{i}");
            let approver = format!("UAPR{i}");
            let approver_email = format!("approver{i}@example.com");
            fake.add_user(
                &requester,
                &format!("req{i}@example.com"),
                &format!("Req {i}"),
            );
            fake.add_user(&approver, &approver_email, &format!("Approver {i}"));
            Lane {
                requester,
                approver,
                approver_email,
            }
        })
        .collect()
}

fn catalog(script: &Path, approvers: &[String]) -> String {
    let group = approvers
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[requests]
default_duration = "8h"
max_duration = "30d"
fallback_approvers = ["group:approvers"]

[groups]
approvers = [{group}]

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
stages = [{{ approvers = ["group:approvers"], required = 1 }}]

  [[apps.roles]]
  id = "write"
  name = "Write"
  entitlement = "gh-writers"
"#,
        script = script.display()
    )
}

fn spawn_binary(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_accessd"))
        .args(["run", "--config"])
        .arg(config)
        .env("SLACK_APP_TOKEN", APP_TOKEN)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("RUST_LOG", "info")
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

/// True when `text` names ticket `t` itself (not `T-10` for `T-1`).
fn mentions(text: &str, t: &str) -> bool {
    text.match_indices(t).any(|(i, _)| {
        !text[i + t.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

fn first_ticket_ref(text: &str) -> Option<String> {
    let i = text.find("T-")?;
    let digits: String = text[i + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then(|| format!("T-{digits}"))
}

/// Sends an envelope if a socket is up; `None` when it was not acked (the
/// daemon died first, or there was no socket to send it on).
async fn send_acked(
    fake: &FakeSlack,
    send: impl FnOnce(&FakeSlack) -> String,
) -> Option<Option<Value>> {
    if fake.live_connections().is_empty() {
        return None;
    }
    // A socket can die between the look and the send; the fake then panics.
    let id = std::panic::catch_unwind(AssertUnwindSafe(|| send(fake))).ok()?;
    fake.wait_ack(&id, Duration::from_secs(3))
        .await
        .map(|a| a.payload)
}

async fn wait_live(fake: &FakeSlack) {
    fake.wait_until(Duration::from_secs(30), |f| {
        (!f.live_connections().is_empty()).then_some(())
    })
    .await
    .expect("the daemon came back");
    // Give a fresh daemon a moment to pick the socket up.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn modal_id(fake: &FakeSlack, user: &str) -> Option<String> {
    fake.last_modal(user)
        .and_then(|m| m["id"].as_str().map(str::to_string))
}

async fn new_modal(fake: &FakeSlack, user: &str, before: Option<String>) -> Option<Value> {
    fake.wait_until(Duration::from_secs(3), |f| {
        f.last_modal(user)
            .filter(|m| m["id"].as_str().map(str::to_string) != before)
    })
    .await
}

/// `/access github` → roles → duration → confirm, retried from the top
/// until the confirm is acked. A confirm committed but not acked shows up on
/// the next try as "you already have T-n pending": that ticket is adopted.
async fn request(fake: &FakeSlack, user: &str, duration: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "{user} never got a request in");
        wait_live(fake).await;
        let before = modal_id(fake, user);
        if send_acked(fake, |f| f.run_command(user, "/access", "github"))
            .await
            .is_none()
        {
            continue;
        }
        let Some(modal) = new_modal(fake, user, before).await else {
            continue;
        };
        let steps = [
            roles_values(&["write"], "crash test"),
            json!({ "duration": { "duration_input": payloads::plain_text_value(duration) } }),
            json!({}),
        ];
        let mut view = modal;
        let mut done = None;
        for (i, values) in steps.into_iter().enumerate() {
            let Some(ack) = send_acked(fake, |f| f.submit(user, &view, values)).await else {
                break;
            };
            let ack = ack.unwrap_or(Value::Null);
            let text = ack.to_string();
            if text.contains("already have") {
                done = Some(first_ticket_ref(&text).expect("names the pending ticket"));
                break;
            }
            assert_eq!(ack["response_action"], "update", "step {i}: {ack}");
            if i == 2 {
                let body = ack["view"]["blocks"][0]["text"]["text"]
                    .as_str()
                    .unwrap_or_default();
                done = Some(first_ticket_ref(body).unwrap_or_else(|| panic!("{ack}")));
                break;
            }
            match fake.last_modal(user) {
                Some(v) => view = v,
                None => break,
            }
        }
        if let Some(t) = done {
            return t;
        }
    }
}

enum Approved {
    /// The submission of the Approve modal was acked.
    Acked,
    /// The buttons were gone: a submission committed before a kill.
    Unacked,
}

async fn approve(fake: &FakeSlack, db: &Path, approver: &str, t: &str) -> Approved {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "{approver} never approved {t}");
        wait_live(fake).await;
        let dm = fake
            .wait_until(Duration::from_secs(5), |f| {
                f.messages_to(approver)
                    .into_iter()
                    .rev()
                    .find(|m| mentions(&m.to_string(), t))
            })
            .await;
        let Some(dm) = dm else { continue };
        if support::find_button(&dm, "Approve").is_none() {
            let store = Store::open(db).unwrap();
            let status = store
                .ticket(parse_ticket_ref(t).unwrap())
                .await
                .unwrap()
                .unwrap()
                .status;
            store.close().await;
            if status != Status::Pending {
                return Approved::Unacked;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let before = modal_id(fake, approver);
        if send_acked(fake, |f| f.click(approver, &dm, "Approve"))
            .await
            .is_none()
        {
            continue;
        }
        let Some(modal) = new_modal(fake, approver, before).await else {
            continue;
        };
        let values = json!({ "comment": { "comment_input": payloads::plain_text_value("ok") } });
        if send_acked(fake, |f| f.submit(approver, &modal, values))
            .await
            .is_some()
        {
            return Approved::Acked;
        }
    }
}

struct Run {
    config: PathBuf,
    log: PathBuf,
    child: Mutex<Child>,
    kills: AtomicUsize,
}

impl Run {
    fn kill_and_restart(&self) {
        let mut child = self.child.lock().unwrap();
        kill_9(&mut child);
        *child = spawn_binary(&self.config, &self.log);
        self.kills.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long; run by hand: cargo test --release --test crash -- --ignored --nocapture"]
async fn random_sigkills_lose_no_acked_approval_and_provision_nothing_twice() {
    let flows = env_usize("CRASH_FLOWS", 24);
    let kills = env_usize("CRASH_KILLS", 8);
    let lane_count = env_usize("CRASH_LANES", 3).max(1);
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash test: flows={flows} kills={kills} lanes={lane_count} seed={seed}");

    let tools = tempfile::tempdir().unwrap();
    let script = tools.path().join("provision.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    // The world's in-process daemon creates the database, then gives way to
    // the binary on the same config.
    let approvers: Vec<String> = (0..lane_count)
        .map(|i| format!("approver{i}@example.com"))
        .collect();
    let mut world = World::start_with(&catalog(&script, &approvers)).await;
    let lanes = lanes(&world.fake, lane_count);
    if let Some(daemon) = world.daemon.take() {
        daemon.stop().await.expect("clean stop");
    }
    let fake = world.fake.clone();
    let db = world.dir.path().join("accessd.db");
    let config = world.dir.path().join("accessd.toml");
    let log = world.dir.path().join("daemon.log");
    let child = spawn_binary(&config, &log);
    fake.wait_for_connections(2, Duration::from_secs(20)).await;
    let run = Arc::new(Run {
        config,
        log: log.clone(),
        child: Mutex::new(child),
        kills: AtomicUsize::new(0),
    });
    let started = Instant::now();

    // The killer: SIGKILL after a random delay, restart after a random pause.
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let run = run.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut rng = Rng(seed);
            for _ in 0..kills {
                tokio::time::sleep(rng.millis(300, 4000)).await;
                if done.load(Ordering::SeqCst) {
                    break;
                }
                kill_9(&mut run.child.lock().unwrap());
                tokio::time::sleep(rng.millis(0, 1500)).await;
                *run.child.lock().unwrap() = spawn_binary(&run.config, &run.log);
                run.kills.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    // The flows: each lane requests and approves its share, one at a time.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut drivers = Vec::new();
    for (i, lane) in lanes.into_iter().enumerate() {
        let share = flows / lane_count + usize::from(i < flows % lane_count);
        let fake = fake.clone();
        let db = db.clone();
        let acked = acked.clone();
        let unacked = unacked.clone();
        let mut rng = Rng(seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1)));
        drivers.push(tokio::spawn(async move {
            for _ in 0..share {
                let secs = 10 + rng.next() % 21;
                let t = request(&fake, &lane.requester, &format!("{secs}s")).await;
                match approve(&fake, &db, &lane.approver, &t).await {
                    Approved::Acked => acked.lock().unwrap().push((t, lane.approver_email.clone())),
                    Approved::Unacked => unacked.lock().unwrap().push(t),
                }
            }
        }));
    }
    for d in drivers {
        d.await.expect("a flow driver panicked");
    }
    done.store(true, Ordering::SeqCst);
    killer.await.unwrap();
    let flows_done = started.elapsed();

    // A last kill and restart, then time for every expiry to come due and run.
    run.kill_and_restart();
    let acked = acked.lock().unwrap().clone();
    let unacked = unacked.lock().unwrap().clone();
    let wait_deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let store = Store::open(&db).unwrap();
        let grants = store.list_grants(GrantFilter::default()).await.unwrap();
        let tickets = store.list_tickets(TicketFilter::default()).await.unwrap();
        store.close().await;
        let settled = grants.iter().all(|g| {
            matches!(
                g.status,
                GrantStatus::Expired | GrantStatus::Revoked | GrantStatus::Failed
            )
        }) && tickets.iter().all(|t| {
            !matches!(
                t.status,
                Status::Approved | Status::Provisioning | Status::Active
            )
        });
        if settled || Instant::now() > wait_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let checked_at = chrono::Utc::now();
    kill_9(&mut run.child.lock().unwrap());

    // --- Checks -------------------------------------------------------------
    let read = |name: &str| -> Vec<(String, String)> {
        std::fs::read_to_string(tools.path().join(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, k)| (a.to_string(), k.to_string()))
            .collect()
    };
    let calls = read("calls.log");
    let applied = read("state.log");
    let store = Store::open(&db).unwrap();
    let tickets: HashMap<i64, _> = store
        .list_tickets(TicketFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let grants = store.list_grants(GrantFilter::default()).await.unwrap();
    let audit_intact = store.verify_audit().await.unwrap().is_intact();
    store.close().await;
    let mut problems: Vec<String> = Vec::new();
    if !audit_intact {
        problems.push("audit chain broken".into());
    }

    // 1. Every acked approval is in the database.
    for (t, email) in &acked {
        let ticket = &tickets[&parse_ticket_ref(t).unwrap()];
        if !matches!(
            ticket.status,
            Status::Approved | Status::Provisioning | Status::Active | Status::Expired
        ) {
            problems.push(format!(
                "{t}: approval acked but ticket is {}",
                ticket.status
            ));
        }
        if !ticket
            .approvals
            .iter()
            .any(|a| a.verdict == Verdict::Approve && a.approver_email.as_deref() == Some(email))
        {
            problems.push(format!("{t}: approval by {email} acked but not in the DB"));
        }
    }

    // 2. Per ticket, at most one grant key applied (and called); none for a
    //    ticket that was not approved.
    let ticket_of_key =
        |key: &str| -> String { key.split('/').nth(1).unwrap_or_default().to_string() };
    let mut called_keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut grant_calls = 0;
    let mut already = 0;
    for (action, key) in &calls {
        if action == "grant" {
            grant_calls += 1;
            called_keys
                .entry(ticket_of_key(key))
                .or_default()
                .insert(key.clone());
        }
    }
    let mut applied_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut applied_revokes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (action, key) in &applied {
        let map = match action.as_str() {
            "grant" => &mut applied_keys,
            "revoke" => &mut applied_revokes,
            other => {
                problems.push(format!("unknown action {other} {key}"));
                continue;
            }
        };
        map.entry(ticket_of_key(key)).or_default().push(key.clone());
    }
    already += calls.len() - applied.len();
    let mut duplicates = 0;
    for (t, keys) in &called_keys {
        if keys.len() > 1 {
            duplicates += 1;
            problems.push(format!("{t}: provisioned under several keys {keys:?}"));
        }
        let id = parse_ticket_ref(t).unwrap();
        let approved = tickets.get(&id).is_some_and(|ticket| {
            ticket
                .approvals
                .iter()
                .any(|a| a.verdict == Verdict::Approve)
                && !matches!(
                    ticket.status,
                    Status::Pending | Status::Rejected | Status::Cancelled | Status::Stale
                )
        });
        if !approved {
            problems.push(format!("{t}: granted but never approved"));
        }
    }
    for (t, keys) in applied_keys.iter().chain(applied_revokes.iter()) {
        if keys.len() > 1 {
            duplicates += 1;
            problems.push(format!("{t}: applied more than once {keys:?}"));
        }
    }
    let mut grants_per_ticket: BTreeMap<i64, usize> = BTreeMap::new();
    for g in &grants {
        *grants_per_ticket.entry(g.ticket_id).or_default() += 1;
    }
    for (t, n) in grants_per_ticket {
        if n > 1 {
            duplicates += 1;
            problems.push(format!("T-{t}: {n} grant rows"));
        }
    }

    // 3. Every acked approval was provisioned; every expiry that came due ran
    //    (revoke applied in the app, grant expired in the DB).
    let mut expiries_run = 0;
    for g in &grants {
        let t = format!("T-{}", g.ticket_id);
        let granted = applied_keys
            .get(&t)
            .is_some_and(|k| k.contains(&g.idempotency_key));
        let revoked = applied_revokes
            .get(&t)
            .is_some_and(|k| k.contains(&g.revoke_key()));
        if !granted {
            problems.push(format!(
                "{t}: grant {} is {:?} but was never applied",
                g.idempotency_key, g.status
            ));
        }
        let due = g.expires_at.is_some_and(|e| e < checked_at);
        match (due, g.status) {
            (true, GrantStatus::Expired) if revoked => expiries_run += 1,
            (true, status) => problems.push(format!(
                "{t}: expiry due at {:?} did not run (grant {status:?}, revoke applied: {revoked})",
                g.expires_at
            )),
            (false, _) => problems.push(format!(
                "{t}: not expired yet at the end (expires {:?}, {:?}): lengthen the wait",
                g.expires_at, g.status
            )),
        }
    }
    for (t, _) in &acked {
        if !applied_keys.contains_key(t) {
            problems.push(format!("{t}: approval acked but nothing was provisioned"));
        }
    }

    let total_secs = started.elapsed().as_secs();
    println!();
    println!("| crash test                         | value |");
    println!("|------------------------------------|-------|");
    println!("| flows (request → approve)          | {flows} |");
    println!("| lanes (concurrent flows)           | {lane_count} |");
    println!(
        "| SIGKILLs during the flows (+1 end) | {} |",
        run.kills.load(Ordering::SeqCst) - 1
    );
    println!("| approvals acked                    | {} |", acked.len());
    println!("| approvals committed, ack lost      | {} |", unacked.len());
    println!("| tickets in the DB                  | {} |", tickets.len());
    println!(
        "| grants applied (distinct keys)     | {} |",
        applied_keys.len()
    );
    println!("| grant calls (incl. retries)        | {grant_calls} |");
    println!("| calls answered \"already\" (exit 3)  | {already} |");
    println!("| duplicates found                   | {duplicates} |");
    println!("| expiries run (revoked + expired)   | {expiries_run} |");
    println!(
        "| problems                           | {} |",
        problems.len()
    );
    println!(
        "| flows phase / total                | {}s / {total_secs}s |",
        flows_done.as_secs()
    );
    println!("| seed                               | {seed} |");
    if !problems.is_empty() {
        println!("\ndaemon log: {}", log.display());
        let _keep = world.dir.keep();
        let _keep_tools = tools.keep();
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(duplicates, 0);
}
