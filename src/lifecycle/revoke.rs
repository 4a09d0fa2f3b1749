//! Removing someone's existing access in an app on request (an alert's
//! Revoke, a review's Revoke decision): their live accessd grants through
//! the normal revoke path, then each remaining entitlement through the
//! app's provisioner, and what no provisioner can do as a task for the
//! app's owners. Re-runnable: ended grants are skipped and every provisioner
//! call reuses its idempotency key.

use std::sync::Arc;

use serde_json::json;

use super::JobResult;
use super::{owner_ids, store_error};
use crate::app::App;
use crate::provision::{Action, Outcome, Person, Request};
use crate::slack::views::text::{escape, section};
use crate::store::grants::GrantFilter;
use crate::store::{Actor, GrantStatus, Job, NewMessage};

/// What to remove.
#[derive(Debug, Clone)]
pub struct RevokeAsk {
    pub app_id: String,
    pub email: String,
    pub entitlements: Vec<String>,
    /// With no entitlement left to remove, the account itself goes (by hand).
    pub whole_account: bool,
    /// Prefix of the idempotency keys, unique to the asking alert or item.
    pub key: String,
    /// Who asked, as shown to people (an email).
    pub by: String,
    /// Why, as recorded on revoked grants ("offboarded", "access review").
    pub reason: String,
}

/// What happened, line by line, and the owners' DMs for what is manual.
#[derive(Debug, Clone, Default)]
pub struct RevokeReport {
    pub lines: Vec<String>,
    pub owner_tasks: Vec<NewMessage>,
    /// Something could not be removed (a permanent provisioner failure).
    pub failed: bool,
    /// Owners were asked to do (part of) it by hand.
    pub manual: bool,
}

impl RevokeReport {
    /// One line for a review item's outcome.
    pub fn outcome(&self) -> String {
        let status = if self.failed {
            "failed"
        } else if self.manual {
            "manual task"
        } else {
            "revoked"
        };
        format!("{status}: {}", self.lines.join("; "))
    }
}

/// Transient provisioner failures come back as `Err(Retry)` for the job
/// runner; everything else is in the report.
pub async fn revoke_access(
    app: &Arc<App>,
    job: &Job,
    ask: &RevokeAsk,
) -> Result<RevokeReport, JobResult> {
    let live = app.live();
    let Some(catalog) = live.config.app(&ask.app_id) else {
        return Err(JobResult::Fail(format!(
            "app {} is no longer in the catalog",
            ask.app_id
        )));
    };
    let mut report = RevokeReport::default();
    // 1. Access accessd itself granted: the normal revoke path.
    let grants = app
        .store
        .list_grants(GrantFilter {
            status: Some(GrantStatus::Active),
            ..GrantFilter::default()
        })
        .await
        .map_err(|err| store_error(app, err))?;
    let mut covered = Vec::new();
    for grant in grants.iter().filter(|g| {
        g.app_id == ask.app_id
            && g.person_email.eq_ignore_ascii_case(&ask.email)
            && (ask.whole_account || ask.entitlements.contains(&g.entitlement))
    }) {
        covered.push(grant.entitlement.clone());
        let actor = Actor {
            slack_id: String::new(),
            email: ask.by.clone(),
        };
        app.store
            .revoke_now(
                grant.ticket_id,
                Some(grant.id),
                actor,
                ask.reason.clone(),
                |_| Ok(()),
            )
            .await
            .map_err(|err| store_error(app, err))?;
        report.lines.push(format!(
            "`{}` (grant {}) revoke scheduled",
            escape(&grant.entitlement, 100),
            grant.reference()
        ));
    }
    app.jobs.wake();
    // 2. Entitlements the source shows that accessd did not grant.
    let rest: Vec<&String> = ask
        .entitlements
        .iter()
        .filter(|e| !covered.contains(e))
        .collect();
    let provisioner = catalog
        .provisioner
        .as_deref()
        .and_then(|id| live.provisioners.get(id));
    let mut manual: Vec<String> = Vec::new();
    match &provisioner {
        Some(provisioner) => {
            let slack_id = app
                .identity
                .slack_id_of(&ask.email)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            for entitlement in &rest {
                let role = catalog
                    .roles
                    .iter()
                    .find(|r| &&r.entitlement == entitlement)
                    .map(|r| r.id.clone())
                    .unwrap_or_default();
                let request = Request {
                    action: Action::Revoke,
                    idempotency_key: format!("{}/{entitlement}/revoke", ask.key),
                    ticket: ask.key.clone(),
                    app: ask.app_id.clone(),
                    role,
                    entitlement: (*entitlement).clone(),
                    user: Person {
                        email: ask.email.clone(),
                        slack_id: slack_id.clone(),
                    },
                    expires_at: None,
                    // An account a source listed, not one of our grants.
                    target: None,
                    account: None,
                };
                let shown = escape(entitlement, 100);
                match super::provision::provisioned(app, provisioner, &request)
                    .await
                    .0
                {
                    Outcome::Applied => report.lines.push(format!("`{shown}` revoked")),
                    Outcome::AlreadyInState => {
                        report.lines.push(format!("`{shown}` was already gone"))
                    }
                    Outcome::Transient {
                        message,
                        retry_after,
                    } => {
                        return Err(JobResult::Retry {
                            after: app.job_options.backoff(job.attempts, retry_after),
                            error: message,
                        })
                    }
                    Outcome::Permanent { message } => {
                        report.failed = true;
                        report.lines.push(format!(
                            "`{shown}` could not be revoked: {}",
                            escape(&message, 300)
                        ));
                        manual.push((*entitlement).clone());
                    }
                }
            }
        }
        None => manual.extend(rest.iter().map(|e| (*e).clone())),
    }
    if ask.whole_account && ask.entitlements.is_empty() && covered.is_empty() {
        manual.push("the account itself".into());
    }
    if !manual.is_empty() {
        report.manual = true;
        let owners = owner_ids(app, &ask.app_id).await;
        let task = format!(
            ":no_entry: Please remove *{}*'s access in *{}* by hand ({}); reason: {}. Asked by {}.",
            escape(&ask.email, 200),
            escape(&catalog.name, 200),
            manual
                .iter()
                .map(|m| escape(m, 100))
                .collect::<Vec<_>>()
                .join(", "),
            escape(&ask.reason, 200),
            escape(&ask.by, 200)
        );
        for owner in owners.values() {
            report
                .owner_tasks
                .push(NewMessage::post(owner, &task, json!([section(&task)])));
        }
        report.lines.push(format!(
            "owners asked to remove by hand: {}",
            manual.join(", ")
        ));
    }
    Ok(report)
}
