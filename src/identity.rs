//! Who a Slack user is: Slack id ⇄ email, from the `user_links` cache, else
//! `users.info` / `users.lookupByEmail`, refreshed after `identity.link_refresh`.
//! People are matched by exact, case-insensitive email. Also what kind of
//! Slack account someone is ([`Standing`]): a full member of this workspace, a
//! guest, a bot, or a user of another team. And who is in the Slack user
//! groups the config names (`usergroup:HANDLE`), read into the config's
//! [`UserGroups`] as emails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use crate::config::UserGroups;

use crate::slack_api::{ApiError, SlackApi};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Slack(#[from] ApiError),
}

/// What kind of Slack account a user is, from `users.info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A full member of this workspace (or of its Enterprise Grid org).
    Member,
    /// A multi- or single-channel guest (`is_restricted`, `is_ultra_restricted`).
    Guest,
    /// A bot or an app's user.
    Bot,
    /// A user of another team (Slack Connect, a shared channel).
    External,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Member => "member",
            Standing::Guest => "guest",
            Standing::Bot => "bot",
            Standing::External => "external",
        }
    }
}

/// The team the bot is installed in: who counts as "ours".
#[derive(Debug, Clone, Default)]
pub struct HomeTeam {
    pub team_id: String,
    /// Set on Enterprise Grid, where members of sibling workspaces are ours too.
    pub enterprise_id: Option<String>,
}

#[derive(Clone)]
pub struct Identity {
    store: Store,
    api: SlackApi,
    refresh: Duration,
    home: HomeTeam,
    /// Slack id → standing and when Slack said so; kept as long as links.
    standings: Arc<Mutex<HashMap<String, (Standing, Instant)>>>,
    /// User group handle → id, from `usergroups.list`.
    usergroup_ids: Arc<Mutex<HashMap<String, String>>>,
}

/// Members' emails looked up at once while a group is read.
const MEMBER_LOOKUPS: usize = 8;

impl Identity {
    pub fn new(store: Store, api: SlackApi, refresh: Duration, home: HomeTeam) -> Self {
        Self {
            store,
            api,
            refresh,
            home,
            standings: Arc::default(),
            usergroup_ids: Arc::default(),
        }
    }

    /// Reads the members of each of `handles` not read within `max_age`
    /// into `groups`, as emails (members without one are nobody here). A
    /// group whose read fails keeps its last list, which stops counting once
    /// it is older than `USERGROUP_FRESH`: uncertain membership never allows.
    pub async fn refresh_usergroups(
        &self,
        groups: &UserGroups,
        handles: &[String],
        max_age: Duration,
    ) {
        for handle in groups.older_than(handles, max_age) {
            let started = Instant::now();
            match self.usergroup_emails(&handle).await {
                Ok(emails) => groups.set(&handle, emails, started),
                Err(err) => {
                    tracing::warn!(usergroup = %handle, error = %err, "could not read a Slack user group's members; its members cannot act until it is read")
                }
            }
        }
    }

    async fn usergroup_emails(
        &self,
        handle: &str,
    ) -> Result<std::collections::BTreeSet<String>, IdentityError> {
        let known = self.lock_usergroup_ids().get(handle).cloned();
        let id = match known {
            Some(id) => id,
            None => {
                let ids = self.api.usergroup_ids().await?;
                let id = ids.get(handle).cloned();
                *self.lock_usergroup_ids() = ids;
                id.ok_or_else(|| ApiError::Slack {
                    method: "usergroups.list".into(),
                    code: format!("no user group @{handle}"),
                })?
            }
        };
        let reply = self
            .api
            .call_get("usergroups.users.list", &[("usergroup", &id)])
            .await
            .inspect_err(|_| {
                // The id may be stale (the group re-created): learn it again next time.
                self.lock_usergroup_ids().remove(handle);
            })?;
        let members: Vec<String> = reply
            .get("users")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let emails: Vec<Result<Option<String>, IdentityError>> = stream::iter(members)
            .map(|member| async move { self.email_of(&member).await })
            .buffer_unordered(MEMBER_LOOKUPS)
            .collect()
            .await;
        let mut out = std::collections::BTreeSet::new();
        for email in emails {
            if let Some(email) = email? {
                out.insert(email);
            }
        }
        Ok(out)
    }

    fn lock_usergroup_ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.usergroup_ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What kind of account `slack_id` is. Asks Slack when the cached answer
    /// is older than `identity.link_refresh`; a stale answer beats none while
    /// Slack is unreachable, and no answer at all is an error (the caller
    /// refuses: uncertain never allows).
    pub async fn standing_of(&self, slack_id: &str) -> Result<Standing, IdentityError> {
        let cached = self.cached_standing(slack_id);
        if let Some((standing, at)) = cached {
            if at.elapsed() < self.refresh {
                return Ok(standing);
            }
        }
        match self.api.call_get("users.info", &[("user", slack_id)]).await {
            Ok(reply) => Ok(self.remember(slack_id, &reply)),
            Err(err) => match cached {
                Some((standing, _)) if err.is_transient() => Ok(standing),
                _ => Err(err.into()),
            },
        }
    }

    fn cached_standing(&self, slack_id: &str) -> Option<(Standing, Instant)> {
        let standings = self.standings.lock().unwrap_or_else(|p| p.into_inner());
        standings.get(slack_id).copied()
    }

    /// Records the standing a `users.info` / `users.lookupByEmail` reply shows.
    fn remember(&self, slack_id: &str, reply: &Value) -> Standing {
        let standing = reply
            .get("user")
            .map_or(Standing::External, |user| standing_in(user, &self.home));
        let mut standings = self.standings.lock().unwrap_or_else(|p| p.into_inner());
        standings.insert(slack_id.to_string(), (standing, Instant::now()));
        standing
    }

    fn is_fresh(&self, source: &str, refreshed_at: chrono::DateTime<Utc>) -> bool {
        source == "manual"
            || Utc::now() - refreshed_at
                < chrono::Duration::from_std(self.refresh).unwrap_or_default()
    }

    /// The email of a Slack user; `None` when Slack has none for them (bots,
    /// or the app lacks `users:read.email`).
    pub async fn email_of(&self, slack_id: &str) -> Result<Option<String>, IdentityError> {
        let cached = self.store.link_for_slack(slack_id.to_string()).await?;
        if let Some(link) = &cached {
            if self.is_fresh(&link.source, link.refreshed_at) {
                return Ok(Some(link.email.clone()));
            }
        }
        match self.api.call_get("users.info", &[("user", slack_id)]).await {
            Ok(reply) => {
                self.remember(slack_id, &reply);
                match profile_email(&reply) {
                    Some(email) => {
                        self.store
                            .save_slack_link(slack_id.to_string(), email.clone())
                            .await?;
                        Ok(Some(email))
                    }
                    None => Ok(None),
                }
            }
            // A stale link beats no answer while Slack is unreachable.
            Err(err) if err.is_transient() && cached.is_some() => Ok(cached.map(|l| l.email)),
            Err(err) if err.code() == Some("user_not_found") => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The Slack user with this email, if any.
    pub async fn slack_id_of(&self, email: &str) -> Result<Option<String>, IdentityError> {
        let email = email.to_lowercase();
        let cached = self.store.link_for_email(email.clone()).await?;
        if let Some(link) = &cached {
            if self.is_fresh(&link.source, link.refreshed_at) {
                return Ok(Some(link.slack_id.clone()));
            }
        }
        match self
            .api
            .call_get("users.lookupByEmail", &[("email", &email)])
            .await
        {
            Ok(reply) => match reply.pointer("/user/id").and_then(Value::as_str) {
                Some(id) => {
                    self.remember(id, &reply);
                    self.store.save_slack_link(id.to_string(), email).await?;
                    Ok(Some(id.to_string()))
                }
                None => Ok(None),
            },
            Err(err) if err.code() == Some("users_not_found") => Ok(None),
            Err(err) if err.is_transient() && cached.is_some() => Ok(cached.map(|l| l.slack_id)),
            Err(err) => Err(err.into()),
        }
    }

    /// Slack ids for many emails at once; unknown emails are left out (and
    /// logged), never silently treated as someone else.
    pub async fn slack_ids_of(
        &self,
        emails: impl IntoIterator<Item = String>,
    ) -> HashMap<String, String> {
        let wanted: std::collections::BTreeSet<String> =
            emails.into_iter().map(|e| e.to_lowercase()).collect();
        let mut out = HashMap::new();
        // Fresh cached links in one store round trip; only the rest ask Slack.
        match self
            .store
            .links_for_emails(wanted.iter().cloned().collect())
            .await
        {
            Ok(links) => {
                for link in links
                    .into_iter()
                    .filter(|l| self.is_fresh(&l.source, l.refreshed_at))
                {
                    out.insert(link.email.to_lowercase(), link.slack_id);
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not read cached user links"),
        }
        let missing: Vec<String> = wanted
            .into_iter()
            .filter(|e| !out.contains_key(e))
            .collect();
        let lookups = missing.into_iter().map(|email| async move {
            let found = self.slack_id_of(&email).await;
            (email, found)
        });
        for (email, found) in futures_util::future::join_all(lookups).await {
            match found {
                Ok(Some(id)) => {
                    out.insert(email, id);
                }
                Ok(None) => {
                    tracing::warn!(%email, "no Slack user has this email; they cannot be asked")
                }
                Err(err) => {
                    tracing::warn!(%email, error = %err, "could not look up a Slack user by email")
                }
            }
        }
        out
    }
}

/// The standing a `users.info` user object shows; anything unclear about
/// the team counts as external.
fn standing_in(user: &Value, home: &HomeTeam) -> Standing {
    let flag = |name: &str| user.get(name).and_then(Value::as_bool).unwrap_or(false);
    let text = |path: &str| user.pointer(path).and_then(Value::as_str);
    if flag("is_bot") || text("/id") == Some("USLACKBOT") {
        return Standing::Bot;
    }
    let same_team = text("/team_id").is_some_and(|t| t == home.team_id);
    let same_org = home.enterprise_id.as_deref().is_some_and(|ours| {
        text("/enterprise_user/enterprise_id") == Some(ours) || text("/enterprise_id") == Some(ours)
    });
    if flag("is_stranger") || !(same_team || same_org) {
        return Standing::External;
    }
    if flag("is_restricted") || flag("is_ultra_restricted") {
        return Standing::Guest;
    }
    Standing::Member
}

fn profile_email(reply: &Value) -> Option<String> {
    reply
        .pointer("/user/profile/email")
        .and_then(Value::as_str)
        .filter(|e| e.contains('@'))
        .map(str::to_lowercase)
}
