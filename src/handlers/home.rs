//! The App Home tab: published when a user opens it and after every change
//! that concerns them.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;
use slack_morphism::prelude::*;

use crate::app::App;
use crate::domain::ticket::Kind;
use crate::domain::ticket::Status;
use crate::slack::envelope::Reply;
use crate::slack::views::home::PAGE;
use crate::slack::views::home::{home_view, parse_pages, HomeData, Pages};
use crate::store::{ReviewerProgress, Ticket, TicketFilter};

/// A Home tab is re-rendered on every open, so publishing retries only briefly.
const PUBLISH_BUDGET: Duration = Duration::from_secs(10);

pub async fn opened(app: &Arc<App>, event: SlackAppHomeOpenedEvent) -> Reply {
    if event.tab.as_deref().is_some_and(|tab| tab != "home") {
        return Reply::empty();
    }
    app.home_refresh.viewed(&event.user.0);
    let app = app.clone();
    Reply::empty().then(async move { publish(&app, &event.user.0, Pages::default()).await })
}

pub fn page(app: &Arc<App>, user: String, value: &str) -> Reply {
    app.home_refresh.viewed(&user);
    let app = app.clone();
    let pages = parse_pages(value);
    Reply::empty().then(async move { publish(&app, &user, pages).await })
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
        config: &app.config(),
        waiting: &lists.0,
        requests: &lists.1,
        access: &lists.2,
        reviews: &lists.3,
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

type Lists = (Vec<Ticket>, Vec<Ticket>, Vec<Ticket>, Vec<ReviewerProgress>);

/// How many tickets each list loads: ten pages of the Home tab.
const LIST_LIMIT: usize = 10 * PAGE;

async fn lists_for(
    app: &Arc<App>,
    user: &str,
) -> Result<Lists, Box<dyn std::error::Error + Send + Sync>> {
    let email = app.identity.email_of(user).await?;
    let (waiting, reviews) = match email {
        Some(email) => (
            app.store
                .waiting_for(email.clone(), user.to_string(), LIST_LIMIT)
                .await?,
            app.store.review_progress(Some(email)).await?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let mine = app
        .store
        .list_tickets(TicketFilter {
            requester_slack_id: Some(user.to_string()),
            limit: Some(LIST_LIMIT),
            ..TicketFilter::default()
        })
        .await?;
    let (open, rest): (Vec<Ticket>, Vec<Ticket>) =
        mine.into_iter().partition(|t| t.status.is_pending());
    let access = rest
        .into_iter()
        .filter(|t| {
            // An active extension is shown through the access it extends.
            t.kind != Kind::Extension
                && matches!(
                    t.status,
                    Status::Approved | Status::Provisioning | Status::Active
                )
        })
        .collect();
    Ok((waiting, open, access, reviews))
}

/// Publishes queued Home tabs (see `app::HomeRefresh`) until the app is dropped.
pub async fn refresh_worker(app: Weak<App>) {
    loop {
        let Some(strong) = app.upgrade() else { return };
        let users = strong.home_refresh.take();
        if users.is_empty() {
            // Bounded, so the task notices when the app is gone.
            strong.home_refresh.wait(Duration::from_secs(5)).await;
            continue;
        }
        for user in users {
            publish(&strong, &user, Pages::default()).await;
        }
    }
}
