//! The `scim` source: a directory's Users and Groups over SCIM 2.0 (RFC
//! 7643/7644), paged with `startIndex`/`count`; group memberships become the
//! users' entitlements, the enterprise extension's manager id their manager.
//!
//! Paging by offset is only consistent while nothing changes, so every
//! sign that the listing moved underneath (a different `totalResults`, an id
//! seen twice, an empty page before the end) fails the whole fetch instead of
//! returning what was read so far.

use std::collections::{HashMap, HashSet};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::http::{get_with_auth, no_answer, BODY_EXCERPT};
use super::{Account, AccountStatus, Snapshot, SourceError, HTTP_TIMEOUT};
use crate::config::Secret;
use crate::net;

/// Items asked for per page; servers may answer fewer (RFC 7644 §3.4.2.4).
const PAGE_SIZE: usize = 100;
/// A million users at the default page size: beyond that, something loops.
const MAX_PAGES: usize = 10_000;

pub struct ScimSource {
    base: Url,
    /// `Bearer <token>`, marked sensitive so reqwest and `http` never print it.
    auth: HeaderValue,
    filter: Option<String>,
    app: String,
    client: reqwest::Client,
    page_size: usize,
}

// By hand: the client's Debug lists its headers.
impl std::fmt::Debug for ScimSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimSource")
            .field("base", &self.base.as_str())
            .field("filter", &self.filter)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ListResponse<T> {
    /// REQUIRED (RFC 7644 §3.4.2): without it we cannot know we read all.
    #[serde(rename = "totalResults")]
    total_results: usize,
    // Omitted when nothing matched (RFC 7644 §3.4.2).
    #[serde(rename = "Resources", default = "Vec::new")]
    resources: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    user_name: Option<String>,
    display_name: Option<String>,
    name: Option<Name>,
    /// A boolean by the RFC; some servers send `"False"` as a string.
    active: Option<Value>,
    #[serde(default)]
    emails: Vec<Email>,
    #[serde(rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")]
    enterprise: Option<Enterprise>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Name {
    formatted: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
}

#[derive(Deserialize)]
struct Email {
    value: Option<String>,
    #[serde(default)]
    primary: bool,
}

#[derive(Deserialize)]
struct Enterprise {
    manager: Option<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    id: String,
    display_name: Option<String>,
    /// `None` when left out: an empty group (RFC 7643 §2.5 omits empty
    /// attributes) or a server that excludes members from listings.
    members: Option<Vec<Reference>>,
}

trait Resource: DeserializeOwned {
    fn id(&self) -> &str;
}

impl Resource for User {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Resource for Group {
    fn id(&self) -> &str {
        &self.id
    }
}

impl ScimSource {
    /// `url` is the SCIM service root (`https://idp.example.com/scim/v2`);
    /// `filter` narrows the Users listing (RFC 7644 §3.4.2.2).
    pub fn new(
        url: &str,
        token: Secret,
        filter: Option<String>,
        app: String,
    ) -> Result<Self, String> {
        let base = Url::parse(url).map_err(|e| format!("SCIM url {url:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(format!("SCIM url {url:?} must be an http(s) URL"));
        }
        let auth = net::auth_header("Bearer", &token, "SCIM")?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/scim+json, application/json"),
        );
        // reqwest's default: redirects followed (it drops Authorization on a
        // redirect to another host).
        let client = net::client(headers, HTTP_TIMEOUT, Policy::default(), "SCIM")?;
        Ok(Self {
            base,
            auth,
            filter: filter.filter(|f| !f.trim().is_empty()),
            app,
            client,
            page_size: PAGE_SIZE,
        })
    }

    /// Smaller pages, so tests can page through a handful of users.
    #[doc(hidden)]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    pub async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let users: Vec<User> = self.list("Users", self.filter.as_deref()).await?;
        let groups: Vec<Group> = self.list("Groups", None).await?;

        let mut entitlements: HashMap<String, Vec<String>> = HashMap::new();
        for group in &groups {
            let fetched;
            let members = match &group.members {
                Some(members) => members,
                None => {
                    fetched = self.group_members(&group.id).await?;
                    &fetched
                }
            };
            let name = group
                .display_name
                .clone()
                .unwrap_or_else(|| group.id.clone());
            for member in members.iter().filter_map(|m| m.value.as_deref()) {
                // Members outside the listed users (other filter, nested
                // groups) are someone else's business, not an error.
                entitlements
                    .entry(member.to_string())
                    .or_default()
                    .push(name.clone());
            }
        }

        let emails: HashMap<&str, String> = users
            .iter()
            .filter_map(|u| email_of(u).map(|e| (u.id.as_str(), e)))
            .collect();
        let accounts = users
            .iter()
            .map(|u| Account {
                app: self.app.clone(),
                id: u.id.clone(),
                email: emails.get(u.id.as_str()).cloned(),
                name: name_of(u),
                status: if is_false(u.active.as_ref()) {
                    AccountStatus::Suspended
                } else {
                    AccountStatus::Active
                },
                manager: u
                    .enterprise
                    .as_ref()
                    .and_then(|e| e.manager.as_ref())
                    .and_then(|m| m.value.as_deref())
                    .and_then(|id| emails.get(id).cloned()),
                entitlements: entitlements.remove(&u.id).unwrap_or_default(),
                url: None,
            })
            .collect();
        Ok(Snapshot {
            apps: Vec::new(),
            accounts,
        })
    }

    /// Every resource of `kind`, page by page, or an error: never a part.
    async fn list<T: Resource>(
        &self,
        kind: &str,
        filter: Option<&str>,
    ) -> Result<Vec<T>, SourceError> {
        let mut out: Vec<T> = Vec::new();
        let mut seen = HashSet::new();
        let mut total = None;
        let mut start = 1;
        for _ in 0..MAX_PAGES {
            let mut url = self.endpoint(&[kind]);
            {
                let mut query = url.query_pairs_mut();
                query
                    .append_pair("startIndex", &start.to_string())
                    .append_pair("count", &self.page_size.to_string());
                if let Some(filter) = filter {
                    query.append_pair("filter", filter);
                }
            }
            let page: ListResponse<T> = self.get(url).await?;
            let path = format!("SCIM /{kind} at startIndex {start}");
            match total {
                None => total = Some(page.total_results),
                Some(t) if t != page.total_results => {
                    return Err(SourceError::Unavailable(format!(
                        "{path}: totalResults changed from {t} to {} while paging; \
                         the listing moved, the next sync tries again",
                        page.total_results
                    )))
                }
                Some(_) => {}
            }
            if page.resources.is_empty() {
                if out.len() >= page.total_results {
                    return Ok(out);
                }
                return Err(SourceError::Invalid(format!(
                    "{path}: empty page after {} of {} results",
                    out.len(),
                    page.total_results
                )));
            }
            start += page.resources.len();
            for resource in page.resources {
                if !seen.insert(resource.id().to_string()) {
                    return Err(SourceError::Invalid(format!(
                        "{path}: {:?} was already listed on an earlier page \
                         (does the server honour startIndex?)",
                        resource.id()
                    )));
                }
                out.push(resource);
            }
            if out.len() >= page.total_results {
                return Ok(out);
            }
        }
        Err(SourceError::Invalid(format!(
            "SCIM /{kind}: more than {MAX_PAGES} pages; giving up"
        )))
    }

    /// The members of one group whose listing left them out.
    async fn group_members(&self, id: &str) -> Result<Vec<Reference>, SourceError> {
        let group: Group = self.get(self.endpoint(&["Groups", id])).await?;
        Ok(group.members.unwrap_or_default())
    }

    /// The service root plus `segments`, each percent-encoded as one segment,
    /// so an id from the server can never change the path's shape.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, SourceError> {
        let what = format!("SCIM GET {}", url.path());
        let response = get_with_auth(&self.client, url, self.auth.clone(), &what).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| no_answer(&what, &e))?;
        if !status.is_success() {
            return Err(http_error(&what, status, &headers, &text));
        }
        serde_json::from_str(&text).map_err(|e| {
            SourceError::Invalid(format!(
                "{what}: unreadable answer ({e}): {}",
                net::excerpt(&text, BODY_EXCERPT)
            ))
        })
    }
}

/// The primary email, else the first, else a `userName` that is an email.
fn email_of(user: &User) -> Option<String> {
    let values = || user.emails.iter().filter_map(|e| e.value.as_ref());
    user.emails
        .iter()
        .find(|e| e.primary && e.value.is_some())
        .and_then(|e| e.value.clone())
        .or_else(|| values().next().cloned())
        .or_else(|| {
            user.user_name
                .clone()
                .filter(|n| n.contains('@') && !n.contains(char::is_whitespace))
        })
}

fn name_of(user: &User) -> Option<String> {
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    non_empty(&user.display_name)
        .or_else(|| user.name.as_ref().and_then(|n| non_empty(&n.formatted)))
        .or_else(|| {
            let name = user.name.as_ref()?;
            let parts: Vec<String> = [&name.given_name, &name.family_name]
                .into_iter()
                .filter_map(non_empty)
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
}

fn is_false(active: Option<&Value>) -> bool {
    match active {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

fn http_error(what: &str, status: StatusCode, headers: &HeaderMap, body: &str) -> SourceError {
    let message = net::answered(what, status, &net::excerpt(body, BODY_EXCERPT));
    match status.as_u16() {
        401 | 403 => SourceError::Auth(message),
        429 => SourceError::RateLimited {
            retry_after: net::retry_after_header(headers, chrono::Utc::now()),
        },
        s if s >= 500 || s == 408 => SourceError::Unavailable(message),
        _ => SourceError::Invalid(message),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn user(json: Value) -> User {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn emails_names_and_status_fall_back_in_order() {
        let u = user(serde_json::json!({
            "id": "1", "userName": "ann@example.com",
            "emails": [{"value": "work@x.com"}, {"value": "main@x.com", "primary": true}],
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "active": "False"
        }));
        assert_eq!(email_of(&u).as_deref(), Some("main@x.com"));
        assert_eq!(name_of(&u).as_deref(), Some("Ann Lee"));
        assert!(is_false(u.active.as_ref()));

        let u = user(serde_json::json!({
            "id": "2", "userName": "bob@example.com", "displayName": " ",
            "name": {"formatted": "Bob B."}
        }));
        assert_eq!(email_of(&u).as_deref(), Some("bob@example.com"));
        assert_eq!(name_of(&u).as_deref(), Some("Bob B."));
        assert!(!is_false(u.active.as_ref()));

        let u = user(serde_json::json!({"id": "3", "userName": "carol", "active": true}));
        assert_eq!(email_of(&u), None);
        assert_eq!(name_of(&u), None);
    }

    #[test]
    fn statuses_map_to_errors() {
        let none = HeaderMap::new();
        let e = http_error("x", StatusCode::FORBIDDEN, &none, "{\"detail\":\"no\"}");
        assert!(matches!(e, SourceError::Auth(m) if m == "x answered 403 {\"detail\":\"no\"}"));
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("12"));
        let e = http_error("x", StatusCode::TOO_MANY_REQUESTS, &h, "");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
        assert!(matches!(
            http_error("x", StatusCode::BAD_GATEWAY, &none, "<html>"),
            SourceError::Unavailable(_)
        ));
        assert!(matches!(
            http_error("x", StatusCode::BAD_REQUEST, &none, "invalidFilter"),
            SourceError::Invalid(m) if m.contains("invalidFilter")
        ));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("soon"),
        );
        let e = http_error("x", StatusCode::TOO_MANY_REQUESTS, &h, "");
        assert_eq!(e.retry_after(), None);
    }

    #[test]
    fn urls_and_tokens_are_checked_without_echoing_the_token() {
        assert!(ScimSource::new("ftp://x", Secret::new("t".into()), None, "a".into()).is_err());
        let err = ScimSource::new(
            "http://x",
            Secret::new("bad\nsecret".into()),
            None,
            "a".into(),
        )
        .unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        let s = ScimSource::new(
            "https://idp.example.com/scim/v2/",
            Secret::new("s3cr3t".into()),
            None,
            "a".into(),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert_eq!(
            s.endpoint(&["Groups", "a/../b?c"]).as_str(),
            "https://idp.example.com/scim/v2/Groups/a%2F..%2Fb%3Fc"
        );
    }
}
