//! Envelope → typed [`Route`] → handler. Each envelope is parsed once here;
//! handlers receive slack-morphism's typed models, never raw JSON.

use serde::Deserialize;
use serde_json::Value;
use slack_morphism::prelude::*;
use std::sync::Arc;

use crate::app::App;
use crate::handlers::{
    access, alert, approval, command, home, request, requester, review, user_of,
};
use crate::slack::ids as actions;
use crate::slack::transport::{Envelope, EnvelopeHandler, Reply};
use crate::slack::views;

/// What an envelope asks of the bot.
#[derive(Debug)]
pub enum Route {
    Command(Box<SlackCommandEvent>),
    /// A click on a button or a choice in a select; `action` is the element that fired.
    BlockAction {
        action: Box<SlackInteractionActionInfo>,
        event: Box<SlackInteractionBlockActionsEvent>,
    },
    ViewSubmission(Box<SlackInteractionViewSubmissionEvent>),
    ViewClosed(Box<SlackInteractionViewClosedEvent>),
    BlockSuggestion(Box<SlackInteractionBlockSuggestionEvent>),
    Shortcut(Box<SlackInteractionShortcutEvent>),
    AppHomeOpened(Box<SlackAppHomeOpenedEvent>),
    /// An Events API event the bot does not subscribe to.
    OtherEvent(String),
    /// A known envelope type with nothing for the bot to do (e.g. dialog submissions).
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown envelope type `{0}`")]
    UnknownType(String),
    #[error("malformed {kind} envelope: {reason}")]
    Malformed { kind: String, reason: String },
}

impl Route {
    /// A short name for logs and metrics: the kind plus the action or callback id.
    pub fn name(&self) -> String {
        match self {
            Route::Command(c) => format!("command {}", c.command.0),
            Route::BlockAction { action, .. } => format!("action {}", action.action_id.0),
            Route::ViewSubmission(v) => format!("view_submission {}", callback_id(&v.view.view)),
            Route::ViewClosed(v) => format!("view_closed {}", callback_id(&v.view.view)),
            Route::BlockSuggestion(s) => format!("block_suggestion {}", s.action_id.0),
            Route::Shortcut(s) => format!("shortcut {}", s.callback_id.0),
            Route::AppHomeOpened(_) => "event app_home_opened".into(),
            Route::OtherEvent(kind) => format!("event {kind}"),
            Route::Ignored(kind) => (*kind).into(),
        }
    }
}

/// The `callback_id` a view was opened with; empty when it had none.
pub fn callback_id(view: &SlackView) -> &str {
    let id = match view {
        SlackView::Modal(modal) => modal.callback_id.as_ref(),
        SlackView::Home(home) => home.callback_id.as_ref(),
    };
    id.map(|id| id.0.as_str()).unwrap_or_default()
}

/// Hands a typed route to the handler of its surface.
pub async fn dispatch(app: &Arc<App>, route: Route) -> Reply {
    // Whoever acts is authorised against user groups read within a minute.
    if matches!(
        route,
        Route::Command(_)
            | Route::BlockAction { .. }
            | Route::ViewSubmission(_)
            | Route::Shortcut(_)
            | Route::AppHomeOpened(_)
    ) {
        app.usergroups_for_click().await;
    }
    match route {
        Route::Command(command) => match command::parse(&command) {
            Ok(text) => request::open(app, &command.trigger_id.0, command.user_id.0, text).await,
            Err(reply) => reply,
        },
        Route::AppHomeOpened(event) => home::opened(app, *event).await,
        Route::BlockAction { action, event } => {
            let value = action.value.clone().unwrap_or_default();
            match action.action_id.0.as_str() {
                actions::REQUEST_ACCESS => {
                    request::open(app, &event.trigger_id.0, user_of(&event), None).await
                }
                actions::HOME_PAGE => home::page(app, user_of(&event), &value),
                actions::APPROVE | actions::REJECT => {
                    approval::clicked(app, &action.action_id.0, &value, *event).await
                }
                actions::NUDGE => requester::nudge(app, &value, *event).await,
                actions::CANCEL => requester::cancel(app, &value, *event).await,
                actions::EXTEND => access::extend_clicked(app, &value, *event).await,
                actions::RELEASE | actions::REVOKE => {
                    access::revoke(app, &action.action_id.0, &value, *event).await
                }
                actions::TASK_DONE | actions::TASK_FAILED => {
                    access::task(app, &action.action_id.0, &value, *event).await
                }
                actions::REMOVAL_DONE | actions::REMOVAL_FAILED => {
                    access::removal(app, &action.action_id.0, &value, *event).await
                }
                actions::ALERT_ACK
                | actions::ALERT_WATCH
                | actions::ALERT_IGNORE
                | actions::ALERT_REVOKE
                | actions::ALERT_DEACTIVATE => {
                    alert::clicked(app, &action.action_id.0, &value, *event).await
                }
                actions::DIGEST_ACK => alert::digest_clicked(app, &value, *event).await,
                actions::REVIEW_KEEP | actions::REVIEW_REVOKE => {
                    review::decide_clicked(app, &action.action_id.0, &value, *event).await
                }
                actions::REVIEW_KEEP_ALL => review::keep_all(app, &value, *event).await,
                actions::REVIEW_REASSIGN_ALL => {
                    review::reassign_all_clicked(app, &value, *event).await
                }
                actions::REVIEW_MORE => {
                    let selected = action
                        .selected_option
                        .as_ref()
                        .map(|o| o.value.clone())
                        .unwrap_or_default();
                    review::more_clicked(app, &selected, *event).await
                }
                // A link button: the browser opened the page; nothing to do.
                actions::ALERT_OPEN => Reply::empty(),
                // Selects inside the request modal fire block actions too; the
                // modal reads them on submission.
                actions::APP_ACTION | actions::ROLES_ACTION | actions::APPROVERS_ACTION => {
                    Reply::empty()
                }
                other => {
                    tracing::info!(action_id = other, "no handler for this action; acked");
                    Reply::empty()
                }
            }
        }
        Route::ViewSubmission(submission) => match callback_id(&submission.view.view) {
            actions::REQUEST_MODAL => request::submitted(app, *submission).await,
            actions::APPROVE_MODAL | actions::REJECT_MODAL => {
                approval::submitted(app, *submission).await
            }
            actions::EXTEND_MODAL => access::extend_submitted(app, *submission).await,
            actions::REVIEW_COMMENT_MODAL => review::comment_submitted(app, *submission).await,
            actions::REVIEW_REASSIGN_MODAL => review::reassign_submitted(app, *submission).await,
            other => {
                tracing::info!(
                    callback_id = other,
                    "submission of an unknown view; closing it"
                );
                Reply::empty()
            }
        },
        Route::BlockSuggestion(suggestion) if suggestion.action_id.0 == actions::APP_ACTION => {
            Reply::payload(views::request::app_options(
                &app.config(),
                &suggestion.value,
            ))
        }
        other => {
            tracing::info!(route = other.name(), "no handler for this route; acked");
            Reply::empty()
        }
    }
}

pub fn parse(envelope: &Envelope) -> Result<Route, RouteError> {
    let malformed = |err: serde_json::Error| RouteError::Malformed {
        kind: envelope.kind.clone(),
        reason: err.to_string(),
    };
    let payload = envelope.frame.get("payload").unwrap_or(&Value::Null);
    match envelope.kind.as_str() {
        "slash_commands" => Ok(Route::Command(Box::new(
            SlackCommandEvent::deserialize(payload).map_err(malformed)?,
        ))),
        "interactive" => Ok(
            match SlackInteractionEvent::deserialize(payload).map_err(malformed)? {
                SlackInteractionEvent::BlockActions(event) => {
                    let action = event
                        .actions
                        .as_ref()
                        .and_then(|actions| actions.first().cloned())
                        .ok_or_else(|| RouteError::Malformed {
                            kind: "block_actions".into(),
                            reason: "no action".into(),
                        })?;
                    Route::BlockAction {
                        action: Box::new(action),
                        event: Box::new(event),
                    }
                }
                SlackInteractionEvent::ViewSubmission(event) => {
                    Route::ViewSubmission(Box::new(event))
                }
                SlackInteractionEvent::ViewClosed(event) => Route::ViewClosed(Box::new(event)),
                SlackInteractionEvent::BlockSuggestion(event) => {
                    Route::BlockSuggestion(Box::new(event))
                }
                SlackInteractionEvent::Shortcut(event) => Route::Shortcut(Box::new(event)),
                SlackInteractionEvent::DialogSubmission(_) => Route::Ignored("dialog_submission"),
                SlackInteractionEvent::MessageAction(_) => Route::Ignored("message_action"),
            },
        ),
        "events_api" => {
            let event_type = payload
                .pointer("/event/type")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            if event_type != "app_home_opened" {
                // Parsed no further: slack-morphism does not model every event type.
                return Ok(Route::OtherEvent(event_type));
            }
            let callback = SlackPushEventCallback::deserialize(payload).map_err(malformed)?;
            match callback.event {
                SlackEventCallbackBody::AppHomeOpened(event) => {
                    Ok(Route::AppHomeOpened(Box::new(event)))
                }
                _ => Ok(Route::OtherEvent(event_type)),
            }
        }
        other => Err(RouteError::UnknownType(other.to_string())),
    }
}

/// Parses and dispatches envelopes for the transport.
pub struct Router {
    app: Arc<App>,
}

impl Router {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

impl EnvelopeHandler for Router {
    async fn handle(&self, envelope: Envelope) -> Reply {
        let route = match parse(&envelope) {
            Ok(route) => route,
            Err(err) => {
                tracing::warn!(envelope_id = envelope.envelope_id, error = %err, "envelope not understood; acked");
                return Reply::empty();
            }
        };
        tracing::debug!(
            envelope_id = envelope.envelope_id,
            route = route.name(),
            "dispatching"
        );
        dispatch(&self.app, route).await
    }
}
