//! Handlers for each Slack surface, behind one [`dispatch`] that the router
//! calls with a typed route. Handlers commit state before they return (the ack
//! follows) and push slow work (Web API calls) into [`Reply::then`].

pub mod access;
pub mod alert;
pub mod approval;
pub mod command;
pub mod home;
pub mod request;
pub mod requester;
pub mod review;
pub mod tell;

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::identity::Identity;
use crate::outbox::Outbox;
use crate::router::Route;
use crate::slack::api::{BotIdentity, SlackApi};
use crate::slack::transport::Reply;
use crate::store::Store;

/// The ids moved to `slack::ids`; this path stays for existing callers.
pub use crate::slack::ids as actions;

/// What a config reload replaces, swapped as one value so no reader ever
/// sees one file's catalog with another file's provisioners.
#[derive(Clone)]
pub struct Live {
    pub config: Arc<Config>,
    pub provisioners: Arc<crate::provision::Provisioners>,
    /// Source id → its reader.
    pub sources: Arc<std::collections::BTreeMap<String, Arc<crate::sources::AnySource>>>,
}

impl Live {
    /// Builds everything derived from `config`: provisioners and source
    /// readers, whose secret files are read here. Errors name the config key.
    pub fn build(config: Config) -> Result<Self, String> {
        let provisioners = crate::provision::Provisioners::from_config(&config)?;
        let sources = config
            .sources
            .iter()
            .map(|s| {
                Ok((
                    s.id.clone(),
                    Arc::new(crate::sources::AnySource::from_config(s)?),
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            config: Arc::new(config),
            provisioners: Arc::new(provisioners),
            sources: Arc::new(sources),
        })
    }
}

/// Everything a handler may touch.
pub struct App {
    /// Read through [`App::config`]; replaced by [`App::replace_live`] on reload.
    live: watch::Sender<Live>,
    pub store: Store,
    pub api: SlackApi,
    pub bot: BotIdentity,
    pub outbox: Outbox,
    pub identity: Identity,
    pub home_refresh: home::HomeRefresh,
    /// Wakes the job runner after a handler committed a job due now.
    pub jobs: crate::scheduler::Wake,
    pub job_options: crate::scheduler::JobOptions,
}

/// The parts of [`App`] that do not change on reload.
pub struct AppParts {
    pub store: Store,
    pub api: SlackApi,
    pub bot: BotIdentity,
    pub outbox: Outbox,
    pub identity: Identity,
    pub job_options: crate::scheduler::JobOptions,
}

impl App {
    pub fn new(live: Live, parts: AppParts) -> Self {
        Self {
            live: watch::Sender::new(live),
            store: parts.store,
            api: parts.api,
            bot: parts.bot,
            outbox: parts.outbox,
            identity: parts.identity,
            home_refresh: home::HomeRefresh::default(),
            jobs: crate::scheduler::Wake::default(),
            job_options: parts.job_options,
        }
    }

    /// The config in force now. Hold the returned `Arc` for the length of one
    /// decision, so a reload midway cannot mix two files.
    pub fn config(&self) -> Arc<Config> {
        self.live.borrow().config.clone()
    }

    /// Config and provisioners of the same file, for paths that need both.
    pub fn live(&self) -> Live {
        self.live.borrow().clone()
    }

    pub fn replace_live(&self, live: Live) {
        self.live.send_replace(live);
    }

    /// Notified on every reload (source timers follow their config).
    pub fn watch_live(&self) -> watch::Receiver<Live> {
        self.live.subscribe()
    }
}

pub async fn dispatch(app: &Arc<App>, route: Route) -> Reply {
    match route {
        Route::Command(command) => command::handle(app, *command).await,
        Route::AppHomeOpened(event) => home::opened(app, *event).await,
        Route::BlockAction { action, event } => {
            let value = action.value.clone().unwrap_or_default();
            match action.action_id.0.as_str() {
                actions::REQUEST_ACCESS => {
                    request::open(app, &event.trigger_id.0, user_of(&event), None).await
                }
                actions::HOME_PAGE => home::page(app, user_of(&event), &value),
                actions::APPROVE | actions::REJECT => {
                    approval::clicked(app, &action.action_id.0, &value, *event).await
                }
                actions::NUDGE => requester::nudge(app, &value, *event).await,
                actions::CANCEL => requester::cancel(app, &value, *event).await,
                actions::EXTEND => access::extend_clicked(app, &value, *event).await,
                actions::RELEASE | actions::REVOKE => {
                    access::revoke(app, &action.action_id.0, &value, *event).await
                }
                actions::TASK_DONE | actions::TASK_FAILED => {
                    access::task(app, &action.action_id.0, &value, *event).await
                }
                actions::ALERT_ACK
                | actions::ALERT_WATCH
                | actions::ALERT_IGNORE
                | actions::ALERT_REVOKE => {
                    alert::clicked(app, &action.action_id.0, &value, *event).await
                }
                actions::DIGEST_ACK => alert::digest_clicked(app, &value, *event).await,
                actions::REVIEW_KEEP | actions::REVIEW_REVOKE => {
                    review::decide_clicked(app, &action.action_id.0, &value, *event).await
                }
                actions::REVIEW_KEEP_ALL => review::keep_all(app, &value, *event).await,
                actions::REVIEW_REASSIGN_ALL => {
                    review::reassign_all_clicked(app, &value, *event).await
                }
                actions::REVIEW_MORE => {
                    let selected = action
                        .selected_option
                        .as_ref()
                        .map(|o| o.value.clone())
                        .unwrap_or_default();
                    review::more_clicked(app, &selected, *event).await
                }
                // A link button: the browser opened the page; nothing to do.
                actions::ALERT_OPEN => Reply::empty(),
                // Selects inside the request modal fire block actions too; the
                // modal reads them on submission.
                actions::APP_ACTION | actions::ROLES_ACTION | actions::APPROVERS_ACTION => {
                    Reply::empty()
                }
                other => {
                    tracing::info!(action_id = other, "no handler for this action; acked");
                    Reply::empty()
                }
            }
        }
        Route::ViewSubmission(submission) => {
            match crate::router::callback_id(&submission.view.view) {
                actions::REQUEST_MODAL => request::submitted(app, *submission).await,
                actions::APPROVE_MODAL | actions::REJECT_MODAL => {
                    approval::submitted(app, *submission).await
                }
                actions::EXTEND_MODAL => access::extend_submitted(app, *submission).await,
                actions::REVIEW_COMMENT_MODAL => review::comment_submitted(app, *submission).await,
                actions::REVIEW_REASSIGN_MODAL => {
                    review::reassign_submitted(app, *submission).await
                }
                other => {
                    tracing::info!(
                        callback_id = other,
                        "submission of an unknown view; closing it"
                    );
                    Reply::empty()
                }
            }
        }
        Route::BlockSuggestion(suggestion) if suggestion.action_id.0 == actions::APP_ACTION => {
            Reply::payload(crate::slack::views::request::app_options(
                &app.config(),
                &suggestion.value,
            ))
        }
        other => {
            tracing::info!(route = other.name(), "no handler for this route; acked");
            Reply::empty()
        }
    }
}

/// The clicking user's id; Slack always sends it for clicks in views and messages.
pub fn user_of(event: &slack_morphism::prelude::SlackInteractionBlockActionsEvent) -> String {
    event
        .user
        .as_ref()
        .map(|u| u.id.0.clone())
        .unwrap_or_default()
}
