//! Handlers for each Slack surface, behind one [`dispatch`] that the router
//! calls with a typed route. Handlers commit state before they return (the ack
//! follows) and push slow work (Web API calls) into [`Reply::then`].

pub mod command;
pub mod home;
pub mod request;

use std::sync::Arc;

use crate::config::Config;
use crate::outbox::Outbox;
use crate::router::Route;
use crate::slack::api::{BotIdentity, SlackApi};
use crate::slack::transport::Reply;
use crate::store::Store;

/// Action ids of the buttons the bot renders; one place so views and handlers agree.
pub mod actions {
    pub const REQUEST_ACCESS: &str = "request_access";
    /// callback_id of the request modal, and its reason field.
    pub const REQUEST_MODAL: &str = "access_request";
    pub const REASON_BLOCK: &str = "reason";
    pub const REASON_ACTION: &str = "reason_input";
}

/// Everything a handler may touch.
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub api: SlackApi,
    pub bot: BotIdentity,
    pub outbox: Outbox,
}

pub async fn dispatch(app: &Arc<App>, route: Route) -> Reply {
    match route {
        Route::Command(command) => command::handle(app, *command).await,
        Route::AppHomeOpened(event) => home::opened(app, *event).await,
        Route::BlockAction { action, event } => match action.action_id.0.as_str() {
            actions::REQUEST_ACCESS => request::open(app, event.trigger_id.0),
            other => {
                tracing::info!(action_id = other, "no handler for this action; acked");
                Reply::empty()
            }
        },
        Route::ViewSubmission(submission) => {
            match crate::router::callback_id(&submission.view.view) {
                actions::REQUEST_MODAL => request::submitted(app, *submission).await,
                other => {
                    tracing::info!(
                        callback_id = other,
                        "submission of an unknown view; closing it"
                    );
                    Reply::empty()
                }
            }
        }
        other => {
            tracing::info!(route = other.name(), "no handler for this route; acked");
            Reply::empty()
        }
    }
}
