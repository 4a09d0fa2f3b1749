//! Socket Mode envelope builders with every field Slack sends (templates: the
//! `pysm_env_*.json` / `bolt_view_submission.json` fixtures), plus view state value helpers.

use serde_json::{json, Value};

use super::*;

fn event_ts() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", now.as_secs(), now.subsec_micros())
}

fn channel_name(st: &State, channel: &str) -> String {
    if let Some(n) = st.channels.get(channel) {
        return n.clone();
    }
    if channel.starts_with('D') {
        "directmessage".into()
    } else {
        "privategroup".into()
    }
}

fn team() -> Value {
    json!({"id": TEAM_ID, "domain": TEAM_DOMAIN})
}

fn user_info(st: &State, user: &str) -> Value {
    let name = st.username(user);
    json!({"id": user, "username": name, "name": name, "team_id": TEAM_ID})
}

impl FakeSlack {
    /// A fresh `response_url` for `user` acting in `channel`.
    fn response_url(&self, kind: &str, user: &str, channel: &str) -> String {
        let mut st = self.inner.lock();
        st.hook_seq += 1;
        let path = format!("{kind}/{TEAM_ID}/{}/{}", st.hook_seq, rand_alnum(24));
        let expired = st.hooks_expired;
        st.hooks.insert(
            path.clone(),
            Hook {
                user: user.into(),
                channel: channel.into(),
                uses: 0,
                expired,
            },
        );
        format!("{}/{path}", self.hooks_base())
    }

    /// `/command text` typed in `#general`.
    pub fn slash_command(&self, user_id: &str, command: &str, text: &str) -> Value {
        self.slash_command_in(user_id, GENERAL_CHANNEL, command, text)
    }

    /// `/command text` typed in `channel_id` (a `D…` id for the app's DM).
    pub fn slash_command_in(
        &self,
        user_id: &str,
        channel_id: &str,
        command: &str,
        text: &str,
    ) -> Value {
        let response_url = self.response_url("commands", user_id, channel_id);
        let mut st = self.inner.lock();
        let trigger_id = st.issue_trigger(user_id);
        // Socket Mode forwards the form fields of a slash command as strings.
        json!({
            "envelope_id": uuid(),
            "payload": {
                "token": VERIFICATION_TOKEN,
                "team_id": TEAM_ID,
                "team_domain": TEAM_DOMAIN,
                "channel_id": channel_id,
                "channel_name": channel_name(&st, channel_id),
                "user_id": user_id,
                "user_name": st.username(user_id),
                "command": command,
                "text": text,
                "api_app_id": APP_ID,
                "is_enterprise_install": "false",
                "response_url": response_url,
                "trigger_id": trigger_id
            },
            "type": "slash_commands",
            "accepts_response_payload": true
        })
    }

    /// The user opens the app's Home tab. Carries the current Home view once one was published.
    pub fn app_home_opened(&self, user_id: &str) -> Value {
        let mut st = self.inner.lock();
        let channel = st.dm_for(user_id);
        let mut event = json!({
            "type": "app_home_opened",
            "user": user_id,
            "channel": channel,
            "tab": "home",
            "event_ts": event_ts()
        });
        if let Some(view) = st.home.get(user_id).and_then(|id| st.views.get(id)) {
            event["view"] = view.clone();
        }
        json!({
            "envelope_id": uuid(),
            "payload": {
                "token": VERIFICATION_TOKEN,
                "team_id": TEAM_ID,
                "context_team_id": TEAM_ID,
                "context_enterprise_id": null,
                "api_app_id": APP_ID,
                "event": event,
                "type": "event_callback",
                "event_id": format!("Ev{}", rand_alnum(9)),
                "event_time": unix_now(),
                "authorizations": [{
                    "enterprise_id": null,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": true,
                    "is_enterprise_install": false
                }],
                "is_ext_shared_channel": false,
                "event_context": format!("4-{}", rand_alnum(40))
            },
            "type": "events_api",
            "accepts_response_payload": false,
            "retry_attempt": 0,
            "retry_reason": ""
        })
    }

    /// A button click on `surface`: a stored message (from `messages_to` / `message`, has
    /// `channel` + `ts`) or a stored view (from `home_view` / `last_modal`, has `id`).
    pub fn block_actions(&self, user_id: &str, surface: &Value, button: &Button) -> Value {
        let action = json!({
            "action_id": button.action_id,
            "block_id": button.block_id,
            "text": {"type": "plain_text", "text": button.text, "emoji": true},
            "value": button.value,
            "type": "button",
            "action_ts": event_ts()
        });
        let is_view =
            surface["id"].is_string() && matches!(surface["type"].as_str(), Some("modal" | "home"));
        let response_url = (!is_view).then(|| {
            let channel = surface["channel"].as_str().unwrap_or_default();
            self.response_url("actions", user_id, channel)
        });
        let mut st = self.inner.lock();
        let mut payload = json!({
            "type": "block_actions",
            "user": user_info(&st, user_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": st.issue_trigger(user_id),
            "team": team(),
            "enterprise": null,
            "is_enterprise_install": false,
            "actions": [action]
        });
        if is_view {
            payload["container"] = json!({"type": "view", "view_id": surface["id"]});
            payload["view"] = surface.clone();
        } else {
            let channel = surface["channel"]
                .as_str()
                .expect("block_actions: message surface needs `channel`")
                .to_string();
            let ts = surface["ts"]
                .as_str()
                .expect("block_actions: message surface needs `ts`");
            payload["container"] = json!({
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": false
            });
            payload["channel"] = json!({"id": channel, "name": channel_name(&st, &channel)});
            let mut message = surface.clone();
            if let Some(m) = message.as_object_mut() {
                m.remove("channel");
            }
            payload["message"] = message;
            payload["state"] = json!({"values": {}});
            payload["response_url"] = response_url.into();
        }
        json!({
            "envelope_id": uuid(),
            "payload": payload,
            "type": "interactive",
            "accepts_response_payload": false
        })
    }

    /// The user submits `view` (as stored by the fake) with `values`
    /// (`{block_id: {action_id: {type, value…}}}`, see the `*_value` helpers).
    pub fn view_submission(&self, user_id: &str, view: &Value, values: Value) -> Value {
        let mut view = view.clone();
        view["state"] = json!({"values": values});
        let envelope_id = uuid();
        let mut st = self.inner.lock();
        if let Some(id) = view["id"].as_str() {
            st.pending_submissions
                .insert(envelope_id.clone(), (user_id.to_string(), id.to_string()));
        }
        json!({
            "envelope_id": envelope_id,
            "payload": {
                "type": "view_submission",
                "team": team(),
                "user": user_info(&st, user_id),
                "api_app_id": APP_ID,
                "token": VERIFICATION_TOKEN,
                "trigger_id": st.issue_trigger(user_id),
                "view": view,
                "response_urls": [],
                "is_enterprise_install": false,
                "enterprise": null
            },
            "type": "interactive",
            "accepts_response_payload": true
        })
    }
}

/// The same envelope redelivered by Slack (new envelope id, same `event_id`).
pub fn redelivery(envelope: &Value, attempt: u32, reason: &str) -> Value {
    let mut e = envelope.clone();
    e["envelope_id"] = uuid().into();
    if e.get("retry_attempt").is_some() {
        e["retry_attempt"] = attempt.into();
        e["retry_reason"] = reason.into();
    }
    e
}

/// State value of a `plain_text_input`.
pub fn plain_text_value(value: &str) -> Value {
    json!({"type": "plain_text_input", "value": value})
}

/// State value of a `static_select` with one option chosen.
pub fn static_select_value(value: &str, text: &str) -> Value {
    json!({
        "type": "static_select",
        "selected_option": {
            "text": {"type": "plain_text", "text": text, "emoji": true},
            "value": value
        }
    })
}

/// State value of a `multi_users_select`.
pub fn multi_users_value(users: &[&str]) -> Value {
    json!({"type": "multi_users_select", "selected_users": users})
}

/// Builds `{block_id: {action_id: value}}` from triples.
pub fn state_values(entries: &[(&str, &str, Value)]) -> Value {
    let mut out = json!({});
    for (block, action, value) in entries {
        if !out[*block].is_object() {
            out[*block] = json!({});
        }
        out[*block][*action] = value.clone();
    }
    out
}
