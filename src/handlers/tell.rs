//! The one place that decides how a user is told something outside a modal:
//! an ephemeral message where they clicked when Slack allows it (a channel or
//! DM), else a DM. Sent through the outbox, so an outage delays, never loses.
//! Also the one funnel for what a person sees when the database fails them
//! ([`failed`]).

use std::sync::Arc;

use std::fmt::Display;

use serde_json::json;

use crate::app::App;
use crate::slack::envelope::Reply;
use crate::slack::views::request::notice;
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

/// Where a refusal reaches the person who acted.
pub enum Where<'a> {
    /// The modal they submitted: it is replaced by a notice.
    Modal,
    /// Where they clicked: ephemerally in that channel, else a DM.
    Clicked {
        user: &'a str,
        channel: Option<&'a str>,
    },
}

/// Logs why the database could not do what a handler was `doing` and returns
/// `wording`, the words the person is told instead.
pub fn logged<'w>(err: impl Display, doing: &str, wording: &'w str) -> &'w str {
    tracing::error!(error = %err, "could not {doing}");
    wording
}

/// The answer to a handler's database error: logged, and the person told
/// `wording` where they acted.
pub async fn failed(
    app: &Arc<App>,
    err: impl Display,
    doing: &str,
    wording: &str,
    at: Where<'_>,
) -> Reply {
    let wording = logged(err, doing, wording);
    match at {
        Where::Modal => Reply::update(notice(wording)),
        Where::Clicked { user, channel } => {
            tell(app, user, channel, wording).await;
            Reply::empty()
        }
    }
}
