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

/// Asks for the Home tab of each user to be re-rendered (after a change that
/// concerns them), for those who opened it lately. Requests for a user
/// already queued collapse into one, so a burst of decisions costs one render
/// per user, off the envelope path.
pub async fn refresh(app: &Arc<App>, users: &[&str]) {
    for user in users.iter().filter(|u| !u.is_empty()) {
        app.home_refresh.request(user);
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
const LIST_LIMIT: usize = 10 * crate::slack::views::home::PAGE;

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
            t.kind != crate::domain::ticket::Kind::Extension
                && matches!(
                    t.status,
                    Status::Approved | Status::Provisioning | Status::Active
                )
        })
        .collect();
    Ok((waiting, open, access, reviews))
}

/// How long after someone last opened their Home tab a change still
/// re-renders it. Slack sends `app_home_opened` each time the tab is shown,
/// which renders it afresh, so only people looking at it now need a push;
/// pushing to everyone a change touches (most never open the tab) would
/// cost a render and a `views.publish` per requester per decision.
const VIEWER_WINDOW: Duration = Duration::from_secs(3600);

/// Users whose Home tab is due a re-render, drained by one task.
#[derive(Default)]
pub struct HomeRefresh {
    dirty: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// User → when they last opened the Home tab (or paged it).
    viewers: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    wake: tokio::sync::Notify,
}

impl HomeRefresh {
    /// The user is looking at their Home tab now.
    pub fn viewed(&self, user: &str) {
        let mut viewers = self.viewers.lock().unwrap_or_else(|p| p.into_inner());
        if viewers.len() > 10_000 {
            viewers.retain(|_, at| at.elapsed() < VIEWER_WINDOW);
        }
        viewers.insert(user.to_string(), std::time::Instant::now());
    }

    fn is_viewing(&self, user: &str) -> bool {
        self.viewers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .is_some_and(|at| at.elapsed() < VIEWER_WINDOW)
    }

    /// Queues a re-render if the user opened their Home tab lately.
    pub fn request(&self, user: &str) {
        if !self.is_viewing(user) {
            return;
        }
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_string());
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }

    /// Publishes queued Home tabs until the app is dropped.
    pub async fn run(app: std::sync::Weak<App>) {
        loop {
            let Some(strong) = app.upgrade() else { return };
            let users = strong.home_refresh.take();
            if users.is_empty() {
                // Bounded, so the task notices when the app is gone.
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    strong.home_refresh.wake.notified(),
                )
                .await;
                continue;
            }
            for user in users {
                publish(&strong, &user, Pages::default()).await;
            }
        }
    }
}
