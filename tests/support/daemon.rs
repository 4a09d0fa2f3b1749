//! Runs accessd in-process against the fake Slack, as a test's daemon: a real
//! config parsed from TOML, a real SQLite file in a temp folder, protocol
//! timings shortened so reconnect and drain paths run in test time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use accessd::config::{Config, SlackTokens};
use accessd::slack::transport::TransportOptions;
use accessd::{RunError, RunOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{FakeSlack, APP_TOKEN, BOT_TOKEN};

pub fn tokens() -> SlackTokens {
    SlackTokens::new(APP_TOKEN.to_string(), BOT_TOKEN.to_string())
        .expect("fake tokens have the right prefixes")
}

/// A config for `connections` sockets to `fake`, database in `dir`; `extra` is
/// appended TOML (apps, groups …). The health and metrics listener is off.
pub fn config(fake: &FakeSlack, dir: &Path, connections: usize, extra: &str) -> Config {
    config_listening(fake, dir, connections, "", extra)
}

/// Starts the daemon with `extra` config against a fresh fake Slack and
/// answers why start-up stopped (it must stop within 10 s).
pub async fn start_up_error(extra: &str) -> String {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(&fake, dir.path(), 1, extra);
    let daemon = Daemon::start(config.clone(), fast_options(&config));
    daemon
        .exit(Duration::from_secs(10))
        .await
        .expect_err("start-up refused")
        .to_string()
}

/// As [`config`], with `server.listen = listen` (`"127.0.0.1:0"`: any free port,
/// learnt through [`RunOptions::listening`]).
pub fn config_listening(
    fake: &FakeSlack,
    dir: &Path,
    connections: usize,
    listen: &str,
    extra: &str,
) -> Config {
    let text = format!(
        "[slack]\napi_url = \"{}\"\nconnections = {connections}\n\n[database]\npath = \"accessd.db\"\n\n[server]\nlisten = \"{listen}\"\n\n{extra}",
        fake.api_url()
    );
    let path = dir.join("accessd.toml");
    std::fs::write(&path, &text).expect("write test config");
    accessd::config::load(&path)
        .unwrap_or_else(|err| panic!("test config must be valid: {err}\n{text}"))
}

/// Fast reconnects and pings; Slack-like ack deadline.
pub fn fast_options(config: &Config) -> RunOptions {
    let mut options = RunOptions::for_config(config);
    options.transport = fast_transport(config.slack.connections);
    options.outbox.per_channel_interval = Duration::from_millis(50);
    options.outbox.poll_interval = Duration::from_millis(200);
    options.api_timeout = Duration::from_secs(5);
    options
}

pub fn fast_transport(connections: usize) -> TransportOptions {
    TransportOptions {
        connections,
        open_timeout: Duration::from_secs(3),
        ping_interval: Duration::from_millis(200),
        dead_after: Duration::from_millis(1000),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        ack_deadline: Duration::from_millis(2500),
        drain_timeout: Duration::from_secs(2),
    }
}

pub struct Daemon {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RunError>>,
    pub db_path: PathBuf,
}

impl Daemon {
    pub fn start(config: Config, options: RunOptions) -> Daemon {
        let (stop, stopped) = oneshot::channel::<()>();
        let db_path = config.database.path.clone();
        let task = tokio::spawn(accessd::run_with(config, tokens(), options, async {
            let _ = stopped.await;
        }));
        Daemon {
            stop: Some(stop),
            task,
            db_path,
        }
    }

    /// Starts a daemon with `connections` sockets and waits until all are up.
    pub async fn connected(fake: &FakeSlack, dir: &Path, connections: usize) -> Daemon {
        let config = config(fake, dir, connections, "");
        let options = fast_options(&config);
        let daemon = Daemon::start(config, options);
        fake.wait_for_connections(connections, Duration::from_secs(10))
            .await;
        daemon
    }

    /// Graceful stop, as on SIGTERM; returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.exit(Duration::from_secs(10)).await
    }

    /// Waits for `run` to return on its own (a fatal error).
    pub async fn exit(self, within: Duration) -> Result<(), RunError> {
        match tokio::time::timeout(within, self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => panic!("daemon task panicked: {join}"),
            Err(_) => panic!("daemon did not stop within {within:?}"),
        }
    }
}
