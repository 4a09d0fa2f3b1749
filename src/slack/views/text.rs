//! Small Block Kit pieces shared by every view: text objects, sections, buttons.

use serde_json::{json, Value};

pub fn plain(text: &str) -> Value {
    json!({ "type": "plain_text", "text": text, "emoji": true })
}

pub fn mrkdwn(text: &str) -> Value {
    json!({ "type": "mrkdwn", "text": text })
}

pub fn section(text: &str) -> Value {
    json!({ "type": "section", "text": mrkdwn(text) })
}

pub fn header(text: &str) -> Value {
    json!({ "type": "header", "text": plain(text) })
}

pub fn button(text: &str, action_id: &str, value: &str) -> Value {
    json!({ "type": "button", "text": plain(text), "action_id": action_id, "value": value })
}

pub fn actions(block_id: &str, elements: Vec<Value>) -> Value {
    json!({ "type": "actions", "block_id": block_id, "elements": elements })
}

/// An ephemeral reply carried in a slash command's ack.
pub fn ephemeral(text: &str) -> Value {
    json!({ "response_type": "ephemeral", "text": text })
}
