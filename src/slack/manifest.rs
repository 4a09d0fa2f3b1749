//! The Slack app manifest printed by `accessd manifest`: exactly what the
//! daemon uses, so an admin can paste it into "Create app from manifest".
//! The base scopes are always needed; a config adds the ones its features
//! call ([`scopes_for`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::config::{Config, ProvisionerKind, SourceKind};

/// Bot scopes, each needed by a call the daemon makes:
/// `chat:write` (DMs, alert posts, chat.update, ephemerals), `im:write`
/// (conversations.open for DMs), `commands` (`/access`), `users:read` and
/// `users:read.email` (users.info / users.lookupByEmail to link people by email),
/// `channels:read` and `groups:read` (conversations.list, to resolve the
/// `#name`s of `[alerts.channels]` at start-up).
pub const BOT_SCOPES: &[&str] = &[
    "channels:read",
    "chat:write",
    "commands",
    "groups:read",
    "im:write",
    "users:read",
    "users:read.email",
];

/// The bot scopes `config` needs beyond [`BOT_SCOPES`], each for a call it
/// makes with the daemon's own bot token: `usergroups:read` (a `slack`
/// source's `usergroups.list`, `usergroup:` approvers' `usergroups.users.list`,
/// a `slack_usergroup` provisioner's reads), `usergroups:write` (its
/// `usergroups.users.update`), `team:read` (a `slack` source's `team.info`).
/// A source or provisioner with its own `token_file` calls another app.
pub fn scopes_for(config: &Config) -> BTreeSet<&'static str> {
    let mut scopes = BTreeSet::new();
    if !config.usergroup_uses().is_empty() {
        scopes.insert("usergroups:read");
    }
    for source in &config.sources {
        if let SourceKind::Slack {
            token_file: None, ..
        } = source.kind
        {
            scopes.extend(["usergroups:read", "team:read"]);
        }
    }
    for provisioner in &config.provisioners {
        if let ProvisionerKind::SlackUsergroup {
            token_file: None, ..
        } = provisioner.kind
        {
            scopes.extend(["usergroups:read", "usergroups:write"]);
        }
    }
    scopes
}

/// Events the daemon subscribes to.
pub const BOT_EVENTS: &[&str] = &["app_home_opened"];

/// The manifest with the base scopes and `extra` ones.
pub fn manifest(name: &str, extra: &BTreeSet<&'static str>) -> Value {
    let scopes: BTreeSet<&str> = BOT_SCOPES
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect();
    json!({
        "_metadata": { "major_version": 1, "minor_version": 1 },
        "display_information": {
            "name": name,
            "description": "Access requests, approvals, just-in-time grants and access reviews, self-hosted.",
            "background_color": "#1d3557",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": true,
                "messages_tab_enabled": true,
                "messages_tab_read_only_enabled": true,
            },
            "bot_user": { "display_name": name, "always_online": true },
            "slash_commands": [{
                "command": "/access",
                "description": "Request access to an app",
                "usage_hint": "[app] | help",
                "should_escape": false,
            }],
        },
        "oauth_config": { "scopes": { "bot": scopes } },
        "settings": {
            "event_subscriptions": { "bot_events": BOT_EVENTS },
            "interactivity": { "is_enabled": true },
            "org_deploy_enabled": false,
            "socket_mode_enabled": true,
            "token_rotation_enabled": false,
        },
    })
}

/// Printed beside the manifest (on stderr) because the manifest cannot carry it.
pub const APP_TOKEN_NOTE: &str = "After creating the app: Basic Information → App-Level Tokens → generate a token \
with the `connections:write` scope (SLACK_APP_TOKEN, xapp-…); install the app to the workspace for the bot \
token (SLACK_BOT_TOKEN, xoxb-…). Invite the bot to each alert channel (/invite @accessd).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_enables_socket_mode_command_home_and_interactivity() {
        let m = manifest("accessd", &BTreeSet::new());
        assert_eq!(m["settings"]["socket_mode_enabled"], true);
        assert_eq!(m["settings"]["interactivity"]["is_enabled"], true);
        assert_eq!(m["features"]["app_home"]["home_tab_enabled"], true);
        assert_eq!(m["features"]["slash_commands"][0]["command"], "/access");
        assert_eq!(
            m["settings"]["event_subscriptions"]["bot_events"][0],
            "app_home_opened"
        );
        let scopes: Vec<&str> = m["oauth_config"]["scopes"]["bot"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(scopes, BOT_SCOPES);
        assert!(m
            .get("settings")
            .and_then(|s| s.get("request_url"))
            .is_none());
    }
}
