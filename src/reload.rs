//! Config reload (SIGHUP, `systemctl reload`): re-read the file, check it as
//! `check-config` does, resolve its alert channels, build its provisioners and
//! sources, and only then swap it in whole and re-arm the timers that depend
//! on it. Any failing step leaves the running config in force.
//!
//! Socket Mode connections, the database and the listener are not touched;
//! their keys (and `identity.link_refresh`) take effect at the next restart,
//! and a reload that changes them says so.

use std::sync::Arc;

use crate::app::{App, Integrations, Live, PrepareError};
use crate::config::{self, Config, ConfigError};
use crate::lifecycle::anchor;
use crate::lifecycle::findings;
use crate::lifecycle::reviews;
use crate::metrics;
use crate::server::ServerState;
use crate::store::StoreError;

/// Why a reload was refused; the message is what `check-config` would print
/// for the same file, or names the key whose resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Integration(String),
    #[error("{0}")]
    Channels(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

/// What a successful reload put in force.
#[derive(Debug)]
pub struct Reloaded {
    pub apps: usize,
    pub sources: usize,
    pub provisioners: usize,
    /// Keys whose new values wait for a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Serves reload requests until the task is aborted at shutdown. Requests
/// arriving during a reload coalesce into one more.
pub async fn serve(app: Arc<App>, server: Arc<ServerState>, trigger: Arc<tokio::sync::Notify>) {
    loop {
        trigger.notified().await;
        // MONOTONIC_USEC lets `Type=notify-reload` units match this reload too.
        let mut reloading = vec![sd_notify::NotifyState::Reloading];
        reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        let _ = sd_notify::notify(false, &reloading);
        match reload(&app, &server).await {
            Ok(done) => {
                metrics::global().config_reloaded(true);
                tracing::info!(
                    apps = done.apps,
                    sources = done.sources,
                    provisioners = done.provisioners,
                    "config reloaded"
                );
                if !done.restart_needed.is_empty() {
                    tracing::warn!(
                        keys = done.restart_needed.join(", "),
                        "these settings changed in the file and take effect at the next restart"
                    );
                }
            }
            Err(err) => {
                metrics::global().config_reloaded(false);
                tracing::error!(error = %err, "config reload refused; the running config stays");
            }
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    }
}

/// Re-reads the running config's file and swaps it in.
pub async fn reload(app: &App, server: &ServerState) -> Result<Reloaded, ReloadError> {
    let running = app.config();
    let path = running.path.clone();
    let mut next = tokio::task::spawn_blocking(move || config::load(&path))
        .await
        .map_err(|e| ReloadError::Integration(format!("reload task failed: {e}")))??;
    let restart_needed = keep_restart_only(&running, &mut next);
    // What is known of Slack user groups stays valid across the reload.
    next.usergroups = running.usergroups.clone();
    // Secret files are read here, off the async threads.
    let bot = app.bot_token.clone();
    let (next, integrations) = tokio::task::spawn_blocking(move || {
        Integrations::build(&next, &bot).map(|built| (next, built))
    })
    .await
    .map_err(|e| ReloadError::Integration(format!("reload task failed: {e}")))?
    .map_err(ReloadError::Integration)?;
    let live = Live::prepare(&app.api, &app.store, next, integrations)
        .await
        .map_err(|err| match err {
            PrepareError::Channels(why) => ReloadError::Channels(why),
            PrepareError::Store(err) => ReloadError::Store(err),
        })?;
    let next = &live.config;
    let done = Reloaded {
        apps: next.apps.len(),
        sources: next.sources.len(),
        provisioners: next.provisioners.len(),
        restart_needed,
    };
    server.set_sources(next.sources.iter().map(|s| s.id.clone()).collect());
    app.replace_live(live);
    arm_timers(app).await?;
    app.jobs.wake();
    Ok(done)
}

/// Sets the timers the config drives: the daily digest at `alerts.digest_at`,
/// the audit anchor (posted at once, then every `audit.anchor_every`)
/// and each `[[reviews.schedules]]` entry's next run (a run missed while the
/// daemon was down is skipped, not made up). A schedule dropped from the file
/// keeps its pending timer, which then finds it gone and stops.
pub async fn arm_timers(app: &App) -> Result<(), StoreError> {
    let config = app.config();
    findings::schedule_digest(app).await?;
    anchor::schedule(app).await?;
    for schedule in &config.reviews.schedules {
        reviews::schedule_next(app, &schedule.name).await?;
    }
    Ok(())
}

/// Puts the running values back for keys a reload cannot apply, and names
/// the ones the file changed.
fn keep_restart_only(running: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let slack = (&running.slack, &next.slack);
    if slack.0.api_url != slack.1.api_url {
        changed.push("slack.api_url");
    }
    if slack.0.connections != slack.1.connections {
        changed.push("slack.connections");
    }
    if slack.0.app_token_file != slack.1.app_token_file {
        changed.push("slack.app_token_file");
    }
    if slack.0.bot_token_file != slack.1.bot_token_file {
        changed.push("slack.bot_token_file");
    }
    if running.database.path != next.database.path {
        changed.push("database.path");
    }
    if running.server.listen != next.server.listen {
        changed.push("server.listen");
    }
    if running.identity.link_refresh != next.identity.link_refresh {
        changed.push("identity.link_refresh");
    }
    next.slack = running.slack.clone();
    next.database = running.database.clone();
    next.server = running.server.clone();
    next.identity.link_refresh = running.identity.link_refresh;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        crate::config::parse(text, Path::new("/etc/accessd/accessd.toml")).expect("valid")
    }

    #[test]
    fn restart_only_keys_keep_their_running_values_and_are_named() {
        let running = parse("[slack]\nconnections = 2\n[server]\nlisten = \"127.0.0.1:9000\"\n");
        let mut next = parse(
            "[slack]\nconnections = 4\n[server]\nlisten = \"\"\n[database]\npath = \"/tmp/other.db\"\n[[apps]]\nid = \"github\"\nowners = [\"a@example.com\"]\n",
        );
        let changed = keep_restart_only(&running, &mut next);
        assert_eq!(
            changed,
            vec!["slack.connections", "database.path", "server.listen"]
        );
        assert_eq!(next.slack.connections, 2);
        assert_eq!(next.server.listen, running.server.listen);
        assert_eq!(next.database.path, running.database.path);
        // What a reload may change is left as the file says.
        assert_eq!(next.apps.len(), 1);
    }

    #[test]
    fn an_unchanged_file_needs_no_restart() {
        let text = "[slack]\nconnections = 3\n";
        assert!(keep_restart_only(&parse(text), &mut parse(text)).is_empty());
    }
}
