//! Subcommands, each a small function. Exit codes: 0 ok, 1 runtime failure,
//! 2 usage or configuration error.
//!
//! `tickets`, `grants`, `users`, `sources`, `reviews` and `audit` (in their
//! own modules) read and write the store only: they load the config without
//! asking for the Slack tokens.

mod actor;
mod audit;
mod grants;
mod init;
mod output;
mod reviews;
mod sources;
mod tickets;
mod users;

pub use audit::AuditCommand;
pub use grants::GrantsCommand;
pub use reviews::ReviewsCommand;
pub use sources::SourcesCommand;
pub use tickets::TicketsCommand;
pub use users::UsersCommand;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::slack::manifest;
use crate::store::Store;
use crate::{run_with, RunOptions};

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "accessd",
    version,
    about = "Access requests, approvals and reviews in Slack, self-hosted"
)]
pub struct Cli {
    /// Config file [default: $ACCESSD_CONFIG, then ./accessd.toml]
    #[arg(
        long,
        global = true,
        env = "ACCESSD_CONFIG",
        default_value = "accessd.toml"
    )]
    pub config: PathBuf,
    /// Log format; `auto` is human-readable on a terminal and JSON lines otherwise.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: connect to Slack over Socket Mode and serve until SIGTERM.
    Run,
    /// Parse and validate the config file, the Slack tokens and every secret
    /// file it names (creating nothing), then exit.
    CheckConfig,
    /// Write a starter config (accessd.toml) and the example data it reads
    /// into DIR; never overwrites a file.
    Init {
        /// Folder to write into (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Print the Slack app manifest to paste into "Create app from manifest",
    /// with the scopes the config file needs when there is one.
    Manifest {
        /// The app's display name in Slack.
        #[arg(long, default_value = "accessd")]
        name: String,
    },
    /// Database maintenance.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Access request tickets.
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Access granted through tickets: list, revoke now.
    Grants {
        #[command(subcommand)]
        command: GrantsCommand,
    },
    /// Slack user ⇄ email links.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Identity sources: sync now, list with their last sync and errors.
    Sources {
        #[command(subcommand)]
        command: SourcesCommand,
    },
    /// Access review campaigns: create, list, show, close, report.
    Reviews {
        #[command(subcommand)]
        command: ReviewsCommand,
    },
    /// The hash-chained audit log: export it, verify the chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations and report the schema version.
    Migrate,
    /// Copy the live database to PATH with SQLite's online backup (safe while the daemon runs).
    Backup { path: PathBuf },
}

/// `RUST_LOG` filters (default `info`); tokens never reach a log line because
/// they live in `Secret`, whose formatting prints nothing.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

pub fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run => run(&cli.config),
        Command::CheckConfig => check_config(&cli.config),
        Command::Manifest { name } => print_manifest(&cli.config, &name),
        Command::Init { dir } => output::finish(init::execute(&dir)),
        Command::Db { command } => match command {
            DbCommand::Migrate => db_migrate(&cli.config),
            DbCommand::Backup { path } => db_backup(&cli.config, &path),
        },
        Command::Tickets { command } => output::finish(tickets::execute(&cli.config, command)),
        Command::Grants { command } => output::finish(grants::execute(&cli.config, command)),
        Command::Users { command } => output::finish(users::execute(&cli.config, command)),
        Command::Sources { command } => output::finish(sources::execute(&cli.config, command)),
        Command::Reviews { command } => output::finish(reviews::execute(&cli.config, command)),
        Command::Audit { command } => output::finish(audit::execute(&cli.config, command)),
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|err| {
        eprintln!("{err}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("accessd: cannot start the async runtime: {err}");
            ExitCode::from(EXIT_FAILURE)
        })
}

fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let tokens = match config.check_secrets() {
        Ok(tokens) => tokens,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let mut options = RunOptions::for_config(&config);
    let daemon = async move {
        options.reload = Some(reload_on_sighup());
        run_with(config, tokens, options, shutdown_signal()).await
    };
    match runtime.block_on(daemon) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "accessd stopped");
            eprintln!("accessd: {err}");
            // A name in the file Slack does not know is the file's fault.
            ExitCode::from(if err.is_config() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            })
        }
    }
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
/// SIGHUP (what `systemctl reload` sends) as reload requests. The handler is
/// installed before anything else runs, so an early SIGHUP cannot take the
/// default action and kill the daemon.
fn reload_on_sighup() -> std::sync::Arc<tokio::sync::Notify> {
    let trigger = std::sync::Arc::new(tokio::sync::Notify::new());
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                let notify = trigger.clone();
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading the config");
                        notify.notify_one();
                    }
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; reload needs a restart")
            }
        }
    }
    trigger
}

pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn check_config(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(err) = config.check_secrets() {
        eprintln!("{err}");
        return ExitCode::from(EXIT_USAGE);
    }
    println!(
        "{}: ok ({} apps, {} sources, {} provisioners; database {})",
        path.display(),
        config.apps.len(),
        config.sources.len(),
        config.provisioners.len(),
        config.database.path.display()
    );
    ExitCode::SUCCESS
}

fn print_manifest(path: &Path, name: &str) -> ExitCode {
    // No file yet is the first step of a setup: the base scopes then.
    let extra = if path.exists() {
        match load(path) {
            Ok(config) => manifest::scopes_for(&config),
            Err(code) => return code,
        }
    } else {
        eprintln!(
            "accessd: no config at {}; printing the base scopes (run again with --config FILE to add what it needs)",
            path.display()
        );
        Default::default()
    };
    match serde_json::to_string_pretty(&manifest::manifest(name, &extra)) {
        Ok(text) => {
            println!("{text}");
            eprintln!("{}", manifest::APP_TOKEN_NOTE);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("accessd: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn db_migrate(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match Store::migrate(&config.database.path) {
        Ok(report) if report.from == report.to => {
            println!(
                "{}: schema is current (version {})",
                config.database.path.display(),
                report.to
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            println!(
                "{}: migrated schema from version {} to {}",
                config.database.path.display(),
                report.from,
                report.to
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("accessd: {}: {err}", config.database.path.display());
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn db_backup(path: &Path, dest: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let store = Store::open(&config.database.path)?;
        let result = store.backup_to(dest.to_path_buf()).await;
        store.close().await;
        result
    });
    match result {
        Ok(()) => {
            println!(
                "backed up {} to {}",
                config.database.path.display(),
                dest.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("accessd: backup to {} failed: {err}", dest.display());
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
