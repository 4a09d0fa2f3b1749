//! The App Home tab: published when a user opens it and after every change
//! that concerns them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use slack_morphism::prelude::*;

use super::App;
use crate::domain::ticket::Status;
use crate::slack::transport::Reply;
use crate::slack::views::home::{home_view, parse_pages, HomeData, Pages};
use crate::store::{Ticket, TicketFilter};

/// A Home tab is re-rendered on every open, so publishing retries only briefly.
const PUBLISH_BUDGET: Duration = Duration::from_secs(10);

pub async fn opened(app: &Arc<App>, event: SlackAppHomeOpenedEvent) -> Reply {
    if event.tab.as_deref().is_some_and(|tab| tab != "home") {
        return Reply::empty();
    }
    let app = app.clone();
    Reply::empty().then(async move { publish(&app, &event.user.0, Pages::default()).await })
}

pub fn page(app: &Arc<App>, user: String, value: &str) -> Reply {
    let app = app.clone();
    let pages = parse_pages(value);
    Reply::empty().then(async move { publish(&app, &user, pages).await })
}

/// Re-renders the Home tab of each user (after a change that concerns them).
pub async fn refresh(app: &Arc<App>, users: &[&str]) {
    let mut seen = std::collections::BTreeSet::new();
    for user in users.iter().filter(|u| !u.is_empty() && seen.insert(**u)) {
        publish(app, user, Pages::default()).await;
    }
}

pub async fn publish(app: &Arc<App>, user: &str, pages: Pages) {
    let lists = match lists_for(app, user).await {
        Ok(lists) => lists,
        Err(err) => {
            tracing::error!(user, error = %err, "could not read the Home tab's lists");
            return;
        }
    };
    let view = home_view(&HomeData {
        config: &app.config,
        waiting: &lists.0,
        requests: &lists.1,
        access: &lists.2,
        pages,
    });
    let body = json!({ "user_id": user, "view": view });
    if let Err(err) = app
        .api
        .call_retrying("views.publish", &body, PUBLISH_BUDGET)
        .await
    {
        tracing::warn!(user, error = %err, "could not publish the Home tab");
    }
}

type Lists = (Vec<Ticket>, Vec<Ticket>, Vec<Ticket>);

async fn lists_for(
    app: &Arc<App>,
    user: &str,
) -> Result<Lists, Box<dyn std::error::Error + Send + Sync>> {
    let email = app.identity.email_of(user).await?;
    let pending = app
        .store
        .list_tickets(TicketFilter {
            status: Some(Status::Pending),
            ..TicketFilter::default()
        })
        .await?;
    let waiting = match &email {
        Some(email) => pending
            .iter()
            .filter(|t| t.requester_slack_id != user)
            .filter(|t| {
                t.plan
                    .stages
                    .get(t.stage)
                    .is_some_and(|s| s.approvers.iter().any(|a| a == email))
            })
            .filter(|t| {
                !t.approvals
                    .iter()
                    .any(|a| a.stage == t.stage && a.approver_slack_id == user)
            })
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let mine = app
        .store
        .list_tickets(TicketFilter {
            requester_slack_id: Some(user.to_string()),
            ..TicketFilter::default()
        })
        .await?;
    let (open, rest): (Vec<Ticket>, Vec<Ticket>) =
        mine.into_iter().partition(|t| t.status.is_pending());
    let access = rest
        .into_iter()
        .filter(|t| {
            matches!(
                t.status,
                Status::Approved | Status::Provisioning | Status::Active
            )
        })
        .collect();
    Ok((waiting, open, access))
}
