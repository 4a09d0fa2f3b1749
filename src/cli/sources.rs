//! `accessd sources sync|list`: syncing identity sources now, in this
//! process, with the daemon's sync engine and lease, and showing each
//! configured source with its stored state.

use std::path::Path;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

use super::actor::cli_actor;
use super::output::{
    clean, emit, or_dash, print_out, rfc3339_short, with_store, Failure, Outcome, Table,
};
use crate::alerts::apply_saved_channels;
use crate::config::{self, Config, SourceConfig};
use crate::sources::AnySource;
use crate::store::{AuditEvent, SourceState, Store};
use crate::sync::{lease_owner, sync_source, SyncOutcome};

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Sync a source now (every configured source, one after another, without ID);
    /// safe while the daemon runs.
    Sync {
        /// Source id from `[[sources]]`.
        #[arg(value_name = "ID")]
        id: Option<String>,
        /// Apply a diff the mass-change guard would hold (you confirmed the
        /// shrink is real). Needs an explicit ID; audited.
        #[arg(long, requires = "id")]
        accept_mass_change: bool,
        /// Print a JSON array instead of one line per source.
        #[arg(long)]
        json: bool,
    },
    /// Every configured source with its last sync, last error and counts.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn execute(config_path: &Path, command: SourcesCommand) -> Outcome {
    match command {
        SourcesCommand::Sync {
            id,
            accept_mass_change,
            json,
        } => {
            // The config is needed before the store is opened: an unknown id or
            // an unreadable secret is a usage error and must not touch the database.
            let config =
                config::load(config_path).map_err(|err| Failure::usage(err.to_string()))?;
            let selected = select(&config, id.as_deref(), config_path)?;
            let readers = readers(&config, &selected)?;
            with_store(config_path, |store| {
                sync(store, config, selected, readers, accept_mass_change, json)
            })
        }
        SourcesCommand::List { json } => {
            let config =
                config::load(config_path).map_err(|err| Failure::usage(err.to_string()))?;
            with_store(config_path, |store| list(store, config, json))
        }
    }
}

fn select(
    config: &Config,
    id: Option<&str>,
    config_path: &Path,
) -> Result<Vec<SourceConfig>, Failure> {
    let Some(id) = id else {
        return Ok(config.sources.clone());
    };
    match config.sources.iter().find(|s| s.id == id) {
        Some(source) => Ok(vec![source.clone()]),
        None => {
            let known: Vec<&str> = config.sources.iter().map(|s| s.id.as_str()).collect();
            let known = if known.is_empty() {
                "none are configured".to_owned()
            } else {
                format!("configured: {}", known.join(", "))
            };
            Err(Failure::usage(format!(
                "accessd: no source `{}` in {} ({known})",
                clean(id),
                config_path.display()
            )))
        }
    }
}

/// All readers are built before any sync runs, so a missing secret file is
/// reported as the configuration error it is, not as a half-done run.
fn readers(config: &Config, sources: &[SourceConfig]) -> Result<Vec<AnySource>, Failure> {
    let bot = config.borrowed_bot_token().map_err(Failure::usage)?;
    let mut readers = Vec::with_capacity(sources.len());
    let mut errors = Vec::new();
    for source in sources {
        match AnySource::from_config(source, bot.as_ref()) {
            Ok(reader) => readers.push(reader),
            Err(err) => errors.push(err),
        }
    }
    if errors.is_empty() {
        Ok(readers)
    } else {
        Err(Failure::usage(errors.join("\n")))
    }
}

#[derive(Serialize)]
struct SyncView<'a> {
    id: &'a str,
    #[serde(flatten)]
    outcome: &'a SyncOutcome,
}

async fn sync(
    store: Store,
    mut config: Config,
    sources: Vec<SourceConfig>,
    readers: Vec<AnySource>,
    accept_mass_change: bool,
    json: bool,
) -> Outcome {
    // The CLI cannot resolve `#name`s itself; alerts it raises wait in the
    // outbox for the daemon, addressed by the ids the daemon resolved.
    config.alerts.channels =
        apply_saved_channels(&config.alerts.channels, &store.saved_channels().await?);
    let owner = lease_owner("cli");
    let actor = cli_actor();
    let mut outcomes = Vec::with_capacity(sources.len());
    for (source, reader) in sources.iter().zip(&readers) {
        let outcome =
            sync_source(&store, &config, source, reader, &owner, accept_mass_change).await?;
        let mut detail = serde_json::to_value(&outcome)
            .map_err(|err| Failure::runtime(format!("accessd: {err}")))?;
        if let Some(fields) = detail.as_object_mut() {
            fields.insert(
                "accept_mass_change".into(),
                serde_json::Value::Bool(accept_mass_change),
            );
        }
        store
            .append_audit(AuditEvent::new(
                actor.clone(),
                "source.sync",
                source.id.clone(),
                detail,
            ))
            .await?;
        if !json {
            print_out(&clean(&format!("{}: {outcome}", source.id)))?;
        }
        outcomes.push((source.id.as_str(), outcome));
    }
    if json {
        let views: Vec<SyncView<'_>> = outcomes
            .iter()
            .map(|(id, outcome)| SyncView { id, outcome })
            .collect();
        emit(true, &views, String::new)?;
    } else if outcomes.is_empty() {
        print_out("no sources configured")?;
    }
    let not_synced: Vec<String> = outcomes
        .iter()
        .filter_map(|(id, outcome)| {
            let why = match outcome {
                SyncOutcome::Baseline { .. } | SyncOutcome::Applied { .. } => return None,
                SyncOutcome::Held { .. } => "held by the mass-change guard",
                SyncOutcome::Failed { .. } => "failed",
                SyncOutcome::Busy => "busy: the daemon or another CLI is syncing it; try again",
            };
            Some(format!("{id} ({why})"))
        })
        .collect();
    if not_synced.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "accessd: not synced: {}",
            not_synced.join(", ")
        )))
    }
}

#[derive(Debug, Serialize)]
struct SourceView {
    id: String,
    /// The source kind, or `(removed)` for state left by a source no longer configured.
    kind: &'static str,
    schedule: Option<String>,
    authoritative: Option<bool>,
    app: Option<String>,
    last_attempt_at: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    last_error_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    /// Consecutive failed or held syncs.
    failures: i64,
    /// `None` until the source has been synced (or tried) once.
    accounts: Option<i64>,
    apps: Option<i64>,
    last_summary: Option<serde_json::Value>,
}

impl SourceView {
    fn new(config: Option<&SourceConfig>, id: String, state: Option<SourceState>) -> Self {
        let state = state.as_ref();
        SourceView {
            id,
            kind: config.map_or("(removed)", |c| c.kind.name()),
            schedule: config.map(|c| c.schedule.to_string()),
            authoritative: config.map(|c| c.authoritative),
            app: config.map(|c| c.app.clone()),
            last_attempt_at: state.and_then(|s| s.last_attempt_at),
            last_success_at: state.and_then(|s| s.last_success_at),
            last_error_at: state.and_then(|s| s.last_error_at),
            last_error: state.and_then(|s| s.last_error.clone()),
            failures: state.map_or(0, |s| s.failures),
            accounts: state.map(|s| s.accounts),
            apps: state.map(|s| s.apps),
            last_summary: state.and_then(|s| s.last_summary.clone()),
        }
    }
}

async fn list(store: Store, config: Config, json: bool) -> Outcome {
    let mut states = store.source_states().await?;
    let mut views = Vec::with_capacity(config.sources.len() + states.len());
    for source in &config.sources {
        let state = states
            .iter()
            .position(|s| s.id == source.id)
            .map(|i| states.swap_remove(i));
        views.push(SourceView::new(Some(source), source.id.clone(), state));
    }
    states.sort_by(|a, b| a.id.cmp(&b.id));
    for state in states {
        views.push(SourceView::new(None, state.id.clone(), Some(state)));
    }
    emit(json, &views, || sources_table(&views))
}

fn sources_table(views: &[SourceView]) -> String {
    if views.is_empty() {
        return "no sources configured".into();
    }
    let mut table = Table::new(&[
        "ID",
        "KIND",
        "SCHEDULE",
        "AUTHORITATIVE",
        "APP",
        "LAST SUCCESS",
        "FAILURES",
        "ACCOUNTS",
        "APPS",
        "LAST ERROR",
    ]);
    for v in views {
        let last_error = v.last_error.as_ref().map(|err| match v.last_error_at {
            Some(at) => format!("{}: {err}", rfc3339_short(at)),
            None => err.clone(),
        });
        table.row(vec![
            v.id.clone(),
            v.kind.into(),
            or_dash(v.schedule.clone()),
            or_dash(
                v.authoritative
                    .map(|a| if a { "yes" } else { "no" }.to_owned()),
            ),
            or_dash(v.app.clone()),
            v.last_success_at
                .map_or_else(|| "never".into(), rfc3339_short),
            v.failures.to_string(),
            or_dash(v.accounts.map(|n| n.to_string())),
            or_dash(v.apps.map(|n| n.to_string())),
            or_dash(last_error),
        ]);
    }
    table.render()
}
