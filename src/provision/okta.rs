//! The `okta` provisioner: grants and revokes by Okta group membership. The
//! entitlement names a group by its `profile.name`; grant = `PUT
//! /api/v1/groups/{group}/users/{user}`, revoke = `DELETE` of the same. The
//! user is found by login, then by email. A grant reports the user's and the
//! group's Okta ids and the revoke addresses exactly those; one that is gone
//! by then is a failure, never "done". Rate limits (`Retry-After`,
//! `X-Rate-Limit-Reset`) are waited out by the job runner. No call follows a
//! redirect.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use super::{
    gone_after_grant, settled, Action, Answer, Outcome, Provisioner, Request, Target, BODY_EXCERPT,
};
use crate::config::Secret;
use crate::net;

/// Pages of a user's groups read before calling it a loop.
const MAX_PAGES: usize = 1_000;

pub struct OktaProvisioner {
    base: Url,
    /// `SSWS <token>`, marked sensitive so reqwest and `http` never print it.
    auth: HeaderValue,
    client: reqwest::Client,
}

// By hand: the client's Debug lists its headers.
impl std::fmt::Debug for OktaProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaProvisioner")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Group {
    id: String,
    #[serde(default)]
    profile: GroupProfile,
}

#[derive(Debug, Default, Deserialize)]
struct GroupProfile {
    #[serde(default)]
    name: String,
}

/// Every step either yields a value or ends the call with its outcome.
type Step<T> = Result<T, Outcome>;

impl OktaProvisioner {
    /// `base_url` is the org URL (`https://example.okta.com`); `timeout`
    /// bounds each HTTP call.
    pub fn new(base_url: &str, token: Secret, timeout: Duration) -> Result<Self, String> {
        let base =
            Url::parse(base_url.trim()).map_err(|e| format!("Okta url {base_url:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(format!("Okta url {base_url:?} must be an http(s) URL"));
        }
        let auth = net::auth_header("SSWS", &token, "Okta")?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        // Never followed: a redirected PUT or DELETE could be replayed as a
        // GET and look done, or carry the token elsewhere.
        let client = net::client(headers, timeout, Policy::none(), "Okta")?;
        Ok(Self { base, auth, client })
    }

    /// `/api/v1/` plus `segments`, each percent-encoded as one segment.
    fn endpoint(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn send(&self, method: Method, url: Url) -> Step<Answer> {
        let what = format!("Okta {method} {}", url.path());
        let sent = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await;
        Answer::read(what, sent).await
    }

    /// A GET that must succeed (404 → `None`), parsed as `T`.
    async fn read<T: serde::de::DeserializeOwned>(&self, url: Url) -> Step<Option<(T, HeaderMap)>> {
        let answer = self.send(Method::GET, url).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(failed(&answer));
        }
        let parsed = serde_json::from_str(&answer.text).map_err(|e| Outcome::Permanent {
            message: format!(
                "{}: unreadable answer ({e}): {}",
                answer.what,
                net::excerpt(&answer.text, BODY_EXCERPT)
            ),
        })?;
        Ok(Some((parsed, answer.headers)))
    }

    /// The user's id: `GET /users/{login}` (a login is usually the email),
    /// else a search on `profile.email`; more than one match is refused.
    async fn find_user(&self, email: &str) -> Step<Option<String>> {
        if let Some((user, _)) = self
            .read::<User>(self.endpoint(&["users", email], &[]))
            .await?
        {
            return Ok(Some(user.id));
        }
        let search = format!("profile.email eq {}", serde_json::Value::from(email));
        let url = self.endpoint(&["users"], &[("search", &search), ("limit", "2")]);
        let found = self
            .read::<Vec<User>>(url)
            .await?
            .map(|(u, _)| u)
            .unwrap_or_default();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next().map(|u| u.id)),
            n => Err(Outcome::Permanent {
                message: format!("{n} Okta users have the email {email}; cannot tell which one"),
            }),
        }
    }

    /// The group whose name is exactly `name` (`q` is a prefix search).
    async fn find_group(&self, name: &str) -> Step<Option<String>> {
        let url = self.endpoint(&["groups"], &[("q", name), ("limit", "200")]);
        let groups = self
            .read::<Vec<Group>>(url)
            .await?
            .map(|(g, _)| g)
            .unwrap_or_default();
        let mut exact: Vec<Group> = groups
            .into_iter()
            .filter(|g| g.profile.name == name)
            .collect();
        match exact.len() {
            0 => Ok(None),
            1 => Ok(exact.pop().map(|g| g.id)),
            n => Err(Outcome::Permanent {
                message: format!("{n} Okta groups are named {name:?}; cannot tell which one"),
            }),
        }
    }

    /// Whether `user` is in `group`, from every page of the user's groups.
    async fn is_member(&self, user: &str, group: &str) -> Step<bool> {
        let mut url = self.endpoint(&["users", user, "groups"], &[("limit", "200")]);
        for _ in 0..MAX_PAGES {
            let Some((groups, headers)) = self.read::<Vec<Group>>(url.clone()).await? else {
                return Err(Outcome::Permanent {
                    message: format!("Okta user {user} is not found"),
                });
            };
            if groups.iter().any(|g| g.id == group) {
                return Ok(true);
            }
            match net::next_link(&headers).and_then(|next| url.join(&next).ok()) {
                // Only on the org's own host: the token goes nowhere else.
                Some(next) if next.origin() == self.base.origin() => url = next,
                Some(next) => {
                    return Err(Outcome::Permanent {
                        message: format!(
                            "Okta GET {}: the next page is on another host ({}); not sending the token there",
                            url.path(),
                            next.host_str().unwrap_or("?")
                        ),
                    })
                }
                None => return Ok(false),
            }
        }
        Err(Outcome::Permanent {
            message: format!("Okta: more than {MAX_PAGES} pages of groups for user {user}"),
        })
    }

    async fn grant(&self, request: &Request) -> Step<(Outcome, Option<Target>)> {
        let email = &request.user.email;
        let Some(user) = self.find_user(email).await? else {
            return Err(Outcome::Permanent {
                message: format!("no Okta user has the login or email {email}"),
            });
        };
        let Some(group) = self.find_group(&request.entitlement).await? else {
            return Err(Outcome::Permanent {
                message: format!("no Okta group is named {:?}", request.entitlement),
            });
        };
        let target = Target {
            account: user.clone(),
            group: Some(group.clone()),
        };
        if self.is_member(&user, &group).await? {
            return Ok((Outcome::AlreadyInState, Some(target)));
        }
        let answer = self
            .send(
                Method::PUT,
                self.endpoint(&["groups", &group, "users", &user], &[]),
            )
            .await?;
        if answer.status.is_success() {
            return Ok((Outcome::Applied, Some(target)));
        }
        Err(failed(&answer))
    }

    async fn revoke(&self, request: &Request) -> Step<Outcome> {
        let gone = |what: String| gone_after_grant(what, "Okta");
        let (user, group) = match &request.target {
            Some(Target {
                account,
                group: Some(group),
            }) => (account.clone(), group.clone()),
            // Granted before ids were recorded: as at grant time, and a miss
            // is a failure.
            _ => {
                let email = &request.user.email;
                let Some(user) = self.find_user(email).await? else {
                    return Err(gone(format!("no Okta user has the login or email {email}")));
                };
                let Some(group) = self.find_group(&request.entitlement).await? else {
                    return Err(gone(format!(
                        "no Okta group is named {:?}",
                        request.entitlement
                    )));
                };
                (user, group)
            }
        };
        if self
            .read::<Group>(self.endpoint(&["groups", &group], &[]))
            .await?
            .is_none()
        {
            return Err(gone(format!("Okta group {group} is not found")));
        }
        if !self.is_member(&user, &group).await.map_err(|o| match o {
            Outcome::Permanent { message } if message.ends_with("is not found") => gone(message),
            other => other,
        })? {
            return Ok(Outcome::AlreadyInState);
        }
        let answer = self
            .send(
                Method::DELETE,
                self.endpoint(&["groups", &group, "users", &user], &[]),
            )
            .await?;
        if answer.status.is_success() {
            return Ok(Outcome::Applied);
        }
        if answer.status == StatusCode::NOT_FOUND {
            return Err(gone(format!("{} answered 404", answer.what)));
        }
        Err(failed(&answer))
    }
}

impl Provisioner for OktaProvisioner {
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

/// A non-2xx answer: rate limits and server errors are retried (after the
/// window Okta names), redirects and other 4xx are failures.
fn failed(answer: &Answer) -> Outcome {
    let status = answer.status;
    if status.is_redirection() {
        return answer.redirect_refused("set the provisioner's url to the org's own address");
    }
    let message = answer.message();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let now = chrono::Utc::now();
        Outcome::Transient {
            message,
            retry_after: net::retry_after_header(&answer.headers, now)
                .or_else(|| net::reset_header(&answer.headers, "x-rate-limit-reset", now)),
        }
    } else {
        Outcome::Permanent { message }
    }
}
