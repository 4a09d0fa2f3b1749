//! `/access`: asks for the request modal, or answers `/access help` ephemerally.

use slack_morphism::prelude::*;

use crate::slack::envelope::Reply;
use crate::slack::views::text::ephemeral;

pub const HELP: &str = "*/access* — ask for access to an app.\n\
• `/access` opens the request form\n\
• `/access <app>` opens it with the app chosen (id, name or alias)\n\
• `/access <app> <role> <duration> <reason>` files it in one line, e.g. `/access github read 4h the deploy is stuck`\n\
• `/access help` shows this message\n\
Your open requests and active access are on the bot's *Home* tab.";

/// What `/access TEXT` asks for: the request modal, preselected with TEXT
/// when there is one (`Ok`), or an ephemeral answer (`Err`: help, or a
/// command that is not ours).
pub fn parse(command: &SlackCommandEvent) -> Result<Option<String>, Reply> {
    if command.command.0 != "/access" {
        return Err(Reply::payload(ephemeral(&format!(
            "This app does not handle `{}`.",
            command.command.0
        ))));
    }
    let text = command.text.as_deref().unwrap_or_default().trim();
    if text.eq_ignore_ascii_case("help") {
        return Err(Reply::payload(ephemeral(HELP)));
    }
    Ok((!text.is_empty()).then(|| text.to_string()))
}
