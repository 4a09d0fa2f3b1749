//! Provisioners: how approved access is granted in a target app and revoked
//! when it ends. Each call carries an idempotency key that stays the same for
//! every retry of one grant or revoke, and answers with an [`Outcome`] that
//! tells the caller whether to record, retry, or give up.

pub mod baton;
pub mod command;
pub mod github;
pub mod okta;
pub mod scim;
pub mod slack_usergroup;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ProvisionerKind, Secret};
use crate::metrics;
use crate::net;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Grant,
    Revoke,
}

/// The person access is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub email: String,
    pub slack_id: String,
}

/// One grant or revoke, serialised exactly as DESIGN.md §4's stdin document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub action: Action,
    pub idempotency_key: String,
    pub ticket: String,
    pub app: String,
    pub role: String,
    pub entitlement: String,
    pub user: Person,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// For a revoke: what the grant's provisioner reported making, so the
    /// same account and membership are addressed. Not part of the document
    /// sent to commands and webhooks.
    #[serde(skip)]
    pub target: Option<Target>,
    /// For a grant: the person's account id in the app, as the app's
    /// identity sources list it (one account with their email), when known.
    /// Baton addresses principals by it.
    #[serde(skip)]
    pub account: Option<String>,
}

/// The target's own ids for what a grant made: the account and, for group
/// memberships, the group. Recorded with the grant (as JSON), handed back on
/// its revoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group: Option<String>,
}

impl Target {
    /// The form the store keeps.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `None` for text no provisioner wrote (an old or hand-edited row).
    pub fn decode(text: &str) -> Option<Target> {
        serde_json::from_str(text).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Applied,
    /// Nothing to do: a grant already present, a revoke already absent.
    AlreadyInState,
    /// Worth retrying (timeouts, rate limits, temporary errors).
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Will not succeed by retrying; a person must look.
    Permanent { message: String },
}

impl Outcome {
    /// The outcome's name in `accessd_provisioning_total{outcome=…}`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::AlreadyInState => "already",
            Outcome::Transient { .. } => "transient",
            Outcome::Permanent { .. } => "permanent",
        }
    }
}

pub trait Provisioner: Send + Sync {
    fn provision(&self, request: &Request) -> impl std::future::Future<Output = Outcome> + Send;

    /// [`Provisioner::provision`], and for a grant that holds, the target's
    /// ids of what it made, to be recorded with the grant. Kinds that learn
    /// no ids (a command, a webhook) report none.
    fn provision_for_record(
        &self,
        request: &Request,
    ) -> impl std::future::Future<Output = (Outcome, Option<Target>)> + Send {
        async move { (self.provision(request).await, None) }
    }

    /// The name of the store lease a call must hold, for targets whose
    /// writes must not overlap (a Slack user group's whole-list replace);
    /// `None` for the rest.
    fn write_lock(&self, _request: &Request) -> Option<String> {
        None
    }
}

/// The answer of a provisioner whose steps may end early with an outcome
/// (`Err`): a grant's ids only when it ran to the end.
pub(crate) fn settled(
    done: Result<(Outcome, Option<Target>), Outcome>,
) -> (Outcome, Option<Target>) {
    done.unwrap_or_else(|outcome| (outcome, None))
}

/// A revoke that cannot find what a grant made (`what` is missing in
/// `system`): the access cannot be taken as gone, so a person must look.
pub(crate) fn gone_after_grant(what: String, system: &str) -> Outcome {
    Outcome::Permanent {
        message: format!(
            "{what}, though access was granted there: check in {system} that it is removed"
        ),
    }
}

/// Bytes of a failed answer's body kept in its message.
pub(crate) const BODY_EXCERPT: usize = 512;

/// An HTTP provisioner's answer, read whole: what was asked (for messages),
/// the status, the headers and the body.
pub(crate) struct Answer {
    pub(crate) what: String,
    pub(crate) status: reqwest::StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Answer {
    /// Reads the answer to a request sent for `what`; no answer at all (a
    /// timeout, no connection, a body cut off) is worth retrying.
    pub(crate) async fn read(
        what: String,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Answer, Outcome> {
        let no_answer = |e: reqwest::Error| Outcome::Transient {
            message: net::no_answer(&what, &e),
            retry_after: None,
        };
        let response = sent.map_err(no_answer)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(no_answer)?;
        Ok(Answer {
            what,
            status,
            headers,
            text,
        })
    }

    /// A redirect, never followed (it could carry the token elsewhere, or
    /// replay a write as a read): a failure naming where it pointed and `fix`.
    pub(crate) fn redirect_refused(&self, fix: &str) -> Outcome {
        Outcome::Permanent {
            message: net::redirect_refused(&self.what, self.status, &self.headers, fix),
        }
    }

    /// "WHAT answered STATUS …" with the start of the body, for a failure.
    pub(crate) fn message(&self) -> String {
        net::answered(
            &self.what,
            self.status,
            &net::excerpt(&self.text, BODY_EXCERPT),
        )
    }
}

/// A built-in provisioner chosen by the config's `kind`.
#[derive(Debug)]
pub enum AnyProvisioner {
    Command(command::CommandProvisioner),
    Webhook(webhook::WebhookProvisioner),
    Scim(scim::ScimProvisioner),
    Okta(okta::OktaProvisioner),
    Github(github::GithubProvisioner),
    Baton(baton::BatonProvisioner),
    SlackUsergroup(slack_usergroup::SlackUsergroupProvisioner),
}

impl Provisioner for AnyProvisioner {
    /// Counted here: every lifecycle call (grant, expiry, revoke) comes
    /// through this one dispatch.
    async fn provision(&self, request: &Request) -> Outcome {
        self.provision_for_record(request).await.0
    }

    async fn provision_for_record(&self, request: &Request) -> (Outcome, Option<Target>) {
        let (outcome, target) = match self {
            AnyProvisioner::Command(p) => p.provision_for_record(request).await,
            AnyProvisioner::Webhook(p) => p.provision_for_record(request).await,
            AnyProvisioner::Scim(p) => p.provision_for_record(request).await,
            AnyProvisioner::Okta(p) => p.provision_for_record(request).await,
            AnyProvisioner::Github(p) => p.provision_for_record(request).await,
            AnyProvisioner::Baton(p) => p.provision_for_record(request).await,
            AnyProvisioner::SlackUsergroup(p) => p.provision_for_record(request).await,
        };
        metrics::global().provisioning(outcome.label());
        (outcome, target)
    }

    fn write_lock(&self, request: &Request) -> Option<String> {
        match self {
            AnyProvisioner::SlackUsergroup(p) => p.write_lock(request),
            _ => None,
        }
    }
}

/// Every `[[provisioners]]` entry, built once at start-up (secrets read then).
#[derive(Debug, Default)]
pub struct Provisioners {
    by_id: std::collections::HashMap<String, std::sync::Arc<AnyProvisioner>>,
}

impl Provisioners {
    /// Errors name the `provisioners` entry (a secret file that cannot be
    /// read, an unusable URL); the message never holds a secret.
    /// `bot_token` is the daemon's, for a `slack_usergroup` provisioner
    /// without a `token_file`.
    pub fn from_config(config: &Config, bot_token: Option<&Secret>) -> Result<Self, String> {
        let mut by_id = std::collections::HashMap::new();
        for p in &config.provisioners {
            let built = match &p.kind {
                ProvisionerKind::Command { command, env } => AnyProvisioner::Command(
                    command::CommandProvisioner::new(command, env, p.timeout)
                        .ok_or_else(|| format!("provisioners.{}.command: empty command", p.id))?,
                ),
                ProvisionerKind::Webhook { url, secret_file } => {
                    let secret = Secret::from_file(secret_file)
                        .map_err(|e| format!("provisioners.{}.secret_file: {e}", p.id))?;
                    AnyProvisioner::Webhook(
                        webhook::WebhookProvisioner::new(url.clone(), secret, p.timeout)
                            .map_err(|e| format!("provisioners.{}: {e}", p.id))?,
                    )
                }
                ProvisionerKind::Scim { url, token_file } => {
                    let token = Secret::from_file(token_file)
                        .map_err(|e| format!("provisioners.{}.token_file: {e}", p.id))?;
                    AnyProvisioner::Scim(
                        scim::ScimProvisioner::new(url.clone(), token, p.timeout)
                            .map_err(|e| format!("provisioners.{}: {e}", p.id))?,
                    )
                }
                ProvisionerKind::Okta { url, token_file } => {
                    let token = Secret::from_file(token_file)
                        .map_err(|e| format!("provisioners.{}.token_file: {e}", p.id))?;
                    AnyProvisioner::Okta(
                        okta::OktaProvisioner::new(url, token, p.timeout)
                            .map_err(|e| format!("provisioners.{}: {e}", p.id))?,
                    )
                }
                ProvisionerKind::Github {
                    org,
                    token_file,
                    api_url,
                    logins,
                } => {
                    let token = Secret::from_file(token_file)
                        .map_err(|e| format!("provisioners.{}.token_file: {e}", p.id))?;
                    AnyProvisioner::Github(
                        github::GithubProvisioner::new(
                            api_url,
                            org,
                            logins.clone(),
                            token,
                            p.timeout,
                        )
                        .map_err(|e| format!("provisioners.{}: {e}", p.id))?,
                    )
                }
                ProvisionerKind::SlackUsergroup {
                    api_url,
                    token_file,
                } => {
                    let token = match token_file {
                        Some(f) => Secret::from_file(f)
                            .map_err(|e| format!("provisioners.{}.token_file: {e}", p.id))?,
                        None => bot_token.cloned().ok_or_else(|| {
                            format!(
                                "provisioners.{}.token_file: no bot token to write with",
                                p.id
                            )
                        })?,
                    };
                    AnyProvisioner::SlackUsergroup(
                        slack_usergroup::SlackUsergroupProvisioner::new(
                            &p.id,
                            api_url,
                            &token,
                            token_file.is_none(),
                            p.timeout,
                        )
                        .map_err(|e| format!("provisioners.{}: {e}", p.id))?,
                    )
                }
                ProvisionerKind::Baton {
                    connector,
                    c1z_path,
                    env,
                } => AnyProvisioner::Baton(
                    baton::BatonProvisioner::new(connector, c1z_path.clone(), env, p.timeout)
                        .ok_or_else(|| format!("provisioners.{}.connector: empty command", p.id))?,
                ),
            };
            by_id.insert(p.id.clone(), std::sync::Arc::new(built));
        }
        Ok(Self { by_id })
    }

    pub fn get(&self, id: &str) -> Option<std::sync::Arc<AnyProvisioner>> {
        self.by_id.get(id).cloned()
    }
}
