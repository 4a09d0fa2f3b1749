//! Acting as a Slack user: read what the bot showed (Home tab, modals, DMs), find a button
//! by its visible text, click it, submit a modal.

use serde_json::Value;

use super::*;

/// A button as found in a message or view.
#[derive(Debug, Clone, PartialEq)]
pub struct Button {
    pub action_id: String,
    pub block_id: String,
    pub value: Option<String>,
    /// Visible text.
    pub text: String,
    pub style: Option<String>,
    pub url: Option<String>,
}

fn blocks_of(surface: &Value) -> &[Value] {
    match surface {
        Value::Array(a) => a,
        other => other["blocks"].as_array().map(Vec::as_slice).unwrap_or(&[]),
    }
}

/// Every button in a blocks array, message or view, top to bottom (section accessories and
/// `actions` elements).
pub fn buttons(surface: &Value) -> Vec<Button> {
    let mut out = Vec::new();
    for block in blocks_of(surface) {
        let block_id = block["block_id"].as_str().unwrap_or_default();
        let elements: Vec<&Value> = match block["type"].as_str() {
            Some("section") => block.get("accessory").into_iter().collect(),
            Some("actions") => block["elements"].as_array().into_iter().flatten().collect(),
            _ => Vec::new(),
        };
        for e in elements.into_iter().filter(|e| e["type"] == "button") {
            out.push(Button {
                action_id: e["action_id"].as_str().unwrap_or_default().to_string(),
                block_id: block_id.to_string(),
                value: e["value"].as_str().map(str::to_string),
                text: e["text"]["text"].as_str().unwrap_or_default().to_string(),
                style: e["style"].as_str().map(str::to_string),
                url: e["url"].as_str().map(str::to_string),
            });
        }
    }
    out
}

/// The first button whose visible text is `text` (surrounding whitespace ignored).
pub fn find_button(surface: &Value, text: &str) -> Option<Button> {
    buttons(surface)
        .into_iter()
        .find(|b| b.text.trim() == text.trim())
}

impl FakeSlack {
    /// The latest Home tab published for `user` (stored form: has `id`, `hash`, …).
    pub fn home_view(&self, user: &str) -> Option<Value> {
        let st = self.inner.lock();
        st.home.get(user).and_then(|id| st.views.get(id)).cloned()
    }

    /// The modal on top of `user`'s stack (None once it was closed).
    pub fn last_modal(&self, user: &str) -> Option<Value> {
        let st = self.inner.lock();
        st.modal_stacks
            .get(user)
            .and_then(|s| s.last())
            .and_then(|id| st.views.get(id))
            .cloned()
    }

    /// Messages the bot posted to a channel, or to a user's DM when given a user id:
    /// current versions (after `chat.update`), deleted ones left out, oldest first.
    /// Each has `channel` and `ts`, so it can be passed to `click`.
    pub fn messages_to(&self, user_or_channel: &str) -> Vec<Value> {
        let st = self.inner.lock();
        let channel = if user_or_channel.starts_with('U') || user_or_channel.starts_with('W') {
            match st.dms.get(user_or_channel) {
                Some(d) => d.clone(),
                None => return Vec::new(),
            }
        } else {
            user_or_channel.to_string()
        };
        st.messages
            .iter()
            .filter(|m| m.channel == channel && !m.deleted)
            .map(|m| m.message.clone())
            .collect()
    }

    pub fn last_message_to(&self, user_or_channel: &str) -> Option<Value> {
        self.messages_to(user_or_channel).pop()
    }

    /// Clicks the button labelled `text` on `surface` (a message from `messages_to` or a
    /// view from `home_view` / `last_modal`) as `user`; returns the envelope id.
    pub fn click(&self, user: &str, surface: &Value, text: &str) -> String {
        let button = find_button(surface, text).unwrap_or_else(|| {
            let seen: Vec<String> = buttons(surface).into_iter().map(|b| b.text).collect();
            panic!("fake Slack: no button {text:?}; buttons here: {seen:?}")
        });
        let envelope = self.block_actions(user, surface, &button);
        self.send_envelope(None, envelope)
    }

    /// Submits `view` with state `values` as `user`; returns the envelope id. The ack's
    /// `response_action` is applied to the modal stack as Slack would.
    pub fn submit(&self, user: &str, view: &Value, values: Value) -> String {
        let envelope = self.view_submission(user, view, values);
        self.send_envelope(None, envelope)
    }

    /// Opens the Home tab as `user` (sends `app_home_opened`); returns the envelope id.
    pub fn open_home(&self, user: &str) -> String {
        let envelope = self.app_home_opened(user);
        self.send_envelope(None, envelope)
    }

    /// Types `/command text` in `#general` as `user`; returns the envelope id.
    pub fn run_command(&self, user: &str, command: &str, text: &str) -> String {
        let envelope = self.slash_command(user, command, text);
        self.send_envelope(None, envelope)
    }
}
