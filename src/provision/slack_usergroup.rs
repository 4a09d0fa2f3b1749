//! The `slack_usergroup` provisioner: the entitlement is a Slack user
//! group's handle; a grant adds the person to it, a revoke removes them.
//!
//! `usergroups.users.update` replaces a group's whole member list, so every
//! write here reads the list, changes only the one person, writes, and
//! reads it again to check. Two writes to one group never overlap: each
//! holds the group's lease in the store ([`Provisioner::write_lock`]), so a
//! second grant waits for the first and starts from the list it left. A
//! person already in the group is "already present" (their grant is marked
//! pre-existing and never revoked); a group Slack would leave empty is a
//! clear failure, as Slack refuses an empty list.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::{settled, Action, Outcome, Provisioner, Request, Target};
use crate::config::Secret;
use crate::slack_api::{ApiError, SlackApi};

pub struct SlackUsergroupProvisioner {
    id: String,
    api: SlackApi,
    /// Whether the token is the daemon's own bot token: then the requester's
    /// Slack id is their id in this workspace too.
    same_workspace: bool,
    /// Handle → user group id, learned from `usergroups.list`.
    ids: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for SlackUsergroupProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackUsergroupProvisioner")
            .field("id", &self.id)
            .field("same_workspace", &self.same_workspace)
            .finish_non_exhaustive()
    }
}

/// A Web API failure as an outcome: rate limits and outages are retried,
/// everything else (a missing scope, `permission_denied`) needs a person.
fn failed(err: ApiError) -> Outcome {
    match &err {
        ApiError::RateLimited { retry_after, .. } => Outcome::Transient {
            message: err.to_string(),
            retry_after: Some(*retry_after),
        },
        _ if err.is_transient() => Outcome::Transient {
            message: err.to_string(),
            retry_after: None,
        },
        _ => Outcome::Permanent {
            message: err.to_string(),
        },
    }
}

/// The member ids of a `usergroups.users.list` answer.
fn member_ids(reply: &Value) -> Result<Vec<String>, Outcome> {
    reply
        .get("users")
        .and_then(Value::as_array)
        .map(|users| {
            users
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .ok_or_else(|| Outcome::Permanent {
            message: "Slack usergroups.users.list answered without `users`".into(),
        })
}

impl SlackUsergroupProvisioner {
    pub fn new(
        id: &str,
        api_url: &str,
        token: &Secret,
        same_workspace: bool,
        timeout: Duration,
    ) -> Result<Self, String> {
        let api = SlackApi::with_bot_token(api_url, token, timeout)
            .map_err(|e| format!("cannot build the Slack client: {e}"))?;
        Ok(Self {
            id: id.to_string(),
            api,
            same_workspace,
            ids: Mutex::new(HashMap::new()),
        })
    }

    fn handle(entitlement: &str) -> String {
        entitlement
            .trim()
            .trim_start_matches("usergroup:")
            .trim_start_matches('@')
            .to_lowercase()
    }

    /// The group's id, from the cache or a fresh `usergroups.list`.
    async fn group_id(&self, handle: &str) -> Result<String, Outcome> {
        if let Some(id) = self.lock_ids().get(handle) {
            return Ok(id.clone());
        }
        let found = self.api.usergroup_ids().await.map_err(failed)?;
        let mut ids = self.lock_ids();
        *ids = found;
        ids.get(handle).cloned().ok_or_else(|| Outcome::Permanent {
            message: format!("Slack has no user group @{handle}"),
        })
    }

    fn lock_ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn members(&self, group: &str) -> Result<Vec<String>, Outcome> {
        let reply = self
            .api
            .call_get(
                "usergroups.users.list",
                &[("usergroup", group), ("include_disabled", "true")],
            )
            .await
            .map_err(failed)?;
        member_ids(&reply)
    }

    /// The person's id in this workspace: the requester's own when the token
    /// is the bot's, else looked up by email.
    async fn person(&self, request: &Request) -> Result<String, Outcome> {
        if let Some(target) = &request.target {
            return Ok(target.account.clone());
        }
        if self.same_workspace && !request.user.slack_id.is_empty() {
            return Ok(request.user.slack_id.clone());
        }
        match self
            .api
            .call_get("users.lookupByEmail", &[("email", &request.user.email)])
            .await
        {
            Ok(reply) => reply
                .pointer("/user/id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Outcome::Permanent {
                    message: "Slack users.lookupByEmail answered without a user id".into(),
                }),
            Err(err) if err.code() == Some("users_not_found") => Err(Outcome::Permanent {
                message: format!("no Slack user with the email {}", request.user.email),
            }),
            Err(err) => Err(failed(err)),
        }
    }

    async fn write(&self, group: &str, members: &[String]) -> Result<(), Outcome> {
        self.api
            .call(
                "usergroups.users.update",
                &json!({ "usergroup": group, "users": members.join(",") }),
            )
            .await
            .map(drop)
            .map_err(failed)
    }

    async fn change(&self, request: &Request) -> Result<(Outcome, Option<Target>), Outcome> {
        let entitlement = request.entitlement.trim();
        if entitlement.starts_with("role:") || entitlement == "bot" {
            return Err(Outcome::Permanent {
                message: format!(
                    "`{entitlement}` is a workspace role, not a user group: a Slack admin changes it in Slack"
                ),
            });
        }
        let handle = Self::handle(entitlement);
        let group = match request.target.as_ref().and_then(|t| t.group.clone()) {
            Some(id) => id,
            None => self.group_id(&handle).await?,
        };
        let person = self.person(request).await?;
        let target = Target {
            account: person.clone(),
            group: Some(group.clone()),
        };
        let before = self.members(&group).await?;
        let present = before.contains(&person);
        let after: Vec<String> = match request.action {
            Action::Grant if present => return Ok((Outcome::AlreadyInState, Some(target))),
            Action::Revoke if !present => return Ok((Outcome::AlreadyInState, None)),
            Action::Grant => before.iter().cloned().chain([person.clone()]).collect(),
            Action::Revoke => before.iter().filter(|m| **m != person).cloned().collect(),
        };
        if after.is_empty() {
            return Err(Outcome::Permanent {
                message: format!(
                    "{person} is the last member of @{handle} and Slack refuses an empty user group: add someone to it or disable it, then remove them by hand"
                ),
            });
        }
        self.write(&group, &after).await?;
        // Slack answers with the group, not always its members: read them.
        let now = self.members(&group).await?;
        let landed = now.contains(&person) == (request.action == Action::Grant);
        if !landed {
            return Err(Outcome::Transient {
                message: format!(
                    "@{handle} does not show the change for {person} after writing it; trying again"
                ),
                retry_after: None,
            });
        }
        Ok((Outcome::Applied, Some(target)))
    }
}

impl Provisioner for SlackUsergroupProvisioner {
    async fn provision(&self, request: &Request) -> Outcome {
        self.provision_for_record(request).await.0
    }

    async fn provision_for_record(&self, request: &Request) -> (Outcome, Option<Target>) {
        settled(self.change(request).await)
    }

    /// By handle, which grants and revokes both carry (a revoke also knows
    /// the id, a grant not yet).
    fn write_lock(&self, request: &Request) -> Option<String> {
        Some(format!(
            "slack_usergroup:{}",
            Self::handle(&request.entitlement)
        ))
    }
}
