//! accessd: a self-hosted Slack bot daemon for access governance.
//!
//! Library first: [`run`] drives the whole daemon with a shutdown future, so
//! tests run it in-process against the fake Slack; `main.rs` only parses the
//! command line and calls [`cli`].
//!
//! # Layers
//!
//! Each layer imports only from the layers below it (`tests/layers.rs`
//! checks every `crate::` path against this list, so it is the rule, not a
//! description):
//!
//! 1. `main` (binary), then `cli`: subcommands.
//! 2. this file (`run`, wiring and shutdown) and `reload` (SIGHUP: a re-read
//!    config swapped in whole).
//! 3. `router` (envelope → typed route → handler: parse *and* dispatch),
//!    `scheduler` (the job runner and source timers; timing only), `server`
//!    (`/healthz`, `/metrics`).
//! 4. `handlers`: one module per Slack surface; no surface calls another
//!    (what they share is in `handlers::tell` and `handlers::who`).
//! 5. `lifecycle`: what each durable job does, and `lifecycle::notices`, what
//!    each party is told when a ticket moves.
//! 6. `app`: the shared context (`App`, the reloadable `Live`, the
//!    Home-refresh queue, the job runner's wake-up).
//! 7. use cases: `sync` and `reviews` above `alerts`, `outbox` and
//!    `identity`.
//! 8. adapters: `slack` (Socket Mode transport, frame codec,
//!    envelope contract, ids, modal reading, Block Kit views), `sources`
//!    (identity-source readers), `provision` (provisioners).
//! 9. `store`: all SQL, behind one `Store`.
//! 10. `domain`: pure rules and vocabulary (ticket, policy, diff, catalog,
//!     alert kinds, job kinds, snapshot types).
//! 11. `slack_api`: the Slack Web API client, shared by the `slack` surfaces,
//!     the `slack` source and the `slack_usergroup` provisioner.
//! 12. `net` (HTTP helpers), `metrics` (counters only), `limit` (per-key
//!     sliding windows), then `config` (the
//!     TOML contract) at the bottom.

// The layers are listed above; rustfmt keeps these sorted.
pub mod alerts;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod handlers;
pub mod identity;
pub mod lifecycle;
pub mod limit;
pub mod metrics;
pub(crate) mod net;
pub mod outbox;
pub mod provision;
pub mod reload;
pub mod reviews;
pub mod router;
pub mod scheduler;
pub mod server;
pub mod slack;
pub mod slack_api;
pub mod sources;
pub mod store;
pub mod sync;

pub use net::install_crypto_provider;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::{App, AppParts, Integrations, Live, PrepareError};
use crate::config::{Config, SlackTokens};
use crate::identity::{HomeTeam, Identity};
use crate::outbox::{Outbox, OutboxOptions, OutboxWorker};
use crate::router::Router;
use crate::slack::transport::{Transport, TransportError, TransportOptions, TransportStatus};
use crate::slack_api::{ApiError, BotIdentity, SlackApi};
use crate::store::{Store, StoreError};

/// Everything SIGTERM may take: stop reading, finish in-flight work, flush.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(8);

/// How long handled envelope ids are remembered for dedupe across restarts.
const SEEN_RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// A request modal left open longer than this starts over.
const DRAFT_RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("Slack refused the bot token ({0}); check SLACK_BOT_TOKEN / slack.bot_token_file")]
    BotToken(ApiError),
    #[error("could not reach Slack: {0}")]
    Slack(ApiError),
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A provisioner or source that cannot be built (a secret file unreadable…).
    #[error("{0}")]
    Integration(String),
    #[error("{0}")]
    Channels(String),
    #[error("server.listen = \"{addr}\": could not listen: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl RunError {
    /// An error in the config file found only with Slack's help (a `#name`
    /// or `usergroup:` handle it does not know) or a secret file the file
    /// names: the command line exits 2 for it, as for any config error.
    pub fn is_config(&self) -> bool {
        matches!(self, RunError::Channels(_) | RunError::Integration(_))
    }
}

impl From<PrepareError> for RunError {
    fn from(err: PrepareError) -> Self {
        match err {
            PrepareError::Channels(why) => RunError::Channels(why),
            PrepareError::Store(err) => RunError::Store(err),
        }
    }
}

/// Knobs that are not part of the config file: protocol timings tests shorten.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub transport: TransportOptions,
    pub outbox: OutboxOptions,
    pub api_timeout: Duration,
    pub jobs: scheduler::JobOptions,
    /// Told the address `server.listen` is bound to (tests listen on port 0).
    pub listening: Option<tokio::sync::mpsc::UnboundedSender<SocketAddr>>,
    /// Each notification re-reads the config file (the binary wires SIGHUP here).
    pub reload: Option<Arc<tokio::sync::Notify>>,
}

impl RunOptions {
    pub fn for_config(config: &Config) -> Self {
        Self {
            transport: TransportOptions {
                connections: config.slack.connections,
                ..TransportOptions::default()
            },
            outbox: OutboxOptions::default(),
            api_timeout: Duration::from_secs(10),
            jobs: scheduler::JobOptions::default(),
            listening: None,
            reload: None,
        }
    }
}

/// Runs the daemon until `shutdown` resolves (Ok) or a fatal error (Err).
pub async fn run(
    config: Config,
    tokens: SlackTokens,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let options = RunOptions::for_config(&config);
    run_with(config, tokens, options, shutdown).await
}

pub async fn run_with(
    config: Config,
    tokens: SlackTokens,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    // Before the database is created: a secret file that cannot be read
    // must not leave a fresh, empty database behind.
    config
        .check_secret_files()
        .map_err(|err| RunError::Integration(err.to_string()))?;
    let db_path = config.database.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&db_path))
        .await
        .map_err(std::io::Error::other)??;
    let result = run_on_store(config, tokens, options, store.clone(), shutdown).await;
    store.close().await;
    result
}

async fn run_on_store(
    config: Config,
    tokens: SlackTokens,
    options: RunOptions,
    store: Store,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    // Dropped on every way out of this function, which also ends the listener.
    let (stop, stopped) = watch::channel(false);
    let server_state = server::ServerState::new(
        store.clone(),
        config.sources.iter().map(|s| s.id.clone()).collect(),
    );
    // Bound before Slack is reached, so a supervisor sees 503 during start-up.
    let server = match config.server.listen {
        Some(addr) => {
            let server = server::Server::bind(addr, server_state.clone(), stopped.clone())
                .await
                .map_err(|source| RunError::Listen { addr, source })?;
            tracing::info!(address = %server.local_addr(), "health and metrics listening");
            if let Some(tell) = &options.listening {
                let _ = tell.send(server.local_addr());
            }
            Some(server)
        }
        None => None,
    };
    // Built before Slack is reached so an unreadable secret file fails fast.
    let integrations = Integrations::build(&config, &tokens.bot).map_err(RunError::Integration)?;
    let api = SlackApi::new(&config.slack.api_url, &tokens, options.api_timeout)?;
    let bot = tokio::select! {
        bot = check_bot_token(&api, &options.transport) => bot?,
        _ = &mut shutdown => return Ok(()),
    };
    tracing::info!(
        bot_user = bot.user_id,
        team = bot.team,
        "bot token accepted"
    );
    let live = Live::prepare(&api, &store, config, integrations).await?;

    let outbox = Outbox::new(store.clone());
    // Everything but the envelope path queues its store calls behind it.
    let outbox_task = tokio::spawn(store::background(
        OutboxWorker::new(&outbox, api.clone(), options.outbox.clone()).run(stopped.clone()),
    ));
    let identity = Identity::new(
        store.clone(),
        api.clone(),
        live.config.identity.link_refresh,
        HomeTeam {
            team_id: bot.team_id.clone(),
            enterprise_id: bot.enterprise_id.clone(),
        },
    );
    let app = Arc::new(App::new(
        live,
        AppParts {
            store: store.clone(),
            api: api.clone(),
            bot,
            bot_token: tokens.bot.clone(),
            outbox,
            identity,
            job_options: options.jobs.clone(),
        },
    ));
    reload::arm_timers(&app).await?;
    let job_runner = tokio::spawn(store::background(scheduler::run(
        app.clone(),
        stopped.clone(),
    )));
    let source_timers = tokio::spawn(store::background(scheduler::sources::run(
        app.clone(),
        stopped.clone(),
    )));
    let usergroups = tokio::spawn(store::background(scheduler::usergroups(
        app.clone(),
        stopped.clone(),
    )));
    let reloads = options
        .reload
        .clone()
        .map(|trigger| tokio::spawn(reload::serve(app.clone(), server_state.clone(), trigger)));
    let home_refresh = tokio::spawn(store::background(handlers::home::refresh_worker(
        Arc::downgrade(&app),
    )));
    let transport = Transport::new(
        api,
        store.clone(),
        Arc::new(Router::new(app)),
        options.transport.clone(),
    );
    let status = transport.status();
    server_state.set_transport(status.clone());
    tokio::spawn(notify_systemd_when_connected(status));
    let pruner = tokio::spawn(store::background(prune_periodically(store.clone())));
    let mut transport_task = tokio::spawn(transport.run(stopped));

    let result = tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
        joined = &mut transport_task => match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(RunError::Transport(err)),
            Err(err) => Err(RunError::Io(std::io::Error::other(err))),
        },
    };
    let _ = stop.send(true);
    pruner.abort();
    home_refresh.abort();
    usergroups.abort();
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    let drained = tokio::time::timeout(SHUTDOWN_BUDGET, async {
        if !transport_task.is_finished() {
            let _ = (&mut transport_task).await;
        }
        let _ = job_runner.await;
        let _ = source_timers.await;
        let _ = outbox_task.await;
        if let Some(server) = server {
            server.stopped().await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown budget spent; exiting with work still in flight (it is durable)");
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    result
}

/// `auth.test` until Slack answers: a refused token is fatal, an outage is
/// waited out (the daemon often starts before the network is fully up).
async fn check_bot_token(
    api: &SlackApi,
    timing: &TransportOptions,
) -> Result<BotIdentity, RunError> {
    let mut delay = timing.backoff_base;
    loop {
        match api.auth_test().await {
            Ok(bot) => return Ok(bot),
            Err(err) if err.is_fatal_auth() => return Err(RunError::BotToken(err)),
            Err(err) if err.is_transient() => {
                tracing::warn!(error = %err, retry_in = ?delay, "Slack is not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(timing.backoff_max);
            }
            Err(err) => return Err(RunError::Slack(err)),
        }
    }
}

async fn notify_systemd_when_connected(status: Arc<TransportStatus>) {
    status.wait_connected().await;
    // Outside systemd NOTIFY_SOCKET is unset and this is a no-op.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// Forgets what only matters for a while: handled envelope ids and request
/// drafts abandoned in a closed modal.
async fn prune_periodically(store: Store) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(SEEN_RETENTION).unwrap_or_default();
        match store.prune_seen(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "forgot old envelope ids"),
            Err(err) => tracing::warn!(error = %err, "could not prune envelope ids"),
        }
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(DRAFT_RETENTION).unwrap_or_default();
        if let Err(err) = store.prune_drafts(cutoff).await {
            tracing::warn!(error = %err, "could not prune request drafts");
        }
    }
}
