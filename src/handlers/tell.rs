//! The one place that decides how a user is told something outside a modal:
//! an ephemeral message where they clicked when Slack allows it (a channel or
//! DM), else a DM. Sent through the outbox, so an outage delays, never loses.

use std::sync::Arc;

use serde_json::json;

use super::App;
use crate::slack::views::text::section;
use crate::store::NewMessage;

/// What a click is answered with when the database could not take it.
pub const NOT_RECORDED: &str = "accessd could not record that; nothing changed. Please try again.";

/// Tells `user` `text`, ephemerally in `channel` when there is one.
pub async fn tell(app: &Arc<App>, user: &str, channel: Option<&str>, text: &str) {
    let message = match channel {
        Some(channel) => NewMessage {
            method: "chat.postEphemeral".into(),
            channel: user.into(),
            payload: json!({ "channel": channel, "user": user, "text": text, "blocks": [section(text)] }),
            dedupe_key: None,
            on_sent: None,
        },
        None => NewMessage::post(user, text, json!([section(text)])),
    };
    if let Err(err) = app.outbox.send(message).await {
        tracing::error!(user, error = %err, "could not queue a message to a user");
    }
}

/// The channel a block action happened in, if it was a message (not a view).
pub fn channel_of(
    event: &slack_morphism::prelude::SlackInteractionBlockActionsEvent,
) -> Option<String> {
    event.channel.as_ref().map(|c| c.id.0.clone())
}
