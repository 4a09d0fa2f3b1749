//! `/access`: opens the request modal, or answers `/access help` ephemerally.

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::App;
use crate::slack::transport::Reply;
use crate::slack::views::text::ephemeral;

pub const HELP: &str = "*/access* — ask for access to an app.\n\
• `/access` opens the request form\n\
• `/access <app>` opens it with the app chosen (id, name or alias)\n\
• `/access help` shows this message\n\
Your open requests and active access are on the bot's *Home* tab.";

pub async fn handle(app: &Arc<App>, command: SlackCommandEvent) -> Reply {
    if command.command.0 != "/access" {
        return Reply::payload(ephemeral(&format!(
            "This app does not handle `{}`.",
            command.command.0
        )));
    }
    let text = command.text.as_deref().unwrap_or_default().trim();
    if text.eq_ignore_ascii_case("help") {
        return Reply::payload(ephemeral(HELP));
    }
    let text = (!text.is_empty()).then(|| text.to_string());
    super::request::open(app, &command.trigger_id.0, command.user_id.0, text).await
}
