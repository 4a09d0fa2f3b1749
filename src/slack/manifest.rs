//! The Slack app manifest printed by `accessd manifest`: exactly what the
//! daemon uses, so an admin can paste it into "Create app from manifest".

use serde_json::{json, Value};

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

/// Events the daemon subscribes to.
pub const BOT_EVENTS: &[&str] = &["app_home_opened"];

pub fn manifest(name: &str) -> Value {
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
        "oauth_config": { "scopes": { "bot": BOT_SCOPES } },
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
        let m = manifest("accessd");
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
