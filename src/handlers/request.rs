//! The request modal: opened from the Home tab or `/access`, validated inline.

use std::sync::Arc;

use serde_json::json;
use slack_morphism::prelude::*;

use super::actions::{REASON_ACTION, REASON_BLOCK};
use super::App;
use crate::slack::transport::Reply;
use crate::slack::views::request::{request_modal, request_received};

/// Shorter reasons do not tell an approver anything.
const MIN_REASON_CHARS: usize = 10;

/// Opens the modal after the ack; `trigger_id` is valid 3 s and once, so no retry.
pub fn open(app: &Arc<App>, trigger_id: String) -> Reply {
    let api = app.api.clone();
    Reply::empty().then(async move {
        let body = json!({ "trigger_id": trigger_id, "view": request_modal() });
        if let Err(err) = api.call("views.open", &body).await {
            tracing::warn!(error = %err, "could not open the request modal");
        }
    })
}

pub async fn submitted(_app: &Arc<App>, submission: SlackInteractionViewSubmissionEvent) -> Reply {
    let reason = submission
        .view
        .state_params
        .state
        .as_ref()
        .and_then(|state| state.values.get(&SlackBlockId(REASON_BLOCK.into())))
        .and_then(|block| block.get(&SlackActionId(REASON_ACTION.into())))
        .and_then(|input| input.value.clone())
        .unwrap_or_default();
    if reason.trim().chars().count() < MIN_REASON_CHARS {
        return Reply::payload(json!({
            "response_action": "errors",
            "errors": { REASON_BLOCK: format!("Please give a reason of at least {MIN_REASON_CHARS} characters.") },
        }));
    }
    Reply::payload(json!({ "response_action": "update", "view": request_received() }))
}
