//! The App Home tab.

use serde_json::{json, Value};

use super::text::{actions, button, header, section};
use crate::handlers::actions as ids;

/// The Home tab as published on `app_home_opened`. The request lists join it
/// once requests exist; until then it offers the entry point only.
pub fn home_view() -> Value {
    json!({
        "type": "home",
        "blocks": [
            header("Access"),
            section("Ask for access to an app; approvers decide right here in Slack."),
            actions("home_actions", vec![button("Request access", ids::REQUEST_ACCESS, "home")]),
        ],
    })
}
