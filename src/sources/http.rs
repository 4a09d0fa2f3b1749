//! Paged JSON reads for the REST sources (Okta, GitHub): one client with a
//! sensitive auth header, HTTP status → [`SourceError`], `Link: rel="next"`
//! paging with loop, host and page-count guards, and the `x-ratelimit-*`
//! headers both vendors send. Shared by `okta` and `github`; the GET with an
//! `Authorization` value, the no-answer error and the body excerpt's length
//! are every HTTP source's (`scim` and `google` too).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use url::Url;

use crate::config::Secret;
use crate::net;
use crate::sources::{SourceError, HTTP_TIMEOUT};

/// Pages of one listing before we call it a loop the guards missed: at
/// 100–200 entries a page, well past any real organization.
pub(crate) const MAX_PAGES: usize = 10_000;
/// The longest a fetch waits for a rate-limit window it has used up; longer
/// resets are handed to the scheduler as `RateLimited`.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// How much of an error body a message keeps.
pub(crate) const BODY_EXCERPT: usize = 300;

pub(crate) struct Api {
    vendor: &'static str,
    base: Url,
    /// `<scheme> <token>`, marked sensitive.
    auth: HeaderValue,
    /// Kept only to scrub it from error bodies that might echo it.
    token: Secret,
    client: reqwest::Client,
    /// Set when a response said the rate-limit window is used up.
    resume_at: Mutex<Option<SystemTime>>,
}

// By hand: the client's Debug lists its default headers.
impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("vendor", &self.vendor)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Api {
    /// `base_url` is where [`Api::endpoint`] paths start; `scheme` is the
    /// Authorization scheme (`SSWS`, `Bearer`). Errors never hold the token.
    pub(crate) fn new(
        vendor: &'static str,
        base_url: &str,
        scheme: &str,
        token: Secret,
        headers: HeaderMap,
    ) -> Result<Self, String> {
        let base =
            Url::parse(base_url.trim()).map_err(|e| format!("{vendor} URL {base_url:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https")
            || base.cannot_be_a_base()
            || base.host_str().is_none()
        {
            return Err(format!("{vendor} URL {base_url:?} must be an http(s) URL"));
        }
        let auth = net::auth_header(scheme, &token, vendor)?;
        // A redirect could carry the token elsewhere; paging links are
        // followed by hand, after the host check.
        let client = net::client(headers, HTTP_TIMEOUT, Policy::none(), vendor)?;
        Ok(Self {
            vendor,
            base,
            auth,
            token,
            client,
            resume_at: Mutex::new(None),
        })
    }

    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// The base plus `segments`, each percent-encoded as one segment, so an
    /// id from the server can never change the path's shape.
    pub(crate) fn endpoint(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One JSON document.
    pub(crate) async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, SourceError> {
        let (body, _) = self.call(&url).await?;
        self.parse(&url, &body)
    }

    /// Every page of a listing whose pages are JSON arrays, following
    /// `Link: <…>; rel="next"`. Any failed page fails the whole listing.
    pub(crate) async fn get_all<T: DeserializeOwned>(
        &self,
        first: Url,
    ) -> Result<Vec<T>, SourceError> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut url = first;
        loop {
            if seen.len() >= MAX_PAGES {
                return Err(SourceError::Invalid(format!(
                    "{} GET {}: more than {MAX_PAGES} pages; stopping",
                    self.vendor,
                    url.path()
                )));
            }
            seen.insert(url.to_string());
            let (body, headers) = self.call(&url).await?;
            items.extend(self.parse::<Vec<T>>(&url, &body)?);
            let Some(target) = net::next_link(&headers) else {
                return Ok(items);
            };
            let next = url.join(&target).map_err(|e| {
                SourceError::Invalid(format!(
                    "{} GET {}: unreadable next link ({e})",
                    self.vendor,
                    url.path()
                ))
            })?;
            if next.origin() != self.base.origin() {
                return Err(SourceError::Invalid(format!(
                    "{} GET {}: the next page is on another host ({}); not sending the token there",
                    self.vendor,
                    url.path(),
                    next.host_str().unwrap_or("?")
                )));
            }
            if seen.contains(next.as_str()) {
                return Err(SourceError::Invalid(format!(
                    "{} GET {}: the next link points back to a page already read",
                    self.vendor,
                    url.path()
                )));
            }
            url = next;
        }
    }

    fn parse<T: DeserializeOwned>(&self, url: &Url, body: &str) -> Result<T, SourceError> {
        serde_json::from_str(body).map_err(|e| {
            SourceError::Invalid(format!(
                "{} GET {}: unreadable answer ({e}): {}",
                self.vendor,
                url.path(),
                self.excerpt(body)
            ))
        })
    }

    /// One GET; a 2xx body and its headers, or the mapped error.
    async fn call(&self, url: &Url) -> Result<(String, HeaderMap), SourceError> {
        self.wait_for_window().await?;
        let what = format!("{} GET {}", self.vendor, url.path());
        let response = get_with_auth(&self.client, url.clone(), self.auth.clone(), &what).await?;
        let status = response.status();
        let headers = response.headers().clone();
        self.note_window(&headers);
        let body = response.text().await.map_err(|e| no_answer(&what, &e))?;
        if status.is_success() {
            return Ok((body, headers));
        }
        Err(classify(
            &what,
            status,
            &headers,
            &self.error_text(&body),
            SystemTime::now(),
        ))
    }

    /// Pauses (bounded) when an earlier answer said the window is used up,
    /// rather than spending a request on a certain 429.
    async fn wait_for_window(&self) -> Result<(), SourceError> {
        // Read, not taken: concurrent calls all wait for the same reset.
        let resume_at = self.resume_at.lock().ok().and_then(|slot| *slot);
        let Some(at) = resume_at else {
            return Ok(());
        };
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        if wait > MAX_PAUSE {
            return Err(SourceError::RateLimited {
                retry_after: Some(wait),
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Remembers a used-up window until an answer shows a fresh one.
    fn note_window(&self, headers: &HeaderMap) {
        let Some(remaining) = header_u64(headers, "x-ratelimit-remaining") else {
            return;
        };
        let reset = header_u64(headers, "x-ratelimit-reset");
        if let Ok(mut slot) = self.resume_at.lock() {
            *slot = match (remaining, reset) {
                (0, Some(reset)) => Some(UNIX_EPOCH + Duration::from_secs(reset)),
                _ => None,
            };
        }
    }

    /// The vendor's own error text (Okta `errorCode errorSummary`, GitHub
    /// `message`) or a cut of the body, with the token scrubbed out.
    fn error_text(&self, body: &str) -> String {
        let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let text = match (field("errorCode"), field("errorSummary"), field("message")) {
            (Some(code), Some(summary), _) => format!("{code} {summary}"),
            (_, Some(summary), _) => summary,
            (_, _, Some(message)) => message,
            _ => body.to_string(),
        };
        self.excerpt(&text)
    }

    fn excerpt(&self, text: &str) -> String {
        let token = self.token.expose();
        let scrubbed = if token.is_empty() {
            text.to_string()
        } else {
            text.replace(token, "[redacted]")
        };
        net::excerpt(&scrubbed, BODY_EXCERPT)
    }
}

/// A non-2xx answer. A 403 that comes with a used-up window or a
/// Retry-After is GitHub's way of rate limiting (primary and secondary
/// limits), not a refused token.
fn classify(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    text: &str,
    now: SystemTime,
) -> SourceError {
    let message = net::answered(what, status, text);
    let hint = || rate_limit_hint(headers, now);
    let window_used_up = header_u64(headers, "x-ratelimit-remaining") == Some(0);
    match status {
        StatusCode::TOO_MANY_REQUESTS => SourceError::RateLimited {
            retry_after: hint(),
        },
        StatusCode::FORBIDDEN if window_used_up || headers.contains_key(RETRY_AFTER) => {
            SourceError::RateLimited {
                retry_after: hint(),
            }
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SourceError::Auth(message),
        StatusCode::REQUEST_TIMEOUT => SourceError::Unavailable(message),
        s if s.is_server_error() => SourceError::Unavailable(message),
        _ => SourceError::Invalid(message),
    }
}

/// `Retry-After` (seconds or an HTTP date), else the rate-limit reset
/// (epoch seconds) less now.
fn rate_limit_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(wait) = net::retry_after_header(headers, now.into()) {
        return Some(wait);
    }
    let reset = UNIX_EPOCH + Duration::from_secs(header_u64(headers, "x-ratelimit-reset")?);
    Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `name` as GitHub spells it (`x-ratelimit-reset`), or as Okta does
/// (`x-rate-limit-reset`).
fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    let okta = name.replacen("ratelimit", "rate-limit", 1);
    let value = [name, okta.as_str()]
        .into_iter()
        .find_map(|n| headers.get(n)?.to_str().ok()?.trim().parse().ok());
    value
}

/// One GET with `auth` as its `Authorization`; the answer whatever its status.
pub(crate) async fn get_with_auth(
    client: &reqwest::Client,
    url: Url,
    auth: HeaderValue,
    what: &str,
) -> Result<reqwest::Response, SourceError> {
    client
        .get(url)
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .map_err(|e| no_answer(what, &e))
}

/// No answer at all: the peer may be back soon.
pub(crate) fn no_answer(what: &str, err: &reqwest::Error) -> SourceError {
    SourceError::Unavailable(net::no_answer(what, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn statuses_and_rate_limit_hints() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let none = HeaderMap::new();
        let reset = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1000090"),
        ]);
        assert!(matches!(
            classify("x", StatusCode::TOO_MANY_REQUESTS, &reset, "", now),
            SourceError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(90)
        ));
        assert!(matches!(
            classify("x", StatusCode::FORBIDDEN, &reset, "API rate limit exceeded", now),
            SourceError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(90)
        ));
        let secondary = headers(&[("retry-after", "60")]);
        assert!(matches!(
            classify("x", StatusCode::FORBIDDEN, &secondary, "secondary", now),
            SourceError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(60)
        ));
        assert!(matches!(
            classify("x", StatusCode::FORBIDDEN, &none, "no", now),
            SourceError::Auth(m) if m == "x answered 403 no"
        ));
        assert!(matches!(
            classify("x", StatusCode::BAD_GATEWAY, &none, "", now),
            SourceError::Unavailable(m) if m == "x answered 502"
        ));
        assert!(matches!(
            classify("x", StatusCode::NOT_FOUND, &none, "Not Found", now),
            SourceError::Invalid(_)
        ));
        let okta = headers(&[
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "1000030"),
        ]);
        assert!(matches!(
            classify("x", StatusCode::TOO_MANY_REQUESTS, &okta, "E0000047", now),
            SourceError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(30)
        ));
        let date = headers(&[("retry-after", "Mon, 12 Jan 1970 13:48:40 GMT")]);
        assert_eq!(rate_limit_hint(&date, now), Some(Duration::from_secs(120)));
    }
}
