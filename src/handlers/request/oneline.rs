//! `/access APP ROLE DURATION REASON…` in one line: filed at once when the
//! app, the role (for apps that have roles), a duration within the cap and
//! a reason of the minimum length all parse without doubt, and answered
//! ephemerally with the ticket's reference; otherwise the request modal
//! opens with whatever did parse filled in. The same checks as the modal
//! apply (who may request, the current policy, duplicates); break-glass is
//! never filed from one line.

use std::sync::Arc;
use std::time::Duration;

use super::submit::{file, Filed};
use super::{Draft, Step, MIN_REASON_CHARS};
use crate::app::App;
use crate::config::{AppConfig, Config};
use crate::domain::policy;
use crate::handlers::tell::logged;
use crate::handlers::who::{requester_email, Who};
use crate::slack::envelope::Reply;
use crate::slack::modal::checked_duration;
use crate::slack::views::text::ephemeral;

/// What a line after `/access` says, as far as it parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    pub(super) app: String,
    pub(super) roles: Vec<String>,
    pub(super) duration: Option<Duration>,
    pub(super) reason: String,
}

impl Line {
    /// Every part parsed: the request can be filed as it stands.
    fn complete(&self, found: &AppConfig) -> bool {
        // A required reference has no place in a line: the form asks for it.
        !found.reference.as_ref().is_some_and(|r| r.required)
            && (found.roles.is_empty() || !self.roles.is_empty())
            && self.duration.is_some()
            && self.reason.chars().count() >= MIN_REASON_CHARS
    }

    /// The modal's draft, starting at the roles step with what parsed.
    pub(super) fn draft(&self) -> Draft {
        Draft {
            step: Step::Roles,
            app: Some(self.app.clone()),
            roles: self.roles.clone(),
            reason: self.reason.clone(),
            duration_secs: self.duration.map_or(0, |d| d.as_secs()),
            urgent: false,
            reference: String::new(),
        }
    }
}

/// The line when it names an app exactly (id, alias or name) and says more
/// than that; `None` leaves `/access TEXT` to pick the app in the modal.
pub(super) fn parse(config: &Config, text: &str) -> Option<Line> {
    let mut words = text.split_whitespace();
    let found = config.find_app(words.next()?)?;
    let rest: Vec<&str> = words.collect();
    if rest.is_empty() {
        return None;
    }
    let mut next = 0;
    let mut roles = Vec::new();
    if let Some(role) = rest.first().and_then(|w| role_named(found, w)) {
        roles.push(role);
        next = 1;
    }
    let cap = policy::form_cap(found, &roles);
    let duration = rest.get(next).and_then(|w| checked_duration(w, cap).ok());
    if duration.is_some() {
        next += 1;
    }
    Some(Line {
        app: found.id.clone(),
        roles,
        duration,
        reason: rest[next.min(rest.len())..].join(" "),
    })
}

/// The role a word names: its id or its (one-word) name, any case.
fn role_named(found: &AppConfig, word: &str) -> Option<String> {
    found
        .roles
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(word) || r.name.eq_ignore_ascii_case(word))
        .map(|r| r.id.clone())
}

/// Files a complete line now; `None` when it is not complete (the caller
/// opens the modal with it instead).
pub(super) async fn file_now(app: &Arc<App>, user: &str, line: &Line) -> Option<Reply> {
    let config = app.config();
    let found = config.app(&line.app)?;
    if !line.complete(found) {
        return None;
    }
    let email = match requester_email(app, user).await {
        Who::Known(email) => email,
        Who::Refused(why) => return Some(Reply::payload(ephemeral(&why))),
    };
    let mut draft = line.draft();
    draft.step = Step::Approvers;
    let answer = match file(app, found, &draft, &[], user, &email).await {
        Filed::New {
            reference,
            text,
            then,
        } => {
            return Some(
                Reply::payload(ephemeral(&format!("Your request *{reference}* {text}"))).then(then),
            )
        }
        Filed::Refused { why, .. } | Filed::Duplicate(why) => why,
        Filed::Failed(err) => logged(
            err,
            "create a ticket from one line",
            "accessd could not record your request; nothing was sent. Please try again.",
        )
        .to_string(),
    };
    Some(Reply::payload(ephemeral(&answer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"
[[apps]]
id = "github"
name = "GitHub"
aliases = ["gh"]
owners = ["dana@example.com"]
max_duration = "8h"

  [[apps.roles]]
  id = "read"
  name = "Reader"

  [[apps.roles]]
  id = "admin"
  name = "Admin"

[[apps]]
id = "wiki"
owners = ["dana@example.com"]
"#;

    fn config() -> Config {
        crate::config::parse(CATALOG, std::path::Path::new("/etc/accessd/accessd.toml"))
            .expect("config")
    }

    #[test]
    fn a_whole_line_parses_and_a_partial_one_keeps_what_it_said() {
        let c = config();
        let line = parse(&c, "gh read 4h because the deploy is stuck").expect("line");
        assert_eq!(line.app, "github");
        assert_eq!(line.roles, ["read"]);
        assert_eq!(line.duration, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(line.reason, "because the deploy is stuck");
        assert!(line.complete(c.app("github").unwrap()));

        // Past the 8h cap: no duration, so the modal asks for it.
        let long = parse(&c, "github Reader 2d because the deploy is stuck").unwrap();
        assert_eq!(long.roles, ["read"]);
        assert_eq!(long.duration, None);
        assert_eq!(long.reason, "2d because the deploy is stuck");
        assert!(!long.complete(c.app("github").unwrap()));

        // An unknown role, or a reason too short, is not complete either.
        assert!(!parse(&c, "github write 4h deploy is stuck")
            .unwrap()
            .complete(c.app("github").unwrap()));
        assert!(!parse(&c, "github read 4h stuck")
            .unwrap()
            .complete(c.app("github").unwrap()));
        // An app without roles needs none.
        let wiki = parse(&c, "wiki 2h fix the broken runbook").unwrap();
        assert!(wiki.complete(c.app("wiki").unwrap()));
        // Only the app, or an app that is not exact: the modal picks it.
        assert_eq!(parse(&c, "github"), None);
        assert_eq!(parse(&c, "githu read 4h because the deploy is stuck"), None);
    }
}
