//! The `slack` source: the workspace accessd runs in (or another one, with
//! its own bot token), read as one more app. `users.list` (paged, each page
//! waiting out Slack's `Retry-After`) gives one account per member of app
//! `slack`; `usergroups.list` with its users gives their user groups;
//! `team.info` names the workspace. With `scim_token_file`, the source can
//! also deactivate an account through Slack's SCIM API.
//!
//! Entitlements: exactly one workspace role (`role:primary-owner`,
//! `role:owner`, `role:admin`, `role:member`, `role:guest`,
//! `role:single-channel-guest`), `bot` for bots and apps, and
//! `usergroup:HANDLE` per user group. A deleted member is `deprovisioned`.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::redirect::Policy;
use serde::Deserialize;
use serde_json::json;

use super::{Account, AccountStatus, Snapshot, SourceApp, SourceError, HTTP_TIMEOUT};
use crate::config::Secret;
use crate::net;
use crate::slack_api::{next_cursor, ApiError, SlackApi};

/// Members per `users.list` page: Slack's recommendation.
const PAGE: &str = "200";
/// How long one page may wait out rate limits before the sync fails
/// (`users.list` is Tier 2: about 20 calls a minute).
const PAGE_BUDGET: Duration = Duration::from_secs(120);
/// Guard against a cursor that never ends: 2,000 pages of 200 is 400,000 members.
const MAX_PAGES: usize = 2_000;

/// The workspace's entitlement names that make someone privileged or a guest.
pub const PRIVILEGED_ROLES: [&str; 5] = [
    "role:primary-owner",
    "role:owner",
    "role:admin",
    "role:guest",
    "role:single-channel-guest",
];

#[derive(Debug)]
pub struct SlackSource {
    api: SlackApi,
    app: String,
    scim: Option<Scim>,
}

/// Slack's SCIM API for one workspace: base URL and token.
struct Scim {
    base: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Scim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scim")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A member as `users.list` gives it, as far as it is read here.
#[derive(Deserialize)]
struct Member {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    real_name: Option<String>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    is_app_user: bool,
    #[serde(default)]
    is_primary_owner: bool,
    #[serde(default)]
    is_owner: bool,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    is_restricted: bool,
    #[serde(default)]
    is_ultra_restricted: bool,
    #[serde(default)]
    profile: Profile,
}

#[derive(Deserialize, Default)]
struct Profile {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    real_name: Option<String>,
}

#[derive(Deserialize)]
struct UserGroup {
    handle: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    date_delete: i64,
}

impl Member {
    /// The one workspace role, most privileged first.
    fn role(&self) -> &'static str {
        if self.is_primary_owner {
            "role:primary-owner"
        } else if self.is_owner {
            "role:owner"
        } else if self.is_admin {
            "role:admin"
        } else if self.is_ultra_restricted {
            "role:single-channel-guest"
        } else if self.is_restricted {
            "role:guest"
        } else {
            "role:member"
        }
    }

    fn is_bot(&self) -> bool {
        // Slackbot is a bot that Slack does not flag as one.
        self.is_bot || self.is_app_user || self.id == "USLACKBOT"
    }
}

/// A Web API failure as a source failure (never a partial snapshot).
fn source_error(err: ApiError) -> SourceError {
    match &err {
        ApiError::RateLimited { retry_after, .. } => SourceError::RateLimited {
            retry_after: Some(*retry_after),
        },
        _ if err.is_fatal_auth() || err.code() == Some("missing_scope") => {
            SourceError::Auth(format!("Slack: {err}"))
        }
        _ if err.is_transient() => SourceError::Unavailable(format!("Slack: {err}")),
        _ => SourceError::Invalid(format!("Slack: {err}")),
    }
}

/// What **Deactivate in Slack** did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deactivated {
    Done,
    /// SCIM knows no such user (removed already, or another workspace).
    NotFound,
}

/// Why **Deactivate in Slack** did not happen; `retry` when asking again
/// later may work (no answer, a rate limit, a server error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeactivateError {
    pub message: String,
    pub retry: bool,
}

impl DeactivateError {
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: false,
        }
    }
}

impl SlackSource {
    /// `api_url` is `slack.api_url`; `token` the bot token (or the source's
    /// own); `scim` the SCIM base and token when Deactivate is enabled.
    pub fn new(
        api_url: &str,
        token: &Secret,
        scim: Option<(&str, Secret)>,
        app: String,
    ) -> Result<Self, String> {
        let api = SlackApi::with_bot_token(api_url, token, HTTP_TIMEOUT)
            .map_err(|e| format!("cannot build the Slack client: {e}"))?;
        let scim = match scim {
            None => None,
            Some((base, token)) => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    net::auth_header("Bearer", &token, "Slack SCIM")?,
                );
                // A redirect could carry the token elsewhere: refuse them.
                let client = net::client(headers, HTTP_TIMEOUT, Policy::none(), "Slack SCIM")?;
                Some(Scim {
                    base: base.trim_end_matches('/').to_string(),
                    client,
                })
            }
        };
        Ok(Self { api, app, scim })
    }

    /// Whether **Deactivate in Slack** can be offered.
    pub fn can_deactivate(&self) -> bool {
        self.scim.is_some()
    }

    pub async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let members = self.members().await?;
        let groups = self.usergroups().await?;
        let team = self.team().await?;
        let mut by_user: HashMap<&str, Vec<String>> = HashMap::new();
        for g in &groups {
            for u in &g.users {
                by_user
                    .entry(u.as_str())
                    .or_default()
                    .push(format!("usergroup:{}", g.handle.to_lowercase()));
            }
        }
        let accounts = members
            .iter()
            .map(|m| {
                let mut entitlements = by_user.remove(m.id.as_str()).unwrap_or_default();
                entitlements.push(m.role().to_string());
                if m.is_bot() {
                    entitlements.push("bot".into());
                }
                Account {
                    app: self.app.clone(),
                    id: m.id.clone(),
                    email: m.profile.email.clone().filter(|e| !e.is_empty()),
                    name: m
                        .real_name
                        .clone()
                        .or_else(|| m.profile.real_name.clone())
                        .filter(|n| !n.is_empty())
                        .or_else(|| Some(m.name.clone()).filter(|n| !n.is_empty())),
                    status: if m.deleted {
                        AccountStatus::Deprovisioned
                    } else {
                        AccountStatus::Active
                    },
                    manager: None,
                    entitlements,
                    url: team
                        .as_ref()
                        .map(|(_, domain)| format!("https://{domain}.slack.com/team/{}", m.id)),
                }
            })
            .collect();
        Ok(Snapshot {
            apps: vec![SourceApp {
                id: self.app.clone(),
                name: team.as_ref().map_or_else(
                    || "Slack".to_string(),
                    |(name, _)| format!("Slack ({name})"),
                ),
                url: team
                    .as_ref()
                    .map(|(_, domain)| format!("https://{domain}.slack.com/admin")),
            }],
            accounts,
        })
    }

    /// Every member, page by page; a page Slack rate-limits is waited for.
    async fn members(&self) -> Result<Vec<Member>, SourceError> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let mut params = vec![("limit", PAGE)];
            if !cursor.is_empty() {
                params.push(("cursor", cursor.as_str()));
            }
            let page = self
                .api
                .call_get_retrying("users.list", &params, PAGE_BUDGET)
                .await
                .map_err(source_error)?;
            let members: Vec<Member> = page
                .get("members")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| SourceError::Invalid(format!("Slack users.list: {e}")))?
                .ok_or_else(|| SourceError::Invalid("Slack users.list: no `members`".into()))?;
            out.extend(members);
            cursor = next_cursor(&page);
            if cursor.is_empty() {
                return Ok(out);
            }
        }
        Err(SourceError::Invalid(format!(
            "Slack users.list: still paging after {MAX_PAGES} pages"
        )))
    }

    /// Every enabled user group with its members.
    async fn usergroups(&self) -> Result<Vec<UserGroup>, SourceError> {
        let reply = self
            .api
            .call_get_retrying(
                "usergroups.list",
                &[("include_users", "true"), ("include_disabled", "false")],
                PAGE_BUDGET,
            )
            .await
            .map_err(source_error)?;
        let groups: Vec<UserGroup> = reply
            .get("usergroups")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| SourceError::Invalid(format!("Slack usergroups.list: {e}")))?
            .ok_or_else(|| SourceError::Invalid("Slack usergroups.list: no `usergroups`".into()))?;
        Ok(groups.into_iter().filter(|g| g.date_delete == 0).collect())
    }

    /// The workspace's name and domain, for links; `None` without `team:read`
    /// (links are a convenience, not worth failing the sync).
    async fn team(&self) -> Result<Option<(String, String)>, SourceError> {
        match self
            .api
            .call_get_retrying("team.info", &[], PAGE_BUDGET)
            .await
        {
            Ok(reply) => Ok(reply.get("team").and_then(|t| {
                let name = t.get("name")?.as_str()?.to_string();
                let domain = t.get("domain")?.as_str()?.to_string();
                Some((name, domain))
            })),
            Err(err) if err.code() == Some("missing_scope") => Ok(None),
            Err(err) => Err(source_error(err)),
        }
    }

    /// Deactivates `user_id` through SCIM (`active = false`): SCIM 2.0's
    /// PatchOp, or SCIM 1.1's partial resource on GovSlack. The error names
    /// the status and never the token.
    pub async fn deactivate(&self, user_id: &str) -> Result<Deactivated, DeactivateError> {
        let Some(scim) = &self.scim else {
            return Err(DeactivateError::permanent(
                "this source has no scim_token_file",
            ));
        };
        let v1 = scim.base.ends_with("/v1");
        let body = if v1 {
            json!({ "schemas": ["urn:scim:schemas:core:1.0"], "active": false })
        } else {
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "path": "active", "value": false }]
            })
        };
        let mut url = url::Url::parse(&scim.base)
            .map_err(|e| DeactivateError::permanent(format!("Slack SCIM URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| DeactivateError::permanent("Slack SCIM URL cannot take a path"))?
            .extend(["Users", user_id]);
        let content_type = if v1 {
            "application/json"
        } else {
            "application/scim+json"
        };
        let response = scim
            .client
            .patch(url)
            .header(CONTENT_TYPE, content_type)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| DeactivateError {
                message: net::no_answer("Slack SCIM", &e),
                retry: true,
            })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(DeactivateError::permanent(net::redirect_refused(
                "Slack SCIM",
                status,
                response.headers(),
                "set scim_url to the API's final address",
            )));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Deactivated::NotFound);
        }
        if status.is_success() {
            return Ok(Deactivated::Done);
        }
        let retry = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        let text = response.text().await.unwrap_or_default();
        Err(DeactivateError {
            message: net::answered("Slack SCIM", status, &net::excerpt(&text, 300)),
            retry,
        })
    }
}
