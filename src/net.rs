//! The small HTTP helpers every outbound client shares (SCIM and webhook
//! provisioners, the SCIM, Google, Okta and GitHub sources): `Retry-After`
//! parsing, one-line body excerpts, why a request got no answer, the
//! sensitive `Authorization` value, the client builder and the process-wide
//! crypto provider. Each caller keeps its own status mapping and error type;
//! only the mechanics live here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, LINK, RETRY_AFTER};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use crate::config::Secret;

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date
/// already past means "now". `now` is a parameter so tests need no clock.
/// No cap: how long is too long is each caller's call.
pub(crate) fn retry_after(text: &str, now: DateTime<Utc>) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

/// [`retry_after`] of the `Retry-After` header, if there is a readable one.
pub(crate) fn retry_after_header(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    retry_after(text, now)
}

/// The wait a `header` holding the Unix second a rate-limit window opens
/// again asks for (Okta's `X-Rate-Limit-Reset`, GitHub's
/// `x-ratelimit-reset`); at least a second.
pub(crate) fn reset_header(
    headers: &HeaderMap,
    header: &str,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let at: i64 = headers.get(header)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(
        u64::try_from((at - now.timestamp()).max(1)).ok()?,
    ))
}

/// The message for a 3xx a provisioner will not follow (a redirected change
/// could be replayed as a read and look done, or carry a token elsewhere):
/// where it pointed, and `fix`.
pub(crate) fn redirect_refused(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    fix: &str,
) -> String {
    let to = headers
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or("(no Location)");
    format!(
        "{}: a redirect to {}, not followed: {fix}",
        answered(what, status, ""),
        excerpt(to, 300)
    )
}

/// At most `max` bytes of the start of a body, whitespace folded so a
/// failure message stays one log line, cut on a character boundary so a
/// multi-byte character is never split.
pub(crate) fn excerpt(body: &str, max: usize) -> String {
    let folded = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut end = folded.len().min(max);
    while !folded.is_char_boundary(end) {
        end -= 1;
    }
    folded[..end].to_string()
}

/// `<what> answered <code> <text>`, the one-line message of a non-2xx answer
/// (`text` already cut down by the caller); no trailing space when empty.
pub(crate) fn answered(what: &str, status: StatusCode, text: &str) -> String {
    format!("{what} answered {} {text}", status.as_u16())
        .trim_end()
        .to_string()
}

/// The message for a request that got no HTTP answer at all: `what`, then
/// whether it timed out or could not connect, then reqwest's own text, which
/// names the URL but never the headers, so no token leaks through it.
/// Callers wrap it in their own error (all of them treat it as transient).
pub(crate) fn no_answer(what: &str, err: &reqwest::Error) -> String {
    let why = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "no answer"
    };
    format!("{what}: {why}: {err}")
}

/// `<scheme> <token>` as an `Authorization` value marked sensitive, so
/// reqwest's and `http`'s Debug never print it. The error names `what`
/// ("SCIM", "Okta") and never the token: it ends up in logs.
pub(crate) fn auth_header(scheme: &str, token: &Secret, what: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(&format!("{scheme} {}", token.expose()))
        .map_err(|_| format!("the {what} token holds characters not allowed in an HTTP header"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A client sending `default_headers` on every request, with `timeout` both
/// for the whole call and for connecting. `redirect` is explicit because
/// callers differ: following one can carry a token to another host.
pub(crate) fn client(
    default_headers: HeaderMap,
    timeout: Duration,
    redirect: Policy,
    what: &str,
) -> Result<reqwest::Client, String> {
    // reqwest is built without a crypto provider of its own.
    install_crypto_provider();
    reqwest::Client::builder()
        .default_headers(default_headers)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(redirect)
        .build()
        .map_err(|e| format!("cannot build the {what} HTTP client: {e}"))
}

/// rustls needs one process-wide crypto provider; ring is the only one built in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `rel="next"` target of the Link headers (RFC 8288): Okta sends one
/// header per link, GitHub one header with comma-separated links.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(mut rest) = value.to_str() else {
            continue;
        };
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('>') else {
                break;
            };
            let target = &after[..close];
            let params = &after[close + 1..];
            let params = &params[..params.find('<').unwrap_or(params.len())];
            let is_next = params.split([';', ',']).any(|param| {
                param.split_once('=').is_some_and(|(key, value)| {
                    key.trim().eq_ignore_ascii_case("rel")
                        && value
                            .trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|rel| rel.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return Some(target.trim().to_string());
            }
            rest = &after[close + 1..];
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past: go ahead now.
        assert_eq!(
            retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", Utc::now()),
            Some(Duration::ZERO)
        );
        // Not capped here; callers that need a cap apply their own.
        assert_eq!(
            retry_after("99999999999", now),
            Some(Duration::from_secs(99_999_999_999))
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("", now), None);
    }

    #[test]
    fn retry_after_reads_the_header() {
        let now = at("2026-01-01T00:00:00Z");
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_header(&headers, now), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("12"));
        assert_eq!(
            retry_after_header(&headers, now),
            Some(Duration::from_secs(12))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(retry_after_header(&headers, now), None);
    }

    #[test]
    fn excerpts_are_one_line_and_cut_on_a_character_boundary() {
        assert_eq!(excerpt("  a\n\tb  c ", 100), "a b c");
        assert_eq!(excerpt("abcdef", 3), "abc");
        assert_eq!(excerpt("", 3), "");
        for max in [300, 512] {
            let long = excerpt(&"é".repeat(600), max);
            assert!(long.len() <= max && long.len() >= max - 1, "{}", long.len());
            assert!(long.chars().all(|c| c == 'é'));
        }
    }

    #[test]
    fn answered_names_the_code_and_drops_an_empty_text() {
        assert_eq!(
            answered("X GET /a", StatusCode::BAD_GATEWAY, ""),
            "X GET /a answered 502"
        );
        assert_eq!(
            answered("x", StatusCode::FORBIDDEN, "{\"detail\":\"no\"}"),
            "x answered 403 {\"detail\":\"no\"}"
        );
    }

    #[tokio::test]
    async fn no_answer_says_why() {
        let err = reqwest::Client::new()
            .get("not a url")
            .send()
            .await
            .unwrap_err();
        let message = no_answer("X GET /a", &err);
        assert!(message.starts_with("X GET /a: no answer: "), "{message}");

        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap_err();
        let message = no_answer("X GET /", &err);
        assert!(
            message.starts_with("X GET /: cannot connect: "),
            "{message}"
        );
    }

    #[test]
    fn auth_headers_are_sensitive_and_errors_never_hold_the_token() {
        let value = auth_header("SSWS", &Secret::new("t0k".into()), "Okta").unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "SSWS t0k");
        assert!(!format!("{value:?}").contains("t0k"));
        let err = auth_header("Bearer", &Secret::new("bad\nsecret".into()), "SCIM").unwrap_err();
        assert_eq!(
            err,
            "the SCIM token holds characters not allowed in an HTTP header"
        );
    }

    #[test]
    fn clients_build() {
        assert!(client(
            HeaderMap::new(),
            Duration::from_secs(1),
            Policy::none(),
            "X"
        )
        .is_ok());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn next_links_in_both_vendor_shapes() {
        let okta = headers(&[
            (
                "link",
                r#"<https://x.okta.com/api/v1/users?limit=200>; rel="self""#,
            ),
            (
                "link",
                r#"<https://x.okta.com/api/v1/users?after=00u1&limit=200>; rel="next""#,
            ),
        ]);
        assert_eq!(
            next_link(&okta).as_deref(),
            Some("https://x.okta.com/api/v1/users?after=00u1&limit=200")
        );
        let github = headers(&[(
            "link",
            r#"<https://api.github.com/organizations/1/members?page=1>; rel="prev", <https://api.github.com/organizations/1/members?page=3>; rel="next", <https://api.github.com/organizations/1/members?page=5>; rel="last""#,
        )]);
        assert_eq!(
            next_link(&github).as_deref(),
            Some("https://api.github.com/organizations/1/members?page=3")
        );
        let last = headers(&[("link", r#"<https://h/a?page=1>; rel="first""#)]);
        assert_eq!(next_link(&last), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
