//! Identity alerts: the kinds, their stable fingerprints, routing to the
//! channels ops chose (`#name`s resolved once through `conversations.list`),
//! which findings a sync raises or resolves, and the daily digest.
//! Rendering lives in `slack::views::alert`; the click handlers in
//! `handlers::alert`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Local, NaiveTime, TimeZone, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{AlertChannels, Config, SourceConfig};
use crate::domain::diff::{Change, MassRemoval};
use crate::slack::api::SlackApi;
use crate::sources::Snapshot;
use crate::store::{AlertRow, NewAlert, NewMessage, Offboarded, Store, StoreError};

pub mod kind {
    pub const WATCHLIST_SIGNUP: &str = "watchlist_signup";
    pub const OFFBOARDED_ACTIVE: &str = "offboarded_active";
    pub const NEW_APP: &str = "new_app";
    pub const SOURCE_FAILED: &str = "source_failed";
    pub const MASS_CHANGE: &str = "mass_change";
    pub const FINDINGS_DIGEST: &str = "findings_digest";

    /// Kinds listed in the digest, in its order.
    pub const FINDINGS: [&str; 5] = [
        OFFBOARDED_ACTIVE,
        WATCHLIST_SIGNUP,
        NEW_APP,
        MASS_CHANGE,
        SOURCE_FAILED,
    ];

    pub fn title(kind: &str) -> &'static str {
        match kind {
            OFFBOARDED_ACTIVE => "Offboarded but still active",
            WATCHLIST_SIGNUP => "Watchlist sign-ups",
            NEW_APP => "New apps",
            MASS_CHANGE => "Held source syncs",
            SOURCE_FAILED => "Failing sources",
            _ => "Other findings",
        }
    }
}

/// Job kind and subject of the daily digest timer.
pub const DIGEST_JOB: &str = "findings_digest";
pub const DIGEST_SUBJECT: &str = "daily";

/// A short, stable id for a finding: the same parts always give the same
/// key, which is also what the message's buttons carry.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    format!(
        "{}-{}",
        parts.first().copied().unwrap_or("alert"),
        hex::encode(&digest[..10])
    )
}

/// The channel a kind is posted to, if any.
pub fn channel_for<'a>(channels: &'a AlertChannels, kind_: &str) -> Option<&'a String> {
    let channel = match kind_ {
        kind::WATCHLIST_SIGNUP => &channels.watchlist_signup,
        kind::OFFBOARDED_ACTIVE => &channels.offboarded_active,
        kind::NEW_APP => &channels.new_app,
        kind::SOURCE_FAILED | kind::MASS_CHANGE => &channels.source_failed,
        kind::FINDINGS_DIGEST => &channels.findings_digest,
        _ => &None,
    };
    channel.as_ref().filter(|c| !c.trim().is_empty())
}

/// Whether the Revoke button makes sense: the app is in the catalog (so it
/// has owners and a provisioner or a manual task).
pub fn revocable(config: &Config, app: &str) -> bool {
    config.app(app).is_some()
}

/// Replaces every `#name` in `[alerts.channels]` by its channel id, from
/// `conversations.list`. An unknown name is an error naming the key.
pub async fn resolve_channels(
    api: &SlackApi,
    channels: &AlertChannels,
) -> Result<(AlertChannels, Vec<(String, String)>), String> {
    let mut named: Vec<(&'static str, String)> = Vec::new();
    for (key, value) in channel_entries(channels) {
        if let Some(name) = value.and_then(|v| v.trim().strip_prefix('#').map(str::to_lowercase)) {
            named.push((key, name));
        }
    }
    if named.is_empty() {
        return Ok((channels.clone(), Vec::new()));
    }
    let mut by_name: HashMap<String, String> = HashMap::new();
    let mut cursor = String::new();
    for _page in 0..200 {
        let mut params = vec![
            ("types", "public_channel,private_channel"),
            ("exclude_archived", "true"),
            ("limit", "1000"),
        ];
        if !cursor.is_empty() {
            params.push(("cursor", cursor.as_str()));
        }
        let page = api
            .call_get("conversations.list", &params)
            .await
            .map_err(|e| {
                format!("alerts.channels: could not list Slack channels to resolve #names: {e}")
            })?;
        for c in page
            .get("channels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(name), Some(id)) = (
                c.get("name").and_then(Value::as_str),
                c.get("id").and_then(Value::as_str),
            ) {
                by_name.insert(name.to_lowercase(), id.to_string());
            }
        }
        cursor = page
            .pointer("/response_metadata/next_cursor")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if cursor.is_empty() {
            break;
        }
    }
    let mut resolved = channels.clone();
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for (key, name) in named {
        match by_name.get(&name) {
            Some(id) => {
                *channel_slot(&mut resolved, key) = Some(id.clone());
                pairs.push((format!("#{name}"), id.clone()));
            }
            None => missing.push(format!(
                "alerts.channels.{key}: no channel #{name} in this workspace (check the name; a private channel needs the bot invited and the groups:read scope)"
            )),
        }
    }
    if missing.is_empty() {
        Ok((resolved, pairs))
    } else {
        Err(missing.join("\n"))
    }
}

/// The CLI's routing: `#name`s from the daemon's saved resolutions, else as
/// written (chat.postMessage also accepts a name).
pub fn apply_saved_channels(
    channels: &AlertChannels,
    saved: &HashMap<String, String>,
) -> AlertChannels {
    let mut out = channels.clone();
    for (key, value) in channel_entries(channels) {
        if let Some(id) = value.and_then(|v| saved.get(&v.trim().to_lowercase())) {
            *channel_slot(&mut out, key) = Some(id.clone());
        }
    }
    out
}

fn channel_entries(c: &AlertChannels) -> [(&'static str, Option<&String>); 7] {
    [
        ("watchlist_signup", c.watchlist_signup.as_ref()),
        ("offboarded_active", c.offboarded_active.as_ref()),
        ("new_app", c.new_app.as_ref()),
        ("findings_digest", c.findings_digest.as_ref()),
        ("provisioning_failed", c.provisioning_failed.as_ref()),
        ("source_failed", c.source_failed.as_ref()),
        ("break_glass", c.break_glass.as_ref()),
    ]
}

fn channel_slot<'a>(c: &'a mut AlertChannels, key: &str) -> &'a mut Option<String> {
    match key {
        "watchlist_signup" => &mut c.watchlist_signup,
        "offboarded_active" => &mut c.offboarded_active,
        "new_app" => &mut c.new_app,
        "findings_digest" => &mut c.findings_digest,
        "provisioning_failed" => &mut c.provisioning_failed,
        "source_failed" => &mut c.source_failed,
        _ => &mut c.break_glass,
    }
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
            let (text, blocks) = crate::slack::views::alert::message(config, &preview);
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
    for change in changes {
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

/// The next daily digest time after `now`, at `at` local time.
pub fn next_digest(at: NaiveTime, now: DateTime<Utc>) -> DateTime<Utc> {
    let local_now = now.with_timezone(&Local);
    let mut day = local_now.date_naive();
    for _ in 0..3 {
        if let Some(t) = Local.from_local_datetime(&day.and_time(at)).earliest() {
            let t = t.with_timezone(&Utc);
            if t > now {
                return t;
            }
        }
        day = day.succ_opt().unwrap_or(day);
    }
    now + chrono::Duration::days(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = fingerprint(&["new_app", "notion"]);
        assert_eq!(a, fingerprint(&["new_app", "notion"]));
        assert!(a.starts_with("new_app-"));
        assert_ne!(a, fingerprint(&["new_app", "notio", "n"]));
    }

    #[test]
    fn the_next_digest_is_in_the_future_within_a_day() {
        let now = Utc::now();
        let at = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let next = next_digest(at, now);
        assert!(next > now && next <= now + chrono::Duration::hours(25));
        assert_eq!(next.with_timezone(&Local).time(), at);
    }
}
