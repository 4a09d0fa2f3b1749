//! The `accessd` binary as an operator runs it: config checks and their exit
//! codes, the manifest, database migrate/backup, and `run` against the fake
//! Slack with a graceful SIGTERM.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{FakeSlack, APP_TOKEN, BOT_TOKEN};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");

fn accessd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_accessd"));
    cmd.env_remove("SLACK_APP_TOKEN")
        .env_remove("SLACK_BOT_TOKEN")
        .env_remove("ACCESSD_CONFIG")
        .env("RUST_LOG", "info");
    cmd
}

fn with_tokens(cmd: &mut Command) -> &mut Command {
    cmd.env("SLACK_APP_TOKEN", APP_TOKEN)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("accessd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_accepts_the_example_with_tokens_from_the_environment() {
    let out = with_tokens(&mut accessd())
        .args(["check-config", "--config", EXAMPLE])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = accessd()
        .args(["check-config", "--config", EXAMPLE])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("SLACK_APP_TOKEN"), "{}", stderr(&out));
}

#[test]
fn config_path_comes_from_accessd_config_when_not_given() {
    let out = with_tokens(&mut accessd())
        .env("ACCESSD_CONFIG", EXAMPLE)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn invalid_configs_exit_2_naming_the_key() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("unknown key", "[slack]\nconections = 2\n", &["conections", "2:1"]),
        (
            "inline token",
            "[slack]\nbot_token = \"xoxb-123-very-secret\"\n",
            &["slack.bot_token", "SLACK_BOT_TOKEN"],
        ),
        ("bad duration", "[slack]\n[requests]\ndefault_duration = \"8 hourz\"\n", &["requests.default_duration", "8 hourz"]),
        (
            "undefined group",
            "[slack]\n[[apps]]\nid = \"gh\"\nname = \"GitHub\"\nstages = [{ approvers = [\"group:nope\"], required = 1 }]\n",
            &["apps[0].stages[0].approvers[0]", "\"nope\" is not defined"],
        ),
        ("connections out of range", "[slack]\nconnections = 11\n", &["slack.connections"]),
        ("syntax error", "[slack\n", &["accessd.toml"]),
    ];
    for (name, text, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), text);
        let out = with_tokens(&mut accessd())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        for needle in *expected {
            assert!(
                err.contains(needle),
                "{name}: expected {needle:?} in: {err}"
            );
        }
        assert!(!err.contains("very-secret"), "{name}: token echoed: {err}");
    }
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let out = with_tokens(&mut accessd())
        .args(["check-config", "--config", "/nonexistent/accessd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/accessd.toml"));
}

#[test]
fn unknown_subcommands_are_usage_errors() {
    let out = accessd().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn manifest_is_a_socket_mode_app_with_the_access_command() {
    let out = accessd().arg("manifest").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let manifest: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("manifest is JSON");
    assert_eq!(manifest["settings"]["socket_mode_enabled"], true);
    assert_eq!(
        manifest["features"]["slash_commands"][0]["command"],
        "/access"
    );
    assert_eq!(manifest["features"]["app_home"]["home_tab_enabled"], true);
    assert!(
        stderr(&out).contains("connections:write"),
        "the app-level token scope is explained"
    );
}

#[test]
fn manifest_adds_the_scopes_the_config_needs() {
    let base = accessd().arg("manifest").output().unwrap();
    let scopes = |out: &Output| -> Vec<String> {
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("manifest is JSON");
        m["oauth_config"]["scopes"]["bot"]
            .as_array()
            .expect("bot scopes")
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    assert!(!scopes(&base).iter().any(|s| s.starts_with("usergroups:")));

    let dir = tempfile::tempdir().unwrap();
    let groups_only = write_config(
        dir.path(),
        "[[apps]]\nid = \"wiki\"\nstages = [{ approvers = [\"usergroup:sre\"], required = 1 }]\n",
    );
    let out = accessd()
        .arg("manifest")
        .arg("--config")
        .arg(&groups_only)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = scopes(&out);
    assert!(got.contains(&"usergroups:read".to_string()), "{got:?}");
    assert!(!got.contains(&"usergroups:write".to_string()), "{got:?}");

    let governed = write_config(
        dir.path(),
        "[[sources]]\nid = \"ws\"\nkind = \"slack\"\n\n[[provisioners]]\nid = \"g\"\nkind = \"slack_usergroup\"\n",
    );
    let out = accessd()
        .arg("manifest")
        .arg("--config")
        .arg(&governed)
        .output()
        .unwrap();
    let got = scopes(&out);
    for scope in [
        "usergroups:read",
        "usergroups:write",
        "team:read",
        "chat:write",
    ] {
        assert!(got.contains(&scope.to_string()), "{scope}: {got:?}");
    }

    let broken = write_config(dir.path(), "[[apps]]\nid = \"Bad Id\"\n");
    let out = accessd()
        .arg("manifest")
        .arg("--config")
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a config error is a usage error"
    );
}

#[test]
fn db_migrate_and_backup_produce_an_openable_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[slack]\n[database]\npath = \"data/accessd.db\"\n",
    );
    // Neither command talks to Slack, so neither needs the tokens.
    let out = accessd()
        .args(["db", "migrate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        dir.path().join("data/accessd.db").exists(),
        "database path is relative to the config file"
    );

    let backup = dir.path().join("backup.db");
    let out = accessd()
        .args(["db", "backup", "--config"])
        .arg(&path)
        .arg(&backup)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let copy = rusqlite::Connection::open(&backup).unwrap();
    let version: i64 = copy
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 1);
    let tables: Vec<String> = copy
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in [
        "tickets",
        "approvals",
        "grants",
        "user_links",
        "audit_log",
        "outbox",
        "jobs",
        "seen_envelopes",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "missing {table} in {tables:?}"
        );
    }

    let out = accessd()
        .args(["db", "backup", "--config"])
        .arg(&path)
        .arg(&backup)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an existing backup is not overwritten"
    );
}

#[tokio::test]
async fn run_connects_serves_and_stops_gracefully_on_sigterm() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "[slack]\napi_url = \"{}\"\nconnections = 2\n[server]\nlisten = \"\"\n",
            fake.api_url()
        ),
    );
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = with_tokens(&mut accessd())
        .args(["run", "--log-format", "json", "--config"])
        .arg(&path)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    fake.wait_for_connections(2, Duration::from_secs(20)).await;
    let id = fake.run_command("U1", "/access", "help");
    let ack = fake
        .wait_ack(&id, Duration::from_secs(5))
        .await
        .expect("the binary acks");
    assert!(ack.payload.is_some());

    let stopped = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "no exit within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(exit.code(), Some(0));

    let logs = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(logs.contains("Socket Mode connection up"), "{logs}");
    for secret in [APP_TOKEN, BOT_TOKEN] {
        assert!(!logs.contains(secret), "a token appeared in the logs");
    }
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
}

const MISSING_SECRETS: &str = r#"[slack]
app_token_file = "creds/app-token"
[database]
path = "accessd.db"
[[sources]]
id = "idp"
kind = "scim"
url = "https://scim.example.com/v2"
token_file = "creds/scim-token"
[[sources]]
id = "people"
kind = "file"
path = "people.json"
[[provisioners]]
id = "hook"
kind = "webhook"
url = "https://hooks.example.com/accessd"
secret_file = "creds/webhook-key"
"#;

#[test]
fn every_missing_secret_is_named_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), MISSING_SECRETS);
    std::fs::create_dir(dir.path().join("creds")).unwrap();
    // One present but empty: as useless as a missing one.
    std::fs::write(dir.path().join("creds/webhook-key"), "\n").unwrap();
    let at = |f: &str| dir.path().join(f).display().to_string();
    for command in ["check-config", "run"] {
        let out = with_tokens(&mut accessd())
            .args([command, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        for (key, file) in [
            ("slack.app_token_file", "creds/app-token"),
            ("sources[0].token_file", "creds/scim-token"),
            ("provisioners[0].secret_file", "creds/webhook-key"),
        ] {
            assert!(
                err.contains(&format!("{key}: ")) && err.contains(&at(file)),
                "{command}: {key} / {file} not named:\n{err}"
            );
        }
        assert!(err.contains("is empty"), "{err}");
        assert_eq!(
            err.matches("slack.app_token_file").count(),
            1,
            "said once: {err}"
        );
        assert!(
            !dir.path().join("accessd.db").exists(),
            "{command} created the database before checking the secrets"
        );
    }
}

/// The example config and its `examples/` data, copied as a user would have
/// them, with only Slack's URL pointed at the fake (and the metrics port
/// left to the system, so parallel runs do not collide).
fn example_copy(dir: &Path, api_url: &str) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config.example.toml"))
        .unwrap()
        .replace(
            "api_url = \"https://slack.com/api\"",
            &format!("api_url = \"{api_url}\""),
        )
        .replace("listen = \"127.0.0.1:9464\"", "listen = \"127.0.0.1:0\"");
    let path = write_config(dir, &text);
    std::fs::create_dir(dir.join("examples")).unwrap();
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".jsonl") {
            continue;
        }
        std::fs::copy(entry.path(), dir.join("examples").join(name)).unwrap();
    }
    path
}

#[tokio::test]
async fn the_example_config_runs_as_shipped_with_only_the_two_tokens() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = example_copy(dir.path(), &fake.api_url());
    let out = with_tokens(&mut accessd())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = with_tokens(&mut accessd())
        .args(["run", "--log-format", "json", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    fake.wait_for_connections(2, Duration::from_secs(20)).await;
    // The example's file source read the shipped people.
    let store = accessd::store::Store::open(&dir.path().join("accessd.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let hr = loop {
        let states = store.source_states().await.unwrap();
        if let Some(hr) = states.into_iter().find(|s| s.last_success_at.is_some()) {
            break hr;
        }
        assert!(Instant::now() < deadline, "the hr source never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    store.close().await;
    assert_eq!((hr.id.as_str(), hr.failures), ("hr", 0));
    assert!(hr.accounts >= 6, "{hr:?}");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let logs = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(!logs.contains("\"level\":\"ERROR\""), "{logs}");
}

#[test]
fn init_writes_the_starter_config_and_its_data_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("fresh");
    let out = accessd()
        .args(["init", "--dir"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("accessd run --config"), "{said}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, mode) in [
        ("accessd.toml", 0o600),
        ("examples/people.json", 0o600),
        ("examples/provision-log.sh", 0o700),
    ] {
        let path = target.join(name);
        let shipped = if name == "accessd.toml" {
            root.join("config.example.toml")
        } else {
            root.join(name)
        };
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(shipped).unwrap(),
            "{name}"
        );
        let actual = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, mode, "{name}");
    }
    let config = target.join("accessd.toml");
    let out = with_tokens(&mut accessd())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A second init, or one over any file of its own, writes nothing.
    std::fs::write(&config, "# mine\n").unwrap();
    let out = accessd()
        .args(["init", "--dir"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");
    let partial = dir.path().join("partial");
    std::fs::create_dir_all(partial.join("examples")).unwrap();
    std::fs::write(partial.join("examples/people.json"), "{}").unwrap();
    let out = accessd()
        .args(["init", "--dir"])
        .arg(&partial)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!partial.join("accessd.toml").exists());
}
