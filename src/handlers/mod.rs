//! Handlers for each Slack surface, behind one [`dispatch`] that the router
//! calls with a typed route. Handlers commit state before they return (the ack
//! follows) and push slow work (Web API calls) into [`Reply::then`].

pub mod access;
pub mod alert;
pub mod approval;
pub mod command;
pub mod home;
pub mod request;
pub mod requester;
pub mod review;
pub mod tell;

use std::sync::Arc;

pub use crate::app::{App, AppParts, Live};
use crate::router::Route;
use crate::slack::transport::Reply;

/// The ids moved to `slack::ids`; this path stays for existing callers.
pub use crate::slack::ids as actions;

pub async fn dispatch(app: &Arc<App>, route: Route) -> Reply {
    match route {
        Route::Command(command) => command::handle(app, *command).await,
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
                actions::ALERT_ACK
                | actions::ALERT_WATCH
                | actions::ALERT_IGNORE
                | actions::ALERT_REVOKE => {
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
        Route::ViewSubmission(submission) => {
            match crate::router::callback_id(&submission.view.view) {
                actions::REQUEST_MODAL => request::submitted(app, *submission).await,
                actions::APPROVE_MODAL | actions::REJECT_MODAL => {
                    approval::submitted(app, *submission).await
                }
                actions::EXTEND_MODAL => access::extend_submitted(app, *submission).await,
                actions::REVIEW_COMMENT_MODAL => review::comment_submitted(app, *submission).await,
                actions::REVIEW_REASSIGN_MODAL => {
                    review::reassign_submitted(app, *submission).await
                }
                other => {
                    tracing::info!(
                        callback_id = other,
                        "submission of an unknown view; closing it"
                    );
                    Reply::empty()
                }
            }
        }
        Route::BlockSuggestion(suggestion) if suggestion.action_id.0 == actions::APP_ACTION => {
            Reply::payload(crate::slack::views::request::app_options(
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

/// The clicking user's id; Slack always sends it for clicks in views and messages.
pub fn user_of(event: &slack_morphism::prelude::SlackInteractionBlockActionsEvent) -> String {
    event
        .user
        .as_ref()
        .map(|u| u.id.0.clone())
        .unwrap_or_default()
}
