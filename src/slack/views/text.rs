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

pub fn context(text: &str) -> Value {
    json!({ "type": "context", "elements": [mrkdwn(text)] })
}

pub fn divider() -> Value {
    json!({ "type": "divider" })
}

pub fn styled_button(text: &str, action_id: &str, value: &str, style: &str) -> Value {
    let mut b = button(text, action_id, value);
    b["style"] = style.into();
    b
}

/// A section with a button on its right.
pub fn section_with_button(text: &str, button: Value) -> Value {
    json!({ "type": "section", "text": mrkdwn(text), "accessory": button })
}

/// `2h`, `1d 4h`: humantime's form without seconds noise.
pub fn fmt_duration(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}

/// A time as Slack shows it in the reader's own time zone.
pub fn fmt_time(t: chrono::DateTime<chrono::Utc>) -> String {
    let fallback = t.format("%Y-%m-%d %H:%M UTC").to_string();
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{fallback}>",
        t.timestamp()
    )
}

pub fn mention(slack_id: &str) -> String {
    format!("<@{slack_id}>")
}

/// Block Kit text fields are capped (3000 in sections); long user text is cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Escapes outside text (a source's names, an error) so it cannot inject
/// mentions or links, and clips it to `max` characters.
pub fn escape(text: &str, max: usize) -> String {
    clip(text, max)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Quotes user-supplied text so it cannot inject mentions or formatting.
pub fn quote(text: &str) -> String {
    escape(text, 2000)
        .lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
