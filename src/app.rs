//! The shared context every upper layer works in: [`App`] (store, Web API,
//! outbox, identity, the reloadable [`Live`] config and integrations), the
//! Home-refresh queue and the job runner's wake-up and knobs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::alerts;
use crate::config::{Config, Secret, USERGROUP_FRESH};
use crate::identity::Identity;
use crate::limit::Limiter;
use crate::outbox::Outbox;
use crate::provision::Provisioners;
use crate::slack_api::{BotIdentity, SlackApi};
use crate::sources::AnySource;
use crate::store::{Store, StoreError};

/// What a config reload replaces, swapped as one value so no reader ever
/// sees one file's catalog with another file's provisioners.
#[derive(Clone)]
pub struct Live {
    pub config: Arc<Config>,
    pub provisioners: Arc<Provisioners>,
    /// Source id → its reader.
    pub sources: Arc<BTreeMap<String, Arc<AnySource>>>,
}

/// The provisioners and source readers a config names, built before the
/// config is complete (start-up builds them before Slack is reached, so an
/// unreadable secret file fails fast).
pub struct Integrations {
    provisioners: Provisioners,
    sources: BTreeMap<String, Arc<AnySource>>,
}

impl Integrations {
    /// Reads the secret files (blocking); errors name the config key.
    /// `bot_token` is the daemon's, lent to a `slack` source or
    /// `slack_usergroup` provisioner without a `token_file` of its own.
    pub fn build(config: &Config, bot_token: &Secret) -> Result<Self, String> {
        let provisioners = Provisioners::from_config(config, Some(bot_token))?;
        let sources = config
            .sources
            .iter()
            .map(|s| {
                let reader = AnySource::from_config(s, Some(bot_token))?;
                Ok((s.id.clone(), Arc::new(reader)))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            provisioners,
            sources,
        })
    }
}

/// Why a [`Live`] could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A `#name` (`[alerts.channels]`, `[audit] anchor_channel`) or a
    /// `usergroup:` handle Slack does not know, or Slack unreachable.
    #[error("{0}")]
    Channels(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

impl Live {
    /// The one way start-up and reload finish a config: `#name`s in
    /// `[alerts.channels]` and `[audit] anchor_channel` resolved through Slack, the config and its
    /// integrations put together as built, and the resolved names saved for
    /// the CLI. Nothing is saved unless every name resolved.
    pub async fn prepare(
        api: &SlackApi,
        store: &Store,
        mut config: Config,
        integrations: Integrations,
    ) -> Result<Self, PrepareError> {
        let (channels, mut resolved) = alerts::resolve_channels(api, &config.alerts.channels)
            .await
            .map_err(PrepareError::Channels)?;
        config.alerts.channels = channels;
        if let Some(anchor) = config.audit.anchor_channel.take() {
            let (id, pair) = alerts::resolve_channel(api, "audit.anchor_channel", &anchor)
                .await
                .map_err(PrepareError::Channels)?;
            config.audit.anchor_channel = Some(id);
            resolved.extend(pair);
        }
        check_usergroups(api, &config)
            .await
            .map_err(PrepareError::Channels)?;
        store.save_channels(resolved).await?;
        Ok(Self {
            config: Arc::new(config),
            provisioners: Arc::new(integrations.provisioners),
            sources: Arc::new(integrations.sources),
        })
    }
}

/// Every `usergroup:HANDLE` the config names must exist in the workspace;
/// without `usergroups:read` the check is skipped (with a warning) and such
/// a group simply names nobody.
async fn check_usergroups(api: &SlackApi, config: &Config) -> Result<(), String> {
    let uses = config.usergroup_uses();
    if uses.is_empty() {
        return Ok(());
    }
    let ids = match api.usergroup_ids().await {
        Ok(ids) => ids,
        Err(err) if err.code() == Some("missing_scope") => {
            tracing::warn!("cannot check the config's usergroup: handles without the usergroups:read scope; their members cannot act until it is granted");
            return Ok(());
        }
        Err(err) => {
            return Err(format!(
                "could not list Slack user groups to check the config's usergroup: handles: {err}"
            ))
        }
    };
    let missing: Vec<String> = uses
        .iter()
        .filter(|(_, handle)| !ids.contains_key(handle))
        .map(|(key, handle)| {
            format!("{key}: no Slack user group @{handle} in this workspace (check the handle)")
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("\n"))
    }
}

/// The longest a click waits for a user group it needs to be read.
const USERGROUP_WAIT: Duration = Duration::from_secs(2);

/// Everything a handler may touch.
pub struct App {
    /// Read through [`App::config`]; replaced by [`App::replace_live`] on reload.
    live: watch::Sender<Live>,
    pub store: Store,
    pub api: SlackApi,
    pub bot: BotIdentity,
    /// The bot token, for the integrations a reload builds (it is
    /// restart-only, so the same as at start).
    pub bot_token: Secret,
    pub outbox: Outbox,
    pub identity: Identity,
    pub home_refresh: HomeRefresh,
    /// Wakes the job runner after a handler committed a job due now.
    pub jobs: Wake,
    pub job_options: JobOptions,
    /// Refused clicks per person, so a flood of them is answered once.
    pub refusals: Limiter,
    /// When each person over the request limit was last audited for it.
    pub request_limits: Limiter,
}

/// The parts of [`App`] that do not change on reload.
pub struct AppParts {
    pub store: Store,
    pub api: SlackApi,
    pub bot: BotIdentity,
    pub bot_token: Secret,
    pub outbox: Outbox,
    pub identity: Identity,
    pub job_options: JobOptions,
}

impl App {
    pub fn new(live: Live, parts: AppParts) -> Self {
        Self {
            live: watch::Sender::new(live),
            store: parts.store,
            api: parts.api,
            bot: parts.bot,
            bot_token: parts.bot_token,
            outbox: parts.outbox,
            identity: parts.identity,
            home_refresh: HomeRefresh::default(),
            jobs: Wake::default(),
            job_options: parts.job_options,
            refusals: Limiter::default(),
            request_limits: Limiter::default(),
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

    /// Reads the Slack user groups the config names that were not read
    /// within `max_age`, for at most `wait`.
    pub async fn refresh_usergroups(&self, max_age: Duration, wait: Duration) {
        let config = self.config();
        let handles: Vec<String> = config
            .usergroup_uses()
            .into_iter()
            .map(|(_, handle)| handle)
            .collect();
        if handles.is_empty() {
            return;
        }
        let read = self
            .identity
            .refresh_usergroups(&config.usergroups, &handles, max_age);
        if tokio::time::timeout(wait, read).await.is_err() {
            tracing::warn!("reading the config's Slack user groups took too long");
        }
    }

    /// Before a click is authorised: user groups older than
    /// `USERGROUP_FRESH` less a margin (so none ages out mid-decision) are
    /// read now, for at most `USERGROUP_WAIT`. A group still unread names
    /// nobody, so such a click is refused, never allowed.
    pub async fn usergroups_for_click(&self) {
        let margin = Duration::from_secs(10);
        self.refresh_usergroups(USERGROUP_FRESH.saturating_sub(margin), USERGROUP_WAIT)
            .await;
    }

    /// Notified on every reload (source timers follow their config).
    pub fn watch_live(&self) -> watch::Receiver<Live> {
        self.live.subscribe()
    }
}

/// Retry and polling knobs (tests shorten them).
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// First retry delay after a transient failure; doubles per attempt.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Transient failures tolerated before a grant is given up as failed.
    pub max_attempts: i64,
    /// Longest sleep between looks at the table.
    pub poll: Duration,
    /// Jobs running at once (provisioner calls are mostly waiting on I/O).
    pub concurrency: usize,
    /// How often the Slack user groups a config names are read in the
    /// background, so a click seldom waits for Slack (at most
    /// `USERGROUP_FRESH` is ever trusted).
    pub usergroup_refresh: Duration,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            max_attempts: 8,
            poll: Duration::from_secs(5),
            concurrency: 16,
            usergroup_refresh: Duration::from_secs(30),
        }
    }
}

impl JobOptions {
    /// Exponential backoff from `retry_base`, capped; a server's Retry-After
    /// wins when it asks for longer.
    pub fn backoff(&self, attempts: i64, retry_after: Option<Duration>) -> Duration {
        let exp = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
        let delay = self
            .retry_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.retry_max);
        retry_after.map_or(delay, |r| r.max(delay))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`Wake::wake`] (or at once for one made before).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// How long after someone last opened their Home tab a change still
/// re-renders it. Slack sends `app_home_opened` each time the tab is shown,
/// which renders it afresh, so only people looking at it now need a push;
/// pushing to everyone a change touches (most never open the tab) would
/// cost a render and a `views.publish` per requester per decision.
const VIEWER_WINDOW: Duration = Duration::from_secs(3600);

/// Users whose Home tab is due a re-render, drained by one task
/// (`handlers::home::refresh_worker`). Requests for a user already queued
/// collapse into one, so a burst of decisions costs one render per user, off
/// the envelope path.
#[derive(Default)]
pub struct HomeRefresh {
    dirty: Mutex<BTreeSet<String>>,
    /// User → when they last opened the Home tab (or paged it).
    viewers: Mutex<HashMap<String, Instant>>,
    wake: Notify,
}

impl HomeRefresh {
    /// The user is looking at their Home tab now.
    pub fn viewed(&self, user: &str) {
        let mut viewers = self.viewers.lock().unwrap_or_else(|p| p.into_inner());
        if viewers.len() > 10_000 {
            viewers.retain(|_, at| at.elapsed() < VIEWER_WINDOW);
        }
        viewers.insert(user.to_string(), Instant::now());
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

    /// The users queued since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }

    /// Queues a re-render for each of `users` (see [`HomeRefresh::request`]).
    pub fn request_all(&self, users: &[&str]) {
        for user in users.iter().filter(|u| !u.is_empty()) {
            self.request(user);
        }
    }

    /// Waits until a request is queued, or `max` passed.
    pub async fn wait(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_yields_to_retry_after() {
        let o = JobOptions {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            ..JobOptions::default()
        };
        assert_eq!(o.backoff(0, None), Duration::from_secs(2));
        assert_eq!(o.backoff(3, None), Duration::from_secs(16));
        assert_eq!(o.backoff(10, None), Duration::from_secs(60));
        assert_eq!(
            o.backoff(0, Some(Duration::from_secs(9))),
            Duration::from_secs(9)
        );
        assert_eq!(
            o.backoff(5, Some(Duration::from_secs(1))),
            Duration::from_secs(60)
        );
    }
}
