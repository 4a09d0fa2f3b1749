//! Identity alerts: the kinds, their stable fingerprints, routing to the
//! channels ops chose (`#name`s resolved once through `conversations.list`),
//! which findings a sync raises or resolves, and the daily digest.
//! Rendering lives in `slack::views::alert`; the click handlers in
//! `handlers::alert`.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use serde_json::{json, Value};

use crate::config::{AlertChannels, Config, SourceConfig, SourceKind};
use crate::domain::alert;
pub use crate::domain::alert::{
    apply_saved_channels, channel_for, deactivatable, fingerprint, kind, next_digest, revocable,
};
use crate::domain::diff::{Change, MassRemoval};
use crate::domain::jobs;
use crate::domain::snapshot::Snapshot;
use crate::slack::views;
use crate::slack_api::SlackApi;
use crate::sources::slack::PRIVILEGED_ROLES;
use crate::store::{AlertRow, NewAlert, NewMessage, Offboarded, Store, StoreError};

/// Job kind and subject of the daily digest timer.
pub const DIGEST_JOB: &str = jobs::FINDINGS_DIGEST;
pub use crate::domain::alert::DIGEST_SUBJECT;

/// Replaces every `#name` in `[alerts.channels]` by its channel id, from
/// `conversations.list`. An unknown name is an error naming the key.
pub async fn resolve_channels(
    api: &SlackApi,
    channels: &AlertChannels,
) -> Result<(AlertChannels, Vec<(String, String)>), String> {
    if !alert::names_channels(channels) {
        return Ok((channels.clone(), Vec::new()));
    }
    let by_name = api.channel_ids().await.map_err(|e| {
        format!("alerts.channels: could not list Slack channels to resolve #names: {e}")
    })?;
    alert::resolve_names(channels, &by_name)
}

/// One channel outside `[alerts.channels]` (`key` names it in errors): a
/// `#name` becomes its id, with the (name, id) pair to save; an id is kept.
pub async fn resolve_channel(
    api: &SlackApi,
    key: &str,
    channel: &str,
) -> Result<(String, Option<(String, String)>), String> {
    let Some(name) = channel.trim().strip_prefix('#').map(str::to_lowercase) else {
        return Ok((channel.to_string(), None));
    };
    let by_name = api
        .channel_ids()
        .await
        .map_err(|e| format!("{key}: could not list Slack channels to resolve #{name}: {e}"))?;
    match by_name.get(&name) {
        Some(id) => Ok((id.clone(), Some((format!("#{name}"), id.clone())))),
        None => Err(format!(
            "{key}: no channel #{name} in this workspace (check the name; a private channel needs the bot invited and the groups:read scope)"
        )),
    }
}

/// A post to an alert channel, if the config routes that kind anywhere.
pub fn post(channel: Option<&String>, text: &str, blocks: Value) -> Option<NewMessage> {
    alert::routed(channel).map(|c| NewMessage::post(c, text, blocks).as_alert())
}

/// A finding as it will be stored, with its post when `post` and routed.
pub fn new_alert(
    config: &Config,
    kind_: &str,
    key: String,
    source: Option<&str>,
    app: Option<&str>,
    detail: Value,
    post: bool,
) -> NewAlert {
    let preview = AlertRow {
        id: 0,
        kind: kind_.to_string(),
        key: key.clone(),
        status: "open".into(),
        detail: detail.clone(),
        channel: None,
        ts: None,
        source_id: source.map(String::from),
        app: app.map(String::from),
        acted_by: None,
        acted_at: None,
        action: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    let message = channel_for(&config.alerts.channels, kind_)
        .filter(|_| post)
        .map(|channel| {
            let (text, blocks) = views::alert::message(config, &preview);
            NewMessage::post(channel, &text, blocks)
        });
    NewAlert {
        kind: kind_.to_string(),
        key,
        source_id: source.map(String::from),
        app: app.map(String::from),
        detail,
        message,
    }
}

/// Apps on the watchlist (config plus "Add to watchlist") and ignored ones.
pub struct Marks {
    pub watched: HashSet<String>,
    pub ignored: HashSet<String>,
}

impl Marks {
    pub fn new(config: &Config, marks: &HashMap<String, String>) -> Marks {
        let mut watched: HashSet<String> = config.alerts.watchlist.iter().cloned().collect();
        let mut ignored = HashSet::new();
        for (app, mark) in marks {
            if mark == "ignore" {
                watched.remove(app);
                ignored.insert(app.clone());
            } else {
                watched.insert(app.clone());
            }
        }
        Marks { watched, ignored }
    }

    /// Known to ops: in the catalog (by id or alias), watched or ignored.
    fn known(&self, config: &Config, app: &str) -> bool {
        config.find_app(app).is_some() || self.watched.contains(app) || self.ignored.contains(app)
    }
}

/// What a good (non-baseline) sync raises and resolves.
pub fn from_changes(
    config: &Config,
    source: &SourceConfig,
    marks: &Marks,
    changes: &[Change],
    snapshot: &Snapshot,
) -> (Vec<NewAlert>, Vec<String>) {
    let mut raise = Vec::new();
    let mut resolve = vec![
        fingerprint(&[kind::SOURCE_FAILED, &source.id]),
        fingerprint(&[kind::MASS_CHANGE, &source.id]),
    ];
    let mut per_app: HashMap<&str, usize> = HashMap::new();
    for a in &snapshot.accounts {
        *per_app.entry(a.app.as_str()).or_default() += 1;
    }
    let workspace = matches!(source.kind, SourceKind::Slack { .. });
    for change in changes {
        if workspace {
            privileged(config, source, change, &mut raise, &mut resolve);
        }
        match change {
            Change::AccountAdded { account }
                if marks.watched.contains(&account.app)
                    && !marks.ignored.contains(&account.app)
                    && !account.status.is_offboarded() =>
            {
                let key = fingerprint(&[
                    kind::WATCHLIST_SIGNUP,
                    &source.id,
                    &account.app,
                    &account.id,
                ]);
                let app_name = snapshot
                    .apps
                    .iter()
                    .find(|a| a.id == account.app)
                    .map(|a| a.name.clone());
                raise.push(new_alert(
                    config,
                    kind::WATCHLIST_SIGNUP,
                    key,
                    Some(&source.id),
                    Some(&account.app),
                    json!({ "source": source.id, "app": account.app, "app_name": app_name, "account": account }),
                    true,
                ));
            }
            Change::AccountRemoved { account } => {
                resolve.push(fingerprint(&[
                    kind::WATCHLIST_SIGNUP,
                    &source.id,
                    &account.app,
                    &account.id,
                ]));
            }
            Change::AppDiscovered { app } if !marks.known(config, &app.id) => {
                raise.push(new_alert(
                    config,
                    kind::NEW_APP,
                    fingerprint(&[kind::NEW_APP, &app.id]),
                    Some(&source.id),
                    Some(&app.id),
                    json!({ "source": source.id, "app": app.id, "app_name": app.name, "url": app.url,
                            "accounts": per_app.get(app.id.as_str()).copied().unwrap_or(0) }),
                    true,
                ));
            }
            _ => {}
        }
    }
    (raise, resolve)
}

/// A `slack` source's change that makes someone an owner, admin or guest of
/// the workspace raises a `privileged` finding; one that takes it away
/// resolves it.
fn privileged(
    config: &Config,
    source: &SourceConfig,
    change: &Change,
    raise: &mut Vec<NewAlert>,
    resolve: &mut Vec<String>,
) {
    let key = |account: &crate::domain::snapshot::Account, role: &str| {
        fingerprint(&[
            kind::PRIVILEGED,
            &source.id,
            &account.app,
            &account.id,
            role,
        ])
    };
    let mut found = |account: &crate::domain::snapshot::Account, role: &str| {
        raise.push(new_alert(
            config,
            kind::PRIVILEGED,
            key(account, role),
            Some(&source.id),
            Some(&account.app),
            json!({ "source": source.id, "app": account.app, "role": role, "account": account }),
            true,
        ));
    };
    match change {
        Change::AccountAdded { account } if !account.status.is_offboarded() => {
            for role in &account.entitlements {
                if PRIVILEGED_ROLES.contains(&role.as_str()) {
                    found(account, role);
                }
            }
        }
        Change::EntitlementAdded {
            account,
            entitlement,
        } if PRIVILEGED_ROLES.contains(&entitlement.as_str()) => found(account, entitlement),
        Change::EntitlementRemoved {
            account,
            entitlement,
        } if PRIVILEGED_ROLES.contains(&entitlement.as_str()) => {
            resolve.push(key(account, entitlement))
        }
        Change::AccountRemoved { account } => {
            for role in PRIVILEGED_ROLES {
                resolve.push(key(account, role));
            }
        }
        _ => {}
    }
}

/// The `source_failed` finding for a failed sync.
pub fn source_failed(config: &Config, source: &SourceConfig, error: &str) -> NewAlert {
    new_alert(
        config,
        kind::SOURCE_FAILED,
        fingerprint(&[kind::SOURCE_FAILED, &source.id]),
        Some(&source.id),
        None,
        json!({ "source": source.id, "error": error }),
        true,
    )
}

/// The `mass_change` finding for a held sync.
pub fn mass_change(config: &Config, source: &SourceConfig, held: &MassRemoval) -> NewAlert {
    new_alert(
        config,
        kind::MASS_CHANGE,
        fingerprint(&[kind::MASS_CHANGE, &source.id]),
        Some(&source.id),
        None,
        json!({ "source": source.id, "held": held.to_string(), "removed": held.removed,
                "before": held.before, "guard": config.alerts.mass_change_guard }),
        true,
    )
}

/// Re-evaluates offboarded-but-active findings across every source: new
/// ones are raised (posted unless `silent`), ended ones resolved.
pub async fn evaluate_offboarding(
    store: &Store,
    config: &Config,
    silent: bool,
) -> Result<(usize, usize), StoreError> {
    let authorities: Vec<String> = config
        .sources
        .iter()
        .filter(|s| s.authoritative)
        .map(|s| s.id.clone())
        .collect();
    let found = store.offboarded_active(authorities).await?;
    let current = found
        .iter()
        .map(|f| offboarded_alert(config, f, !silent))
        .collect();
    store
        .sync_findings(kind::OFFBOARDED_ACTIVE.into(), current)
        .await
}

fn offboarded_alert(config: &Config, f: &Offboarded, post: bool) -> NewAlert {
    new_alert(
        config,
        kind::OFFBOARDED_ACTIVE,
        fingerprint(&[
            kind::OFFBOARDED_ACTIVE,
            &f.email,
            &f.source_id,
            &f.account.app,
            &f.account.id,
        ]),
        Some(&f.source_id),
        Some(&f.account.app),
        json!({ "source": f.source_id, "app": f.account.app, "email": f.email, "authority": f.authority,
                "authority_status": f.authority_status.as_str(), "account": f.account }),
        post,
    )
}
