//! The Slack Web API client (below the adapters, so the `slack` surfaces, the
//! `slack` source and the `slack_usergroup` provisioner share one):
//! slack-morphism's connector pointed at `slack.api_url`, with a timeout on
//! every call, typed errors and `Retry-After` handling.
//!
//! Every call goes through [`SlackApi::call`] with a JSON body, so the outbox can
//! replay any queued method without a per-method request type. Every request
//! (GET or POST, either token) ends in `bounded`, where it is counted for
//! `/metrics`. Tokens live in slack-morphism's `SlackApiToken`; this type's
//! `Debug` never prints them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::time::Instant;

use crate::config::{Secret, SlackTokens};
use crate::metrics;
use crate::net;

type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// The outbox's name for a POST to an interaction's `response_url` (not a
/// Web API method: no token, the URL itself is the credential).
pub const RESPOND: &str = "response_url";

/// Error codes after which retrying with the same token can never succeed.
const FATAL_AUTH_CODES: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "not_allowed_token_type",
    "app_missing_action_url",
    "invalid_token",
];

/// Why a Web API call did not succeed. Messages carry the method and Slack's
/// error code, never a token or a request body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Slack answered {method} with error `{code}`")]
    Slack { method: String, code: String },
    #[error("Slack rate-limited {method}; retry after {retry_after:?}")]
    RateLimited {
        method: String,
        retry_after: Duration,
    },
    #[error("Slack answered {method} with HTTP {status}")]
    Http { method: String, status: u16 },
    #[error("{method} timed out after {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("could not reach Slack for {method}: {message}")]
    Transport { method: String, message: String },
    #[error("unexpected response to {method}: {message}")]
    Protocol { method: String, message: String },
}

impl ApiError {
    /// Worth retrying later with the same request.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::RateLimited { .. }
            | ApiError::Timeout { .. }
            | ApiError::Transport { .. } => true,
            ApiError::Http { status, .. } => *status >= 500 || *status == 408,
            ApiError::Slack { code, .. } => matches!(
                code.as_str(),
                "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout"
            ),
            ApiError::Protocol { .. } => false,
        }
    }

    /// The token itself is refused: the daemon must stop rather than loop.
    pub fn is_fatal_auth(&self) -> bool {
        matches!(self, ApiError::Slack { code, .. } if FATAL_AUTH_CODES.contains(&code.as_str()))
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Slack { code, .. } => Some(code),
            _ => None,
        }
    }

    fn from_client(method: &str, err: SlackClientError) -> Self {
        let method = method.to_string();
        match err {
            SlackClientError::ApiError(e) => ApiError::Slack {
                method,
                code: e.code,
            },
            SlackClientError::RateLimitError(e) => ApiError::RateLimited {
                method,
                // Slack always sends Retry-After; a missing one is treated as Slack's
                // documented minimum window rather than as "retry at once".
                retry_after: e.retry_after.unwrap_or(Duration::from_secs(1)),
            },
            SlackClientError::HttpError(e) => ApiError::Http {
                method,
                status: e.status_code.as_u16(),
            },
            SlackClientError::HttpProtocolError(e) => ApiError::Transport {
                method,
                message: e.to_string(),
            },
            SlackClientError::SystemError(e) => ApiError::Transport {
                method,
                message: e.to_string(),
            },
            other => ApiError::Protocol {
                method,
                message: other.to_string(),
            },
        }
    }
}

/// Who the bot token belongs to, from `auth.test`.
#[derive(Debug, Clone)]
pub struct BotIdentity {
    pub user_id: String,
    pub team_id: String,
    pub team: String,
    /// The Enterprise Grid org, when the workspace is part of one.
    pub enterprise_id: Option<String>,
}

/// Cheap to clone; one HTTP connection pool shared by every caller.
#[derive(Clone)]
pub struct SlackApi {
    inner: Arc<Inner>,
}

struct Inner {
    client: SlackClient<Connector>,
    bot: SlackApiToken,
    /// `None` for a client that only calls the Web API (a source's or
    /// provisioner's own token): it cannot open Socket Mode.
    app: Option<SlackApiToken>,
    timeout: Duration,
    /// `scheme://host:port` of `slack.api_url`: a `response_url` there is
    /// Slack's too (a proxy, or the fake Slack in tests).
    api_origin: Option<url::Origin>,
}

/// Hosts Slack issues `response_url`s on.
const HOOK_HOSTS: &[&str] = &["hooks.slack.com", "hooks.slack-gov.com"];

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl SlackApi {
    /// `api_url` is the base without a trailing `/` (`https://slack.com/api`,
    /// `https://slack-gov.com/api`, or a loopback fake in tests).
    pub fn new(api_url: &str, tokens: &SlackTokens, timeout: Duration) -> std::io::Result<Self> {
        Self::build(api_url, &tokens.bot, Some(&tokens.app), timeout)
    }

    /// A Web API client with a bot token only (the `slack` source and the
    /// `slack_usergroup` provisioner, possibly for another workspace).
    pub fn with_bot_token(api_url: &str, bot: &Secret, timeout: Duration) -> std::io::Result<Self> {
        Self::build(api_url, bot, None, timeout)
    }

    fn build(
        api_url: &str,
        bot: &Secret,
        app: Option<&Secret>,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        net::install_crypto_provider();
        // https_or_http: production URLs are https, the fake Slack in tests is
        // plain http on loopback; the default connector refuses http outright.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector = SlackClientHyperConnector::with_connector(https)
            .with_slack_api_url(api_url.trim_end_matches('/'));
        Ok(Self {
            inner: Arc::new(Inner {
                client: SlackClient::new(connector),
                bot: SlackApiToken::new(bot.expose().to_string().into()),
                app: app.map(|t| SlackApiToken::new(t.expose().to_string().into())),
                timeout,
                api_origin: url::Url::parse(api_url).ok().map(|u| u.origin()),
            }),
        })
    }

    /// One POST of `body` as JSON to `method` with the bot token; no retry.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        self.post(&self.inner.bot, method, body).await
    }

    /// One POST of `body` to an interaction's `response_url`, without a token
    /// (the URL is the credential; it is never logged). Only Slack's hook hosts
    /// over https, or the origin of `slack.api_url`, are accepted: a refusal
    /// never goes to a URL of someone else's choosing.
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<Value, ApiError> {
        let refused = |message: &str| ApiError::Protocol {
            method: RESPOND.into(),
            message: message.into(),
        };
        let url = url::Url::parse(response_url).map_err(|_| refused("not a URL"))?;
        let slacks = url.scheme() == "https"
            && url
                .host_str()
                .is_some_and(|host| HOOK_HOSTS.contains(&host));
        if !slacks && Some(url.origin()) != self.inner.api_origin {
            return Err(refused("not one of Slack's hosts"));
        }
        let span = tracing::debug_span!("response_url");
        let context = SlackClientApiCallContext {
            rate_control_params: None,
            token: None,
            tracing_span: &span,
            is_sensitive_url: true,
        };
        let call = self
            .inner
            .client
            .http_api
            .connector
            .http_post_uri::<Value, Value>(url, body, context);
        self.bounded(RESPOND, call).await
    }

    /// Like [`call`](Self::call), but retries rate limits and transient failures
    /// until `budget` is spent. For calls off the envelope path that must land.
    pub async fn call_retrying(
        &self,
        method: &str,
        body: &Value,
        budget: Duration,
    ) -> Result<Value, ApiError> {
        retrying(method, budget, || self.call(method, body)).await
    }

    /// GET with query parameters and the bot token, for the read methods that
    /// Slack does not accept JSON bodies for (`users.info`, `users.lookupByEmail`).
    pub async fn call_get(&self, method: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        let session = self.inner.client.open_session(&self.inner.bot);
        let params: Vec<(&str, Option<String>)> = params
            .iter()
            .map(|(k, v)| (*k, Some(v.to_string())))
            .collect();
        let call = session
            .http_session_api
            .http_get::<Value, _, String>(method, &params, None);
        self.bounded(method, call).await
    }

    /// Like [`call_get`](Self::call_get), but waits out rate limits (Slack's
    /// `Retry-After`) and transient failures until `budget` is spent: for
    /// paged reads off the envelope path, where one 429 must not fail the
    /// whole listing.
    pub async fn call_get_retrying(
        &self,
        method: &str,
        params: &[(&str, &str)],
        budget: Duration,
    ) -> Result<Value, ApiError> {
        retrying(method, budget, || self.call_get(method, params)).await
    }

    /// Every channel the bot can see, by lowercased name → id, from a paged
    /// `conversations.list` (public and private, not archived).
    pub async fn channel_ids(&self) -> Result<HashMap<String, String>, ApiError> {
        let mut by_name = HashMap::new();
        let mut cursor = String::new();
        for _page in 0..200 {
            let mut params = vec![
                ("types", "public_channel,private_channel"),
                ("exclude_archived", "true"),
                ("limit", "1000"),
            ];
            if !cursor.is_empty() {
                params.push(("cursor", cursor.as_str()));
            }
            let page = self.call_get("conversations.list", &params).await?;
            for c in page
                .get("channels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(name), Some(id)) = (
                    c.get("name").and_then(Value::as_str),
                    c.get("id").and_then(Value::as_str),
                ) {
                    by_name.insert(name.to_lowercase(), id.to_string());
                }
            }
            cursor = next_cursor(&page);
            if cursor.is_empty() {
                break;
            }
        }
        Ok(by_name)
    }

    /// Handle (lowercased) → id of every user group of the workspace,
    /// disabled ones included (a disabled group has no members, but exists).
    pub async fn usergroup_ids(&self) -> Result<HashMap<String, String>, ApiError> {
        let reply = self
            .call_get("usergroups.list", &[("include_disabled", "true")])
            .await?;
        Ok(reply
            .get("usergroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| {
                let handle = g.get("handle")?.as_str()?.to_lowercase();
                let id = g.get("id")?.as_str()?.to_string();
                Some((handle, id))
            })
            .collect())
    }

    /// `auth.test` with the bot token: proves the token and learns the bot's user id.
    pub async fn auth_test(&self) -> Result<BotIdentity, ApiError> {
        let reply = self.call("auth.test", &serde_json::json!({})).await?;
        let field = |name: &str| -> Result<String, ApiError> {
            reply
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::Protocol {
                    method: "auth.test".into(),
                    message: format!("missing `{name}`"),
                })
        };
        Ok(BotIdentity {
            user_id: field("user_id")?,
            team_id: field("team_id")?,
            team: field("team").unwrap_or_default(),
            enterprise_id: field("enterprise_id").ok().filter(|id| !id.is_empty()),
        })
    }

    /// `apps.connections.open` with the app-level token: a one-use WebSocket URL.
    pub async fn open_socket_url(&self) -> Result<String, ApiError> {
        let Some(app) = &self.inner.app else {
            return Err(ApiError::Protocol {
                method: "apps.connections.open".into(),
                message: "this client has no app-level token".into(),
            });
        };
        let reply = self
            .post(app, "apps.connections.open", &serde_json::json!({}))
            .await?;
        reply
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::Protocol {
                method: "apps.connections.open".into(),
                message: "missing `url`".into(),
            })
    }

    async fn post(
        &self,
        token: &SlackApiToken,
        method: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let session = self.inner.client.open_session(token);
        let call = session
            .http_session_api
            .http_post::<Value, Value>(method, body, None);
        self.bounded(method, call).await
    }

    async fn bounded(
        &self,
        method: &str,
        call: impl std::future::Future<Output = ClientResult<Value>>,
    ) -> Result<Value, ApiError> {
        let result = match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(result) => result.map_err(|e| ApiError::from_client(method, e)),
            Err(_) => Err(ApiError::Timeout {
                method: method.to_string(),
                after: self.inner.timeout,
            }),
        };
        let rate_limited = matches!(result, Err(ApiError::RateLimited { .. }));
        metrics::global().api_call(method, rate_limited);
        result
    }
}

/// The cursor of a paged Web API answer's next page; empty on the last.
pub fn next_cursor(page: &Value) -> String {
    page.pointer("/response_metadata/next_cursor")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Runs `attempt` until it succeeds, fails for good, or the next wait (a
/// rate limit's `Retry-After`, else a doubling backoff) would pass `budget`.
async fn retrying<F, Fut>(method: &str, budget: Duration, mut attempt: F) -> Result<Value, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, ApiError>>,
{
    let deadline = Instant::now() + budget;
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt().await {
            Err(err) if err.is_transient() => {
                let wait = match &err {
                    ApiError::RateLimited { retry_after, .. } => *retry_after,
                    _ => backoff,
                };
                if Instant::now() + wait > deadline {
                    return Err(err);
                }
                tracing::debug!(method, error = %err, ?wait, "retrying Slack call");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> SlackApi {
        let tokens = SlackTokens::new("xapp-1-test".into(), "xoxb-test".into()).expect("tokens");
        SlackApi::new("http://127.0.0.1:9/api", &tokens, Duration::from_secs(1)).expect("client")
    }

    #[tokio::test]
    async fn a_response_url_off_slacks_hosts_is_never_posted_to() {
        let api = api();
        for url in [
            "https://evil.example/actions/T1/1/x",
            "https://hooks.slack.com.evil.example/actions/T1/1/x",
            "http://hooks.slack.com/actions/T1/1/x",
            "http://127.0.0.1:10/hooks/actions/T1/1/x",
            "not a url",
        ] {
            let answer = api.respond(url, &serde_json::json!({"text": "no"})).await;
            assert!(
                matches!(&answer, Err(ApiError::Protocol { message, .. }) if message.starts_with("not ")),
                "{url}: {answer:?}"
            );
        }
    }
}
