//! The request modal.

use serde_json::{json, Value};

use super::text::{plain, section};
use crate::handlers::actions::{REASON_ACTION, REASON_BLOCK, REQUEST_MODAL};

/// First step of a request. Until the catalog-driven steps land it asks for
/// the reason only and tells the requester requests are not recorded yet.
pub fn request_modal() -> Value {
    json!({
        "type": "modal",
        "callback_id": REQUEST_MODAL,
        "title": plain("Request access"),
        "submit": plain("Next"),
        "close": plain("Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": plain("Why do you need access?"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION,
                    "multiline": true,
                    "max_length": 2000,
                },
            },
            { "type": "context", "elements": [{ "type": "mrkdwn", "text": "Requests are not recorded yet: approvals arrive in the next release." }] },
        ],
    })
}

/// Replaces the modal once submitted.
pub fn request_received() -> Value {
    json!({
        "type": "modal",
        "title": plain("Request access"),
        "close": plain("Close"),
        "blocks": [section("Thanks. Access requests from Slack are coming soon; nothing was recorded.")],
    })
}
