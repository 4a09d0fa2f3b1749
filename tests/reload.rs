//! Config reload: the daemon re-reads its file on request (SIGHUP for the
//! binary) and a valid file takes effect for the catalog, policy, alert
//! routing and sources without touching the Socket Mode connections; an
//! invalid one is refused with `check-config`'s message and the old one stays.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accessd::store::Store;
use serde_json::json;
use support::daemon::config_listening;
use support::world::{World, ANN, BOB, DANA, IT_OPS, WAIT};
use support::{FakeSlack, APP_TOKEN, BOT_TOKEN};
use tokio::sync::Notify;

const GITHUB: &str = r#"
[requests]
admins = ["secops@example.com"]

[[apps]]
id = "github"
name = "GitHub"
owners = ["bob@example.com"]
"#;

fn with_vault(extra: &str) -> String {
    format!(
        "{GITHUB}\n[[apps]]\nid = \"vault\"\nname = \"Vault\"\nowners = [\"dana@example.com\"]\n{extra}"
    )
}

fn reloadable(trigger: &Arc<Notify>) -> Option<support::world::AdjustOptions> {
    let trigger = trigger.clone();
    Some(Box::new(move |o: &mut accessd::RunOptions| {
        o.reload = Some(trigger.clone());
    }))
}

/// Rewrites the world's config file as `config_listening` writes it.
fn rewrite(world: &World, catalog: &str) {
    config_listening(&world.fake, world.dir.path(), 2, "", catalog);
}

fn modal_text(world: &World, user: &str) -> String {
    world
        .fake
        .last_modal(user)
        .map(|m| m.to_string())
        .unwrap_or_default()
}

/// Opens `/access text` until the modal mentions `wanted` (the reload runs
/// beside the test); panics after a few seconds.
async fn wait_for_modal_with(world: &World, user: &str, text: &str, wanted: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        world.open_request(user, text).await;
        if modal_text(world, user).contains(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the modal never showed {wanted:?}: {}",
            modal_text(world, user)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_reload_changes_catalog_and_policy_without_reconnecting() {
    let trigger = Arc::new(Notify::new());
    let world = World::start_adjusted(GITHUB, reloadable(&trigger)).await;
    let sockets = world.fake.live_connections();
    let opened = world.fake.total_connections_opened();

    world.open_request(ANN, "vault").await;
    assert!(
        modal_text(&world, ANN).contains("No app matches"),
        "vault is not in the catalog yet"
    );

    rewrite(&world, &with_vault(""));
    trigger.notify_one();
    wait_for_modal_with(&world, ANN, "vault", "Vault").await;

    // The new app's policy is in force: its owner is asked to approve.
    let reference = world
        .request(ANN, "vault", &[], "rotate the prod keys", "2h")
        .await;
    let dm = world.dm_about(DANA, &reference).await;
    assert!(dm.to_string().contains("Approve"), "{dm}");
    assert!(
        !world
            .fake
            .messages_to(BOB)
            .iter()
            .any(|m| m.to_string().contains(&reference)),
        "GitHub's owner is not asked about a Vault request"
    );

    assert_eq!(world.fake.live_connections(), sockets, "same sockets");
    assert_eq!(
        world.fake.total_connections_opened(),
        opened,
        "no reconnect"
    );
    world.stop().await;
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_the_running_config_stays() {
    let trigger = Arc::new(Notify::new());
    let world = World::start_adjusted(&with_vault(""), reloadable(&trigger)).await;
    let refused = || {
        accessd::metrics::global()
            .render(0, None, chrono::Utc::now())
            .lines()
            .find(|l| l.starts_with("accessd_config_reloads_total{result=\"refused\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = refused();

    // An owner nobody can parse: the whole file is refused, not half applied.
    let path = world.dir.path().join("accessd.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[[apps]]\nid = \"Vault!\"\nowners = [\"not-an-email\"]\n");
    std::fs::write(&path, text).unwrap();
    trigger.notify_one();
    world
        .fake
        .wait_until(WAIT, |_| (refused() > before).then_some(()))
        .await
        .expect("the reload is refused");

    wait_for_modal_with(&world, ANN, "vault", "Vault").await;
    world.stop().await;
}

fn account(app: &str, id: &str) -> serde_json::Value {
    json!({ "app": app, "id": id, "email": format!("{id}@example.com"), "name": id,
            "status": "active", "entitlements": [] })
}

fn write_source(path: &Path, accounts: Vec<serde_json::Value>) {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        json!({ "apps": [], "accounts": accounts }).to_string(),
    )
    .unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn source_state(db: &Store, id: &str) -> Option<accessd::store::SourceState> {
    db.source_states()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
}

#[tokio::test]
async fn a_reload_adds_and_removes_sources_and_reroutes_alerts() {
    let files = tempfile::tempdir().unwrap();
    let hr = files.path().join("hr.json");
    let saas = files.path().join("saas.json");
    write_source(&hr, vec![account("hr", "ann")]);
    write_source(&saas, vec![account("github", "ann")]);
    let hr_source = format!(
        "[[sources]]\nid = \"hr\"\nkind = \"file\"\npath = \"{}\"\nschedule = \"every 1s\"\n",
        hr.display()
    );
    let trigger = Arc::new(Notify::new());
    let world =
        World::start_adjusted(&format!("{GITHUB}\n{hr_source}"), reloadable(&trigger)).await;
    let db = Store::open(&world.dir.path().join("accessd.db")).unwrap();
    world.wait_synced("hr", chrono::Utc::now()).await;

    // Swap hr for saas, and route new-app alerts to #it-ops (none before).
    rewrite(
        &world,
        &format!(
            "{GITHUB}\n[[sources]]\nid = \"saas\"\nkind = \"file\"\npath = \"{}\"\nschedule = \"every 1s\"\n\n[alerts.channels]\nnew_app = \"#it-ops\"\n",
            saas.display()
        ),
    );
    let reloaded_at = chrono::Utc::now();
    trigger.notify_one();
    world.wait_synced("saas", reloaded_at).await;

    // hr's timer stopped: no attempt starts well after the reload.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let hr_last = source_state(&db, "hr")
        .await
        .and_then(|s| s.last_attempt_at);
    assert!(
        hr_last.is_some_and(|t| t < reloaded_at + chrono::Duration::milliseconds(1500)),
        "hr is still polled after its removal: {hr_last:?}"
    );

    // The new routing is used: an app saas discovers is announced in #it-ops.
    write_source(
        &saas,
        vec![account("github", "ann"), account("figma", "ann")],
    );
    let posted = world
        .fake
        .wait_until(Duration::from_secs(10), |f| {
            f.messages_to(IT_OPS.0)
                .into_iter()
                .find(|m| m.to_string().contains("figma"))
        })
        .await;
    assert!(posted.is_some(), "no new-app alert in #it-ops");
    db.close().await;
    world.stop().await;
}

/// systemd's end of `NOTIFY_SOCKET`: every datagram the daemon sends.
struct SystemdNotify {
    path: std::path::PathBuf,
    received: Arc<std::sync::Mutex<Vec<String>>>,
}

impl SystemdNotify {
    fn bind(path: &Path) -> Self {
        let socket = std::os::unix::net::UnixDatagram::bind(path).unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Self {
            path: path.to_path_buf(),
            received,
        }
    }

    /// Waits until the states seen so far end with `tail` (each datagram's
    /// first line, e.g. `RELOADING=1` of `RELOADING=1\nMONOTONIC_USEC=…`).
    async fn wait_for(&self, tail: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen: Vec<String> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .map(|m| m.lines().next().unwrap_or_default().to_string())
                .collect();
            if seen.ends_with(&tail.iter().map(|s| s.to_string()).collect::<Vec<_>>()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "systemd saw {seen:?}, not {tail:?} last"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Types `/access text` and returns the modal it opens (a new one).
async fn open_modal(fake: &FakeSlack, user: &str, text: &str) -> serde_json::Value {
    let before = fake.last_modal(user).map(|m| m["id"].clone());
    let id = fake.run_command(user, "/access", text);
    fake.wait_ack(&id, WAIT).await.expect("acked");
    fake.wait_until(WAIT, |f| {
        f.last_modal(user)
            .filter(|m| Some(m["id"].clone()) != before)
    })
    .await
    .expect("a new modal")
}

#[tokio::test]
async fn sighup_reloads_the_binary_and_a_bad_file_keeps_the_old_config() {
    let fake = FakeSlack::start().await;
    fake.add_user(ANN, "ann@example.com", "Ann Lee");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accessd.toml");
    let head = format!(
        "[slack]\napi_url = \"{}\"\nconnections = 2\n[server]\nlisten = \"\"\n[database]\npath = \"accessd.db\"\n",
        fake.api_url()
    );
    std::fs::write(&path, format!("{head}{GITHUB}")).unwrap();
    let log_path = dir.path().join("stderr.log");
    let notify = SystemdNotify::bind(&dir.path().join("notify.sock"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_accessd"))
        .args(["run", "--log-format", "json", "--config"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("SLACK_APP_TOKEN", APP_TOKEN)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    fake.wait_for_connections(2, Duration::from_secs(20)).await;
    notify.wait_for(&["READY=1"]).await;
    let opened = fake.total_connections_opened();
    let hup = |child: &std::process::Child| {
        let sent = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let wait_log = |needle: &'static str, count: usize| {
        let log_path = log_path.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
                if logs.matches(needle).count() >= count {
                    return logs;
                }
                assert!(
                    Instant::now() < deadline,
                    "no {needle:?} in the log:\n{logs}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    std::fs::write(&path, format!("{head}{}", with_vault(""))).unwrap();
    hup(&child);
    let logs = wait_log("config reloaded", 1).await;
    assert!(logs.contains("\"apps\":2"), "{logs}");
    // systemd is told a reload began and ended (Type=notify).
    notify
        .wait_for(&["READY=1", "RELOADING=1", "READY=1"])
        .await;
    let modal = open_modal(&fake, ANN, "vault").await;
    assert!(modal.to_string().contains("Vault"), "{modal}");

    // A file check-config rejects: the same message is logged, the daemon stays.
    let bad = format!("{head}{GITHUB}\n[requests.oops]\n");
    std::fs::write(&path, &bad).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_accessd"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("SLACK_APP_TOKEN", APP_TOKEN)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    let message = String::from_utf8_lossy(&check.stderr).trim().to_string();
    assert!(message.contains("requests.oops"), "{message}");
    hup(&child);
    let logs = wait_log("config reload refused", 1).await;
    let refused = logs
        .lines()
        .find(|l| l.contains("config reload refused"))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(refused).unwrap();
    assert_eq!(line["error"].as_str(), Some(message.as_str()), "{refused}");
    assert!(child.try_wait().unwrap().is_none(), "still running");

    let modal = open_modal(&fake, ANN, "vault").await;
    assert!(
        modal.to_string().contains("Vault"),
        "the running config stayed: {modal}"
    );
    assert_eq!(fake.total_connections_opened(), opened, "no reconnect");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(exit.code(), Some(0));
    notify
        .wait_for(&["RELOADING=1", "READY=1", "STOPPING=1"])
        .await;
    let logs = std::fs::read_to_string(&log_path).unwrap();
    for secret in [APP_TOKEN, BOT_TOKEN] {
        assert!(!logs.contains(secret), "a token appeared in the logs");
    }
}
