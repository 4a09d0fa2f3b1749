//! `accessd users list|link`: the Slack user ⇄ email links, and linking by hand.

use std::path::Path;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

use super::actor::cli_actor;
use super::output::{emit, or_dash, print_out, rfc3339_short, with_store, Outcome, Table};
use crate::store::{Store, UserLink};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List the Slack user ⇄ email links, looked up or manual.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Link a Slack user to an email by hand; a manual link wins over Slack's answer.
    Link {
        /// Slack user id, e.g. U0123ABCD.
        #[arg(value_name = "SLACK_ID", value_parser = parse_slack_id)]
        slack_id: String,
        /// The email the user is known by in the identity sources.
        #[arg(value_name = "EMAIL", value_parser = parse_email)]
        email: String,
    },
}

/// `U` or `W` followed by uppercase letters and digits.
fn parse_slack_id(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    let prefix_ok = matches!(chars.next(), Some('U' | 'W'));
    let rest = chars.as_str();
    let rest_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if prefix_ok && rest_ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a Slack user id (U or W followed by uppercase letters and digits)"
        ))
    }
}

/// One `@` with something on both sides, and no whitespace or control characters.
fn parse_email(text: &str) -> Result<String, String> {
    let valid = match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not an email address"))
    }
}

pub(crate) fn execute(config: &Path, command: UsersCommand) -> Outcome {
    match command {
        UsersCommand::List { json } => with_store(config, |store| list(store, json)),
        UsersCommand::Link { slack_id, email } => {
            let by = cli_actor();
            with_store(config, |store| link(store, slack_id, email, by))
        }
    }
}

async fn list(store: Store, json: bool) -> Outcome {
    let links = store.list_links().await?;
    let views: Vec<LinkView> = links.into_iter().map(LinkView::from).collect();
    emit(json, &views, || links_table(&views))
}

async fn link(store: Store, slack_id: String, email: String, by: String) -> Outcome {
    let previous = store
        .link_manually(slack_id.clone(), email.clone(), by.clone())
        .await?;
    let email = email.to_lowercase();
    let change = match previous {
        None => "new link".to_owned(),
        Some(previous) if previous.eq_ignore_ascii_case(&email) => "email unchanged".to_owned(),
        Some(previous) => format!("was {previous}"),
    };
    print_out(&format!("linked {slack_id} to {email} ({change}; by {by})"))
}

#[derive(Debug, Serialize)]
struct LinkView {
    /// The Slack user id.
    id: String,
    email: String,
    /// `slack` (looked up) or `manual`.
    source: String,
    refreshed_at: DateTime<Utc>,
    linked_by: Option<String>,
}

impl From<UserLink> for LinkView {
    fn from(link: UserLink) -> Self {
        LinkView {
            id: link.slack_id,
            email: link.email,
            source: link.source,
            refreshed_at: link.refreshed_at,
            linked_by: link.linked_by,
        }
    }
}

fn links_table(views: &[LinkView]) -> String {
    if views.is_empty() {
        return "no user links".into();
    }
    let mut table = Table::new(&["SLACK ID", "EMAIL", "SOURCE", "REFRESHED", "LINKED BY"]);
    for link in views {
        table.row(vec![
            link.id.clone(),
            link.email.clone(),
            link.source.clone(),
            rfc3339_short(link.refreshed_at),
            or_dash(link.linked_by.clone()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_ids_are_u_or_w_and_uppercase_alphanumerics() {
        for ok in ["U0123ABCD", "W1", "UABC"] {
            assert_eq!(parse_slack_id(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "U",
            "u123",
            "U12a",
            "C123",
            "U 12",
            "U12-3",
            "ann@example.com",
        ] {
            assert!(parse_slack_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_need_one_at_with_both_parts() {
        assert!(parse_email("ann@example.com").is_ok());
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "a@b@c",
            "ann @x",
            "ann@x\n",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?}");
        }
    }
}
