//! The `provision` job: an approved ticket becomes access. With a
//! provisioner each pending grant is called (attempt committed first, same
//! idempotency key on every retry); without one the owners get a manual task.
//! Extensions never provision: they move the parent's expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::JobResult;
use super::{owner_ids, store_error};
use crate::alerts;
use crate::app::App;
use crate::config::Config;
use crate::domain::policy;
use crate::domain::ticket::Kind;
use crate::provision::{Action, AnyProvisioner, Outcome, Person, Provisioner, Request, Target};
use crate::slack::views::grant as views;
use crate::store::grants::{GrantResult, GrantSpec, GrantedBy};
use crate::store::Grant;
use crate::store::{Effects, GrantStatus, Job, NewMessage, OnSent, ProvisionStart, Ticket};

pub async fn run(app: &Arc<App>, job: &Job, ticket_id: i64) -> JobResult {
    // Catalog and provisioners of one file, whatever a reload does meanwhile.
    let live = app.live();
    let config = live.config.clone();
    let ticket = match app.store.ticket(ticket_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return JobResult::Fail(format!("no ticket {ticket_id}")),
        Err(err) => return store_error(app, err),
    };
    if ticket.kind == Kind::Extension {
        return extend(app, job, ticket_id).await;
    }
    // The config in force decides, as for a click: an app or role gone, or a
    // requester now denied, provisions nothing.
    let found = match policy::still_allowed(
        &config,
        &ticket.app_id,
        &ticket.roles,
        &ticket.requester_email,
    ) {
        Ok(found) => found,
        Err(why) => {
            return JobResult::Fail(format!("{} was not provisioned: {why}", ticket.reference()))
        }
    };
    let specs: Vec<GrantSpec> = if ticket.roles.is_empty() {
        vec![GrantSpec {
            role_id: String::new(),
            entitlement: found.id.clone(),
        }]
    } else {
        ticket
            .roles
            .iter()
            .map(|r| GrantSpec {
                role_id: r.clone(),
                entitlement: found
                    .role(r)
                    .map(|role| role.entitlement.clone())
                    .unwrap_or_default(),
            })
            .collect()
    };
    let provisioner_id = found.provisioner.as_deref();
    let provisioner = provisioner_id.and_then(|id| live.provisioners.get(id));
    let manual = provisioner.is_none();
    let owners = if manual {
        owner_ids(app, &ticket.app_id).await
    } else {
        Default::default()
    };
    let effects_config = config.clone();
    let start = app
        .store
        .start_provisioning(ticket_id, specs, manual, move |t, _| {
            let config = effects_config;
            let mut effects = Effects::default();
            if manual {
                for slack_id in owners.values() {
                    let (text, blocks) = views::manual_task(&config, t, None);
                    effects
                        .messages
                        .push(NewMessage::post(slack_id, &text, blocks).with_on_sent(
                            OnSent::TaskMessage {
                                ticket_id: t.id,
                                owner_slack_id: slack_id.clone(),
                            },
                        ));
                }
                let (text, blocks) = views::waiting_for_owners(&config, t);
                effects
                    .messages
                    .push(NewMessage::post(&t.requester_slack_id, &text, blocks));
            }
            effects
        })
        .await;
    let grants = match start {
        Ok(ProvisionStart::Proceed { grants, .. }) => grants,
        Ok(ProvisionStart::NotApplicable(_)) => return JobResult::Done,
        Err(err) => return store_error(app, err),
    };
    let Some(provisioner) = provisioner else {
        app.home_refresh.request(&ticket.requester_slack_id);
        return JobResult::Done;
    };
    let account = match account_in_app(app, &ticket.app_id, &ticket.requester_email).await {
        Ok(account) => account,
        Err(err) => return store_error(app, err),
    };
    for grant in grants.iter().filter(|g| g.status == GrantStatus::Pending) {
        if let Err(err) = app.store.grant_attempt(grant.id).await {
            return store_error(app, err);
        }
        let request = Request {
            action: Action::Grant,
            idempotency_key: grant.idempotency_key.clone(),
            ticket: ticket.reference(),
            app: ticket.app_id.clone(),
            role: grant.role_id.clone(),
            entitlement: grant.entitlement.clone(),
            user: Person {
                email: ticket.requester_email.clone(),
                slack_id: ticket.requester_slack_id.clone(),
            },
            // The clock starts once every grant is in place, so the final
            // expiry is a little later than this; it is what we know now.
            expires_at: Some(chrono::Utc::now() + chrono::Duration::seconds(ticket.duration_secs)),
            target: None,
            account: account.clone(),
        };
        let (outcome, target) = provisioned(app, &provisioner, &request).await;
        let result = match outcome {
            Outcome::Applied => GrantResult::Applied,
            Outcome::AlreadyInState => GrantResult::AlreadyPresent,
            Outcome::Permanent { message } => GrantResult::Failed(message),
            Outcome::Transient {
                message,
                retry_after,
            } => {
                if job.attempts + 1 < app.job_options.max_attempts {
                    return JobResult::Retry {
                        after: app.job_options.backoff(job.attempts, retry_after),
                        error: format!("{}: {message}", grant.reference()),
                    };
                }
                GrantResult::Failed(format!(
                    "gave up after {} attempts: {message}",
                    job.attempts + 1
                ))
            }
        };
        if let GrantResult::Failed(message) = &result {
            // The whole message, for whoever investigates; the requester is
            // told only a summary (views::provisioned).
            tracing::warn!(
                ticket = ticket.reference(),
                grant = grant.reference(),
                error = message,
                "provisioning failed"
            );
        }
        let by = provisioner_id.map(|id| GrantedBy {
            provisioner_id: id.to_string(),
            target: target.as_ref().map(Target::encode),
        });
        if let Err(err) = app.store.record_grant_by(grant.id, result, by).await {
            return store_error(app, err);
        }
    }
    let warning = config.requests.expiry_warning;
    let finished = app
        .store
        .finish_provisioning(ticket_id, Some(job.id), warning, move |t, grants| {
            finished_effects(&config, t, grants)
        })
        .await;
    match finished {
        Ok(t) => {
            app.home_refresh.request(&t.requester_slack_id);
            JobResult::Done
        }
        Err(err) => store_error(app, err),
    }
}

/// How long one call may hold a target's write lease: a holder that died
/// mid-write lets go after this.
const WRITE_LEASE: Duration = Duration::from_secs(120);
/// How long a call waits for another's write to the same target before it
/// is retried as a job.
const WRITE_WAIT: Duration = Duration::from_secs(60);

/// Calls the provisioner; for a target whose writes must not overlap (see
/// [`Provisioner::write_lock`]) only while holding its lease in the store,
/// so two grants into one Slack user group never write over each other,
/// in this process or another.
pub(super) async fn provisioned(
    app: &App,
    provisioner: &AnyProvisioner,
    request: &Request,
) -> (Outcome, Option<Target>) {
    let Some(lease) = provisioner.write_lock(request) else {
        return provisioner.provision_for_record(request).await;
    };
    let owner = format!("{}:{}", std::process::id(), request.idempotency_key);
    let deadline = Instant::now() + WRITE_WAIT;
    loop {
        let until =
            chrono::Utc::now() + chrono::Duration::from_std(WRITE_LEASE).unwrap_or_default();
        match app
            .store
            .take_lease(lease.clone(), owner.clone(), until)
            .await
        {
            Ok(true) => break,
            Ok(false) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(false) => {
                let message = format!("another write to {lease} is still running");
                return (
                    Outcome::Transient {
                        message,
                        retry_after: None,
                    },
                    None,
                );
            }
            Err(err) => {
                let message = format!("cannot take the write lease {lease}: {err}");
                return (
                    Outcome::Transient {
                        message,
                        retry_after: None,
                    },
                    None,
                );
            }
        }
    }
    let answer = provisioner.provision_for_record(request).await;
    if let Err(err) = app.store.release_lease(lease, owner).await {
        tracing::warn!(error = %err, "could not release a write lease; it lapses by itself");
    }
    answer
}

/// The person's account id in the app, as its identity sources list it:
/// the one account with their email; `None` when there is none, or more than
/// one (a guess could grant someone else).
async fn account_in_app(
    app: &Arc<App>,
    app_id: &str,
    email: &str,
) -> Result<Option<String>, crate::store::StoreError> {
    let accounts = app.store.accounts_of_app(app_id.to_string()).await?;
    let mut ids: Vec<String> = accounts
        .into_iter()
        .filter(|(_, a)| {
            a.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .map(|(_, a)| a.id)
        .collect();
    ids.sort();
    ids.dedup();
    Ok(match ids.len() {
        1 => ids.pop(),
        _ => None,
    })
}

fn finished_effects(config: &Config, ticket: &Ticket, grants: &[Grant]) -> Effects {
    let mut effects = Effects::default();
    let (text, blocks) = views::provisioned(config, ticket, grants);
    effects
        .messages
        .push(NewMessage::post(&ticket.requester_slack_id, &text, blocks));
    if let Some(failure) = ticket.failure.as_deref() {
        let (text, blocks) = views::provisioning_failed_alert(config, ticket, failure);
        effects.messages.extend(alerts::post(
            config.alerts.channels.provisioning_failed.as_ref(),
            &text,
            blocks,
        ));
    }
    effects
}

async fn extend(app: &Arc<App>, job: &Job, extension_id: i64) -> JobResult {
    let config = app.config();
    let warning = config.requests.expiry_warning;
    let applied = app
        .store
        .apply_extension(extension_id, Some(job.id), warning, move |ext, parent| {
            let mut effects = Effects::default();
            let (text, blocks) = views::extended(&config, ext, parent);
            effects
                .messages
                .push(NewMessage::post(&ext.requester_slack_id, &text, blocks));
            effects
        })
        .await;
    match applied {
        Ok(t) => {
            app.home_refresh.request(&t.requester_slack_id);
            JobResult::Done
        }
        Err(err) => store_error(app, err),
    }
}
