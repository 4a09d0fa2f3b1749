//! Jobs born of identity findings: the daily findings digest, and the
//! revocation an admin asked for from an offboarded-but-active alert (the
//! person's accessd grants in that app, then each remaining entitlement
//! through the app's provisioner, or the owners asked to do it by hand).

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::{owner_ids, store_error};
use crate::alerts::{self, kind};
use crate::handlers::App;
use crate::provision::{Action, Outcome, Person, Provisioner, Request};
use crate::scheduler::JobResult;
use crate::slack::views::text::escape;
use crate::store::grants::GrantFilter;
use crate::store::{Actor, Job, NewMessage};

pub mod job {
    pub const ACCOUNT_REVOKE: &str = "account_revoke";
}

/// Posts every open finding, grouped, then sets tomorrow's timer.
pub async fn digest(app: &Arc<App>) -> JobResult {
    let now = Utc::now();
    if let Some(channel) = alerts::channel_for(&app.config.alerts.channels, kind::FINDINGS_DIGEST) {
        let open = match app.store.alerts(None, vec!["open".into()]).await {
            Ok(open) => open,
            Err(err) => return store_error(app, err),
        };
        let (text, blocks) = crate::slack::views::alert::digest(&app.config, &open, now);
        let mut message = NewMessage::post(channel, &text, blocks);
        // One digest per day even if this job re-runs after a crash.
        message.dedupe_key = Some(format!("digest:{}", now.format("%Y-%m-%d")));
        if let Err(err) = app.outbox.send(message).await {
            return store_error(app, err);
        }
    }
    let next = alerts::next_digest(app.config.alerts.digest_at, now);
    match app
        .store
        .schedule_job(
            alerts::DIGEST_JOB.into(),
            alerts::DIGEST_SUBJECT.into(),
            next,
            Value::Null,
        )
        .await
    {
        Ok(_) => JobResult::Done,
        Err(err) => store_error(app, err),
    }
}

/// Revokes what an offboarded person still has in one app. Re-runnable:
/// ended grants are skipped, provisioner calls reuse their idempotency keys.
pub async fn account_revoke(app: &Arc<App>, job: &Job) -> JobResult {
    let p = &job.payload;
    let text = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (key, app_id, email, by) = (text("key"), text("app"), text("email"), text("by"));
    let entitlements: Vec<String> = p
        .get("entitlements")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let Some(catalog) = app.config.app(&app_id) else {
        return JobResult::Fail(format!("app {app_id} is no longer in the catalog"));
    };
    // 1. Access accessd itself granted: the normal revoke path.
    let grants = match app
        .store
        .list_grants(GrantFilter {
            status: Some(crate::store::GrantStatus::Active),
            ..GrantFilter::default()
        })
        .await
    {
        Ok(g) => g,
        Err(err) => return store_error(app, err),
    };
    let mut covered = Vec::new();
    let mut lines = Vec::new();
    for grant in grants
        .iter()
        .filter(|g| g.app_id == app_id && g.person_email.eq_ignore_ascii_case(&email))
    {
        covered.push(grant.entitlement.clone());
        let actor = Actor {
            slack_id: String::new(),
            email: by.clone(),
        };
        let reason = "offboarded".to_string();
        match app
            .store
            .revoke_now(grant.ticket_id, Some(grant.id), actor, reason, |_| Ok(()))
            .await
        {
            Ok(_) => lines.push(format!(
                "{} (grant {}) revoke scheduled",
                escape(&grant.entitlement, 100),
                grant.reference()
            )),
            Err(err) => return store_error(app, err),
        }
    }
    app.jobs.wake();
    // 2. Entitlements the source shows that accessd did not grant.
    let rest: Vec<&String> = entitlements
        .iter()
        .filter(|e| !covered.contains(e))
        .collect();
    let provisioner = catalog
        .provisioner
        .as_deref()
        .and_then(|id| app.provisioners.get(id));
    let mut manual = Vec::new();
    let has_provisioner = provisioner.is_some();
    match provisioner {
        Some(provisioner) => {
            let slack_id = app
                .identity
                .slack_id_of(&email)
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
                    idempotency_key: format!("alert/{key}/{entitlement}/revoke"),
                    ticket: key.clone(),
                    app: app_id.clone(),
                    role,
                    entitlement: (*entitlement).clone(),
                    user: Person {
                        email: email.clone(),
                        slack_id: slack_id.clone(),
                    },
                    expires_at: None,
                };
                match provisioner.provision(&request).await {
                    Outcome::Applied => {
                        lines.push(format!("`{}` revoked", escape(entitlement, 100)))
                    }
                    Outcome::AlreadyInState => {
                        lines.push(format!("`{}` was already gone", escape(entitlement, 100)))
                    }
                    Outcome::Transient {
                        message,
                        retry_after,
                    } => {
                        return JobResult::Retry {
                            after: app.job_options.backoff(job.attempts, retry_after),
                            error: message,
                        }
                    }
                    Outcome::Permanent { message } => {
                        lines.push(format!(
                            "`{}` could not be revoked: {}",
                            escape(entitlement, 100),
                            escape(&message, 300)
                        ));
                        manual.push((*entitlement).clone());
                    }
                }
            }
            if rest.is_empty() && covered.is_empty() {
                manual.push("the account itself".into());
            }
        }
        None => manual.extend(rest.iter().map(|e| (*e).clone())),
    }
    if !has_provisioner && covered.is_empty() && manual.is_empty() {
        manual.push("the account itself".into());
    }
    let mut messages = Vec::new();
    if !manual.is_empty() {
        let owners = owner_ids(app, &app_id).await;
        let task = format!(
            ":no_entry: Please remove *{}*'s access in *{}* by hand ({}): they are offboarded. Asked by {} from a security alert.",
            escape(&email, 200),
            escape(&catalog.name, 200),
            manual.iter().map(|m| escape(m, 100)).collect::<Vec<_>>().join(", "),
            escape(&by, 200)
        );
        for owner in owners.values() {
            messages.push(NewMessage::post(
                owner,
                &task,
                json!([crate::slack::views::text::section(&task)]),
            ));
        }
        lines.push(format!(
            "owners asked to remove by hand: {}",
            manual.join(", ")
        ));
    }
    if let Ok(Some(alert)) = app.store.alert(key.clone()).await {
        if let (Some(channel), Some(ts)) = (alert.channel, alert.ts) {
            let text = format!(
                "Revocation for {}: {}",
                escape(&email, 200),
                lines.join("; ")
            );
            let mut reply = NewMessage::post(
                &channel,
                &text,
                json!([crate::slack::views::text::section(&text)]),
            );
            reply.payload["thread_ts"] = json!(ts);
            messages.push(reply);
        }
    }
    for message in messages {
        if let Err(err) = app.outbox.send(message).await {
            return store_error(app, err);
        }
    }
    JobResult::Done
}
