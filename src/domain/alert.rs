//! The alert vocabulary: kinds and their titles, stable fingerprints, which
//! channel a kind is routed to, and when the daily digest runs. Pure: the
//! use cases live in `alerts`, rendering in `slack::views::alert`.

use std::collections::HashMap;

use chrono::{DateTime, Local, NaiveTime, TimeZone, Utc};
use sha2::{Digest, Sha256};

use crate::config::{AlertChannels, Config, SourceKind};

pub mod kind {
    pub const WATCHLIST_SIGNUP: &str = "watchlist_signup";
    pub const OFFBOARDED_ACTIVE: &str = "offboarded_active";
    pub const NEW_APP: &str = "new_app";
    pub const SOURCE_FAILED: &str = "source_failed";
    pub const MASS_CHANGE: &str = "mass_change";
    pub const FINDINGS_DIGEST: &str = "findings_digest";
    /// A new owner, admin or guest of the Slack workspace.
    pub const PRIVILEGED: &str = "privileged";

    /// Kinds listed in the digest, in its order.
    pub const FINDINGS: [&str; 6] = [
        OFFBOARDED_ACTIVE,
        PRIVILEGED,
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
            PRIVILEGED => "New Slack owners, admins and guests",
            SOURCE_FAILED => "Failing sources",
            _ => "Other findings",
        }
    }
}

/// Subject of the daily digest timer.
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
        kind::PRIVILEGED => &channels.privileged,
        _ => &None,
    };
    routed(channel.as_ref())
}

/// The channel itself when it is set to something, `None` for unset or blank:
/// a blank entry turns a kind's posts off.
pub fn routed(channel: Option<&String>) -> Option<&String> {
    channel.filter(|c| !c.trim().is_empty())
}

/// Whether the Revoke button makes sense: the app is in the catalog (so it
/// has owners and a provisioner or a manual task).
pub fn revocable(config: &Config, app: &str) -> bool {
    config.app(app).is_some()
}

/// Whether **Deactivate in Slack** makes sense: the account was listed by a
/// `slack` source that has a SCIM token.
pub fn deactivatable(config: &Config, source_id: Option<&str>) -> bool {
    source_id.and_then(|id| config.source(id)).is_some_and(|s| {
        matches!(
            &s.kind,
            SourceKind::Slack {
                scim_token_file: Some(_),
                ..
            }
        )
    })
}

/// Whether any `[alerts.channels]` entry is a `#name` to resolve.
pub fn names_channels(channels: &AlertChannels) -> bool {
    channel_entries(channels)
        .iter()
        .any(|(_, value)| value.is_some_and(|v| v.trim().starts_with('#')))
}

/// Replaces every `#name` by its id from `by_name` (lowercased channel name →
/// id), with the (name, id) pairs used; an unknown name is an error naming
/// the key.
pub fn resolve_names(
    channels: &AlertChannels,
    by_name: &HashMap<String, String>,
) -> Result<(AlertChannels, Vec<(String, String)>), String> {
    let mut resolved = channels.clone();
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for (key, value) in channel_entries(channels) {
        let Some(name) = value.and_then(|v| v.trim().strip_prefix('#').map(str::to_lowercase))
        else {
            continue;
        };
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

fn channel_entries(c: &AlertChannels) -> [(&'static str, Option<&String>); 8] {
    [
        ("watchlist_signup", c.watchlist_signup.as_ref()),
        ("offboarded_active", c.offboarded_active.as_ref()),
        ("new_app", c.new_app.as_ref()),
        ("findings_digest", c.findings_digest.as_ref()),
        ("provisioning_failed", c.provisioning_failed.as_ref()),
        ("source_failed", c.source_failed.as_ref()),
        ("break_glass", c.break_glass.as_ref()),
        ("privileged", c.privileged.as_ref()),
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
        "privileged" => &mut c.privileged,
        _ => &mut c.break_glass,
    }
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
