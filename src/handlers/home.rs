//! The App Home tab: published when a user opens it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use slack_morphism::prelude::*;

use super::App;
use crate::slack::transport::Reply;
use crate::slack::views::home::home_view;

/// A Home tab is re-rendered on every open, so publishing retries only briefly.
const PUBLISH_BUDGET: Duration = Duration::from_secs(10);

pub async fn opened(app: &Arc<App>, event: SlackAppHomeOpenedEvent) -> Reply {
    if event.tab.as_deref().is_some_and(|tab| tab != "home") {
        return Reply::empty();
    }
    let api = app.api.clone();
    let user = event.user.0;
    Reply::empty().then(async move {
        let body = json!({ "user_id": user, "view": home_view() });
        if let Err(err) = api
            .call_retrying("views.publish", &body, PUBLISH_BUDGET)
            .await
        {
            tracing::warn!(user, error = %err, "could not publish the Home tab");
        }
    })
}
