//! The one place that decides how a user is told something outside a modal:
//! ephemerally where they clicked, through the interaction's `response_url`
//! (Slack shows it to them whatever channel it is, even one they are not a
//! member of), else a DM; a `response_url` Slack refuses (expired, used up)
//! also ends in a DM. Sent through the outbox, so an outage delays, never loses.
//! Also the one funnel for what a person sees when the database fails them
//! ([`failed`]), and for refused clicks ([`refuse`]), which a per-person
//! limit keeps from flooding the audit trail and the outbox.

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::app::App;
use crate::limit::Admit;
use crate::metrics;
use crate::slack::envelope::Reply;
use crate::slack::views::request::notice;
use crate::slack::views::text::section;
use crate::store::{AuditEvent, NewMessage};

/// What a click is answered with when the database could not take it.
pub const NOT_RECORDED: &str = "accessd could not record that; nothing changed. Please try again.";

/// Where a person clicked: what Slack gave us to answer them there.
#[derive(Debug, Clone, Default)]
pub struct Place {
    /// The interaction's `response_url`; absent for clicks in a view (the
    /// Home tab, a modal), which Slack gives none.
    pub response_url: Option<String>,
}

/// Tells `user` `text` where they clicked when Slack allows it, else by DM.
pub async fn tell(app: &Arc<App>, user: &str, place: &Place, text: &str) {
    let blocks = json!([section(text)]);
    let message = match &place.response_url {
        Some(url) => NewMessage::respond(url, user, text, blocks),
        None => NewMessage::post(user, text, blocks),
    };
    if let Err(err) = app.outbox.send(message).await {
        tracing::error!(user, error = %err, "could not queue a message to a user");
    }
}

/// The window of `[requests] refused_clicks_per_minute`.
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Answers a refused click: its `audit` row (if any) is written and `text`
/// told where they clicked, while `user` stays within `[requests]
/// refused_clicks_per_minute`. The first refusal past it is audited as
/// `click.limited` and they are told once; later ones within the minute are
/// dropped (counted in `accessd_limited_total`), so one person scripting
/// clicks cannot grow the audit log or hold up everyone's messages.
pub async fn refuse(
    app: &Arc<App>,
    user: &str,
    place: &Place,
    text: &str,
    audit: Option<AuditEvent>,
) {
    let limit = app.config().requests.refused_clicks_per_minute;
    match app
        .refusals
        .admit(user, limit, REFUSAL_WINDOW, Instant::now())
    {
        Admit::Yes => {
            if let Some(audit) = audit {
                append(app, audit).await;
            }
            tell(app, user, place, text).await;
        }
        Admit::JustOver => {
            let actor = audit
                .as_ref()
                .map_or(user, |a| a.actor.as_str())
                .to_string();
            let refused = audit.as_ref().map(|a| a.action.clone());
            append(
                app,
                AuditEvent::new(
                    actor,
                    "click.limited",
                    user,
                    json!({ "slack_id": user, "limit": limit, "per": "1m", "refused": refused }),
                ),
            )
            .await;
            metrics::global().limited("refused_click");
            let text = format!(
                "{text}\n\nYou have had more than {limit} refused clicks within a minute; accessd will not answer more of them for a while."
            );
            tell(app, user, place, &text).await;
        }
        Admit::Over => {
            metrics::global().limited("refused_click");
            tracing::debug!(user, "refused click dropped by the per-person limit");
        }
    }
}

async fn append(app: &Arc<App>, audit: AuditEvent) {
    let action = audit.action.clone();
    if let Err(err) = app.store.append_audit(audit).await {
        tracing::error!(error = %err, action, "could not audit a refused click");
    }
}

/// Opens `view` as a modal on the click `trigger_id` came with (Slack takes
/// it for 3 s); a failure is logged with `what` was being opened, since the
/// click itself was already acked.
pub async fn open_modal(app: &Arc<App>, trigger_id: &str, view: serde_json::Value, what: &str) {
    let body = json!({ "trigger_id": trigger_id, "view": view });
    if let Err(err) = app.api.call("views.open", &body).await {
        tracing::warn!(error = %err, "could not open the {what} modal");
    }
}

/// Where a block action happened, as far as answering the clicker goes.
pub fn place_of(event: &slack_morphism::prelude::SlackInteractionBlockActionsEvent) -> Place {
    Place {
        response_url: event
            .response_url
            .as_ref()
            .map(|url| url.0.as_str().to_string()),
    }
}

/// Where a refusal reaches the person who acted.
pub enum Where<'a> {
    /// The modal they submitted: it is replaced by a notice.
    Modal,
    /// Where they clicked (see [`tell`]).
    Clicked { user: &'a str, place: &'a Place },
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
        Where::Clicked { user, place } => {
            tell(app, user, place, wording).await;
            Reply::empty()
        }
    }
}
