//! The `github` provisioner: grants and revokes GitHub team membership,
//! `PUT`/`DELETE /orgs/{org}/teams/{team}/memberships/{username}`. The
//! entitlement is the team's slug (`team:` in front is allowed, as the
//! `github` source writes it). The person's login comes from the
//! provisioner's `logins` table, else from the org's verified-domain emails
//! (GraphQL `organizationVerifiedDomainEmails`); never from a public profile
//! email, which anyone sets. A grant records the user's numeric id (logins
//! can be renamed) and the team; the revoke finds the login again by that id.
//! Rate limits (`Retry-After`, `x-ratelimit-reset`) are waited out by the job
//! runner; no call follows a redirect.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use super::{
    gone_after_grant, settled, Action, Answer, Outcome, Provisioner, Request, Target, BODY_EXCERPT,
};
use crate::config::Secret;
use crate::net;

/// Pages of org members read looking for a verified email (100 a page).
const MAX_PAGES: usize = 500;

pub struct GithubProvisioner {
    api: Url,
    graphql: Url,
    org: String,
    logins: BTreeMap<String, String>,
    auth: HeaderValue,
    client: reqwest::Client,
}

impl std::fmt::Debug for GithubProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubProvisioner")
            .field("api", &self.api.as_str())
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    login: String,
}

#[derive(Debug, Deserialize)]
struct Membership {
    #[serde(default)]
    state: String,
}

type Step<T> = Result<T, Outcome>;

impl GithubProvisioner {
    /// `api_url`: `https://api.github.com`, or Enterprise Server's
    /// `https://HOST/api/v3` (its GraphQL endpoint is `/api/graphql`).
    pub fn new(
        api_url: &str,
        org: &str,
        logins: BTreeMap<String, String>,
        token: Secret,
        timeout: Duration,
    ) -> Result<Self, String> {
        let api =
            Url::parse(api_url.trim()).map_err(|e| format!("GitHub api_url {api_url:?}: {e}"))?;
        if !matches!(api.scheme(), "http" | "https") || api.cannot_be_a_base() {
            return Err(format!("GitHub api_url {api_url:?} must be an http(s) URL"));
        }
        let graphql = match api.path().trim_end_matches('/').strip_suffix("/v3") {
            Some(prefix) => api.join(&format!("{prefix}/graphql")),
            None => api.join("/graphql"),
        }
        .map_err(|e| format!("GitHub api_url {api_url:?}: {e}"))?;
        let auth = net::auth_header("Bearer", &token, "GitHub")?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(USER_AGENT, HeaderValue::from_static("accessd"));
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        let client = net::client(headers, timeout, Policy::none(), "GitHub")?;
        Ok(Self {
            api,
            graphql,
            org: org.to_string(),
            logins,
            auth,
            client,
        })
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.api.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(&self, method: Method, url: Url, body: Option<&Value>) -> Step<Answer> {
        let what = format!("GitHub {method} {}", url.path());
        let mut call = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(body) = body {
            call = call.json(body);
        }
        Answer::read(what, call.send().await).await
    }

    fn parse<T: serde::de::DeserializeOwned>(answer: &Answer) -> Step<T> {
        serde_json::from_str(&answer.text).map_err(|e| Outcome::Permanent {
            message: format!(
                "{}: unreadable answer ({e}): {}",
                answer.what,
                net::excerpt(&answer.text, BODY_EXCERPT)
            ),
        })
    }

    /// The login for `email`: the `logins` table, else the org member whose
    /// verified-domain emails hold it.
    async fn login_of(&self, email: &str) -> Step<Option<String>> {
        if let Some(login) = self.logins.get(&email.to_lowercase()) {
            return Ok(Some(login.clone()));
        }
        let query = "query($org: String!, $after: String) { organization(login: $org) { \
            membersWithRole(first: 100, after: $after) { pageInfo { hasNextPage endCursor } \
            nodes { login organizationVerifiedDomainEmails(login: $org) } } } }";
        let mut after = Value::Null;
        for _ in 0..MAX_PAGES {
            let body = json!({ "query": query, "variables": { "org": self.org, "after": after } });
            let answer = self
                .send(Method::POST, self.graphql.clone(), Some(&body))
                .await?;
            if !answer.status.is_success() {
                return Err(failed(&answer));
            }
            let page: Value = Self::parse(&answer)?;
            if let Some(errors) = page.get("errors").filter(|e| !e.is_null()) {
                return Err(Outcome::Permanent {
                    message: format!(
                        "{}: {}",
                        answer.what,
                        net::excerpt(&errors.to_string(), BODY_EXCERPT)
                    ),
                });
            }
            let members = &page["data"]["organization"]["membersWithRole"];
            let found = members["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|node| {
                    node["organizationVerifiedDomainEmails"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|e| e.as_str().is_some_and(|e| e.eq_ignore_ascii_case(email)))
                });
            if let Some(login) = found.and_then(|n| n["login"].as_str()) {
                return Ok(Some(login.to_string()));
            }
            if members["pageInfo"]["hasNextPage"] != Value::Bool(true) {
                return Ok(None);
            }
            after = members["pageInfo"]["endCursor"].clone();
        }
        Ok(None)
    }

    /// `GET` of something that may not exist: `None` on 404.
    async fn read<T: serde::de::DeserializeOwned>(&self, url: Url) -> Step<Option<T>> {
        let answer = self.send(Method::GET, url, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(failed(&answer));
        }
        Self::parse(&answer).map(Some)
    }

    fn membership(&self, team: &str, login: &str) -> Url {
        self.endpoint(&["orgs", &self.org, "teams", team, "memberships", login])
    }

    async fn grant(&self, request: &Request) -> Step<(Outcome, Option<Target>)> {
        let email = &request.user.email;
        let team = team_slug(&request.entitlement);
        let Some(login) = self.login_of(email).await? else {
            return Err(Outcome::Permanent {
                message: format!(
                    "no GitHub login is known for {email}: add it to the provisioner's `logins`, or have the org verify its email domain"
                ),
            });
        };
        let Some(user) = self.read::<User>(self.endpoint(&["users", &login])).await? else {
            return Err(Outcome::Permanent {
                message: format!("GitHub has no user {login:?} (for {email})"),
            });
        };
        let target = Target {
            account: user.id.to_string(),
            group: Some(team.to_string()),
        };
        if self
            .read::<Value>(self.endpoint(&["orgs", &self.org, "teams", team]))
            .await?
            .is_none()
        {
            return Err(Outcome::Permanent {
                message: format!("the GitHub org {} has no team {team:?}", self.org),
            });
        }
        let current = self
            .read::<Membership>(self.membership(team, &user.login))
            .await?;
        if current.is_some_and(|m| m.state == "active") {
            return Ok((Outcome::AlreadyInState, Some(target)));
        }
        let answer = self
            .send(
                Method::PUT,
                self.membership(team, &user.login),
                Some(&json!({ "role": "member" })),
            )
            .await?;
        if answer.status.is_success() {
            return Ok((Outcome::Applied, Some(target)));
        }
        Err(failed(&answer))
    }

    async fn revoke(&self, request: &Request) -> Step<Outcome> {
        let gone = |what: String| gone_after_grant(what, "GitHub");
        let (login, team) = match &request.target {
            Some(Target {
                account,
                group: Some(team),
            }) => {
                let Some(user) = self.read::<User>(self.endpoint(&["user", account])).await? else {
                    return Err(gone(format!("GitHub user {account} is not found")));
                };
                (user.login, team.clone())
            }
            _ => {
                let email = &request.user.email;
                let Some(login) = self.login_of(email).await? else {
                    return Err(gone(format!("no GitHub login is known for {email}")));
                };
                (login, team_slug(&request.entitlement).to_string())
            }
        };
        if self
            .read::<Value>(self.endpoint(&["orgs", &self.org, "teams", &team]))
            .await?
            .is_none()
        {
            return Err(gone(format!("GitHub team {team:?} is not found")));
        }
        if self
            .read::<Membership>(self.membership(&team, &login))
            .await?
            .is_none()
        {
            return Ok(Outcome::AlreadyInState);
        }
        let answer = self
            .send(Method::DELETE, self.membership(&team, &login), None)
            .await?;
        if answer.status.is_success() {
            return Ok(Outcome::Applied);
        }
        Err(failed(&answer))
    }
}

impl Provisioner for GithubProvisioner {
    async fn provision(&self, request: &Request) -> Outcome {
        self.provision_for_record(request).await.0
    }

    async fn provision_for_record(&self, request: &Request) -> (Outcome, Option<Target>) {
        match request.action {
            Action::Grant => settled(self.grant(request).await),
            Action::Revoke => settled(self.revoke(request).await.map(|outcome| (outcome, None))),
        }
    }
}

/// `team:platform` or `platform` → `platform`.
fn team_slug(entitlement: &str) -> &str {
    entitlement.strip_prefix("team:").unwrap_or(entitlement)
}

/// A non-2xx answer. GitHub signals a spent rate limit as 429, or as 403
/// with `x-ratelimit-remaining: 0`; both wait for the window. Server errors
/// retry; redirects and other 4xx fail.
fn failed(answer: &Answer) -> Outcome {
    let status = answer.status;
    if status.is_redirection() {
        return answer.redirect_refused("set the provisioner's api_url to the final address");
    }
    let message = answer.message();
    let spent = status == StatusCode::FORBIDDEN
        && answer
            .headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            == Some("0");
    if status == StatusCode::TOO_MANY_REQUESTS || spent || status.is_server_error() {
        let now = chrono::Utc::now();
        let reset = net::reset_header(&answer.headers, "x-ratelimit-reset", now);
        Outcome::Transient {
            message,
            retry_after: net::retry_after_header(&answer.headers, now).or(reset),
        }
    } else {
        Outcome::Permanent { message }
    }
}
