//! The `google` source: Google Workspace users and groups from the Admin SDK
//! Directory API, read as a service account impersonating an admin
//! (`auth`). Users are the source's own app's accounts; each group's email
//! is an entitlement of its members, indirect members included.

mod auth;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::http::{get_with_auth, no_answer, BODY_EXCERPT};
use super::{Account, AccountStatus, Snapshot, SourceError, HTTP_TIMEOUT};
use crate::net;
use auth::ServiceAccount;

const API_BASE: &str = "https://admin.googleapis.com";
/// The documented maxima of users.list and of groups.list / members.list.
const USERS_PAGE: &str = "500";
const GROUPS_PAGE: &str = "200";
/// Far beyond any directory; past it, a server is looping.
const MAX_PAGES: usize = 10_000;

pub struct GoogleSource {
    /// Boxed: the RSA key is large, and `AnySource` holds every kind inline.
    account: Box<ServiceAccount>,
    customer: String,
    api_base: String,
    app: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for GoogleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleSource")
            .field("account", &self.account)
            .field("customer", &self.customer)
            .field("api_base", &self.api_base)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    primary_email: Option<String>,
    name: Option<UserName>,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    relations: Vec<Relation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserName {
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct Relation {
    value: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Group {
    id: String,
    email: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    id: Option<String>,
    email: Option<String>,
}

impl GoogleSource {
    pub fn new(
        credentials_file: &Path,
        customer: &str,
        subject: &str,
        token_uri: &str,
        app: String,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        // reqwest's default: redirects followed (it drops Authorization on a
        // redirect to another host).
        let client = net::client(headers, HTTP_TIMEOUT, Policy::default(), "Google")?;
        let account = Box::new(ServiceAccount::load(
            credentials_file,
            subject,
            token_uri,
            client.clone(),
        )?);
        let customer = Some(customer.trim())
            .filter(|c| !c.is_empty())
            .unwrap_or("my_customer")
            .to_string();
        Ok(Self {
            account,
            customer,
            api_base: API_BASE.to_string(),
            app,
            client,
        })
    }

    /// Another Directory API root, for tests.
    #[doc(hidden)]
    pub fn with_api_base(mut self, base: &str) -> Self {
        self.api_base = base.trim_end_matches('/').to_string();
        self
    }

    pub async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let customer = [("customer", self.customer.as_str())];
        let users: Vec<User> = self
            .list(
                &["users"],
                &[
                    customer[0],
                    ("maxResults", USERS_PAGE),
                    ("projection", "full"),
                ],
                "users",
            )
            .await?;
        let groups: Vec<Group> = self
            .list(
                &["groups"],
                &[customer[0], ("maxResults", GROUPS_PAGE)],
                "groups",
            )
            .await?;

        let by_email: HashMap<String, &str> = users
            .iter()
            .filter_map(|u| Some((u.primary_email.as_ref()?.to_lowercase(), u.id.as_str())))
            .collect();
        let ids: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let mut entitlements: HashMap<&str, Vec<String>> = HashMap::new();
        for group in &groups {
            let members: Vec<Member> = self
                .list(
                    &["groups", &group.id, "members"],
                    &[
                        ("maxResults", GROUPS_PAGE),
                        ("includeDerivedMembership", "true"),
                    ],
                    "members",
                )
                .await?;
            let name = group.email.clone().unwrap_or_else(|| group.id.clone());
            for member in &members {
                // Nested groups and outsiders match no user and are skipped.
                let user = member
                    .id
                    .as_deref()
                    .and_then(|id| ids.get(id).copied())
                    .or_else(|| {
                        let email = member.email.as_ref()?.to_lowercase();
                        by_email.get(&email).copied()
                    });
                if let Some(user) = user {
                    entitlements.entry(user).or_default().push(name.clone());
                }
            }
        }

        let accounts = users
            .iter()
            .map(|u| Account {
                app: self.app.clone(),
                id: u.id.clone(),
                email: u.primary_email.clone(),
                name: u.name.as_ref().and_then(|n| n.full_name.clone()),
                status: if u.archived {
                    AccountStatus::Deprovisioned
                } else if u.suspended {
                    AccountStatus::Suspended
                } else {
                    AccountStatus::Active
                },
                manager: u
                    .relations
                    .iter()
                    .find(|r| r.kind.as_deref() == Some("manager"))
                    .and_then(|r| r.value.clone()),
                entitlements: entitlements.remove(u.id.as_str()).unwrap_or_default(),
                url: Some(format!("https://admin.google.com/ac/users/{}", u.id)),
            })
            .collect();
        Ok(Snapshot {
            apps: Vec::new(),
            accounts,
        })
    }

    /// Every item of a listing, following `nextPageToken`, or an error.
    async fn list<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        params: &[(&str, &str)],
        field: &str,
    ) -> Result<Vec<T>, SourceError> {
        let mut out = Vec::new();
        let mut tokens = HashSet::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = self.endpoint(segments)?;
            {
                let mut query = url.query_pairs_mut();
                query.extend_pairs(params);
                if let Some(token) = &token {
                    query.append_pair("pageToken", token);
                }
            }
            let what = format!("Google GET {}", url.path());
            let mut page: Value = self.get(url, &what).await?;
            // Google leaves the list out when it is empty.
            if let Some(items) = page.get_mut(field).map(Value::take) {
                let items: Vec<T> = serde_json::from_value(items).map_err(|e| {
                    SourceError::Invalid(format!("{what}: unreadable {field:?} ({e})"))
                })?;
                out.extend(items);
            }
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    if !tokens.insert(next.to_string()) {
                        return Err(SourceError::Invalid(format!(
                            "{what}: nextPageToken points back to a page already read"
                        )));
                    }
                    token = Some(next.to_string());
                }
                _ => return Ok(out),
            }
        }
        Err(SourceError::Invalid(format!(
            "Google /{}: more than {MAX_PAGES} pages; giving up",
            segments.join("/")
        )))
    }

    /// `{api_base}/admin/directory/v1/` plus `segments`, each one path
    /// segment, so a group id can never change the path's shape.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, SourceError> {
        let mut url = Url::parse(&format!("{}/admin/directory/v1", self.api_base))
            .map_err(|e| SourceError::Invalid(format!("API base {:?}: {e}", self.api_base)))?;
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    async fn get<T: DeserializeOwned>(&self, url: Url, what: &str) -> Result<T, SourceError> {
        let bearer = self.account.bearer().await?;
        let response = get_with_auth(&self.client, url, bearer, what).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| no_answer(what, &e))?;
        if !status.is_success() {
            let err = answer_error(what, status, &headers, &text);
            if matches!(err, SourceError::Auth(_)) {
                self.account.forget().await;
            }
            return Err(err);
        }
        serde_json::from_str(&text).map_err(|e| {
            SourceError::Invalid(format!(
                "{what}: unreadable answer ({e}): {}",
                net::excerpt(&text, BODY_EXCERPT)
            ))
        })
    }
}

/// A non-2xx answer. Google reports quota exhaustion as 403 with a reason
/// (`rateLimitExceeded`, `userRateLimitExceeded`, `quotaExceeded`) as well as
/// 429; those are a rate limit, not refused credentials.
fn answer_error(what: &str, status: StatusCode, headers: &HeaderMap, body: &str) -> SourceError {
    let message = net::answered(what, status, &net::excerpt(body, BODY_EXCERPT));
    let wait = || net::retry_after_header(headers, chrono::Utc::now());
    match status.as_u16() {
        429 => SourceError::RateLimited {
            retry_after: wait(),
        },
        403 if is_quota(body) => SourceError::RateLimited {
            retry_after: wait(),
        },
        401 | 403 => SourceError::Auth(message),
        s if s >= 500 || s == 408 => SourceError::Unavailable(message),
        _ => SourceError::Invalid(message),
    }
}

fn is_quota(body: &str) -> bool {
    let reasons = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["errors"].as_array().cloned())
        .unwrap_or_default();
    reasons.iter().any(|e| {
        matches!(
            e["reason"].as_str(),
            Some("rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_refusals_are_rate_limits_and_other_403s_are_auth() {
        let none = HeaderMap::new();
        let quota = r#"{"error":{"code":403,"message":"Quota exceeded","errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded"}]}}"#;
        assert!(matches!(
            answer_error("x", StatusCode::FORBIDDEN, &none, quota),
            SourceError::RateLimited { retry_after: None }
        ));
        let denied = r#"{"error":{"code":403,"message":"Not Authorized to access this resource/api","errors":[{"domain":"global","reason":"forbidden"}]}}"#;
        assert!(matches!(
            answer_error("x", StatusCode::FORBIDDEN, &none, denied),
            SourceError::Auth(m) if m.contains("Not Authorized")
        ));
        assert!(matches!(
            answer_error("x", StatusCode::SERVICE_UNAVAILABLE, &none, ""),
            SourceError::Unavailable(_)
        ));
        assert!(matches!(
            answer_error("x", StatusCode::NOT_FOUND, &none, ""),
            SourceError::Invalid(_)
        ));
    }
}
