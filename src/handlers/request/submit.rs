//! The request modal's last step: the ticket it creates, with the approvers'
//! DMs (or, for break-glass, the grant at once and everyone told after).

use std::sync::Arc;

use serde_json::json;

use crate::alerts;
use crate::app::App;
use crate::config::AppConfig;
use crate::domain::ticket::Status;
use crate::handlers::tell::{failed, Where};
use crate::handlers::who::{plan_for, reachable_plan};
use crate::lifecycle::notices;
use crate::slack::envelope::Reply;
use crate::slack::ids::*;
use crate::slack::modal::{input, StateValues};
use crate::slack::views::request as views;
use crate::slack::views::ticket::describe;
use crate::store::{Created, Effects, NewMessage, NewTicket, StoreError, Ticket};

use super::{app_gone, app_of, duration_and_plan, refuse_break_glass, Draft};
use crate::domain::jobs;
use crate::domain::policy;
use crate::domain::ticket::Kind;
use crate::slack::views::grant;
use crate::store::AuditEvent;
use crate::store::JobChange;

/// Break-glass: the duration step submits. The ticket is created approved
/// and provisioned at once; every approver (with **Revoke**) and the
/// `break_glass` alert channel are told in the same transaction.
pub(super) async fn break_glass(
    app: &Arc<App>,
    draft: &Draft,
    values: &StateValues,
    user: &str,
    email: &str,
    draft_id: &str,
) -> Reply {
    let config = app.config();
    let (found, duration, plan) = match duration_and_plan(app, &config, draft, values, email).await
    {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    // Checked again against the config in force now: a reload may have
    // taken the right away since the roles step.
    if !policy::may_break_glass(&config, found, &draft.roles, email) {
        refuse_break_glass(app, email, &found.id, &draft.roles, "submit").await;
        return Reply::update(views::notice(
            "Break-glass is no longer allowed to you for this role; start again and ask the approvers.",
        ));
    }
    let ids = app.identity.slack_ids_of(plan.approvers()).await;
    let new = NewTicket {
        requester_slack_id: user.to_string(),
        requester_email: email.to_string(),
        app_id: found.id.clone(),
        roles: draft.roles.clone(),
        reason: draft.reason.clone(),
        duration_secs: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        status: Status::Approved,
        plan,
        kind: Kind::BreakGlass,
        parent: None,
        reference: draft.reference(),
    };
    let effects_config = config.clone();
    let effects = move |t: &Ticket| {
        let mut effects = Effects::default();
        let (text, blocks) = grant::break_glass_notice(&effects_config, t, true);
        let mut told: Vec<&String> = ids
            .values()
            .filter(|id| *id != &t.requester_slack_id)
            .collect();
        told.sort();
        told.dedup();
        for slack_id in &told {
            effects
                .messages
                .push(NewMessage::post(slack_id, &text, blocks.clone()).as_alert());
        }
        effects.messages.extend(alerts::post(
            effects_config.alerts.channels.break_glass.as_ref(),
            &text,
            blocks.clone(),
        ));
        effects.jobs.push(JobChange::schedule(
            jobs::PROVISION,
            &t.reference(),
            chrono::Utc::now(),
        ));
        effects.audit.push(AuditEvent::new(
            t.requester_email.clone(),
            "ticket.break_glass",
            t.reference(),
            json!({
                "app": t.app_id,
                "roles": t.roles,
                "duration_secs": t.duration_secs,
                "reason": t.reason,
                "told": told,
                "channel": effects_config.alerts.channels.break_glass,
            }),
        ));
        effects
    };
    let created = app.store.create_ticket(new, effects).await;
    let _ = app.store.delete_draft(draft_id.to_string()).await;
    match created {
        Ok(Created::New(ticket)) => {
            app.outbox.wake();
            app.jobs.wake();
            let (name, roles) = describe(&config, &ticket);
            Reply::update(views::submitted(
                &ticket.reference(),
                &format!("for *{name}* ({roles}) is being granted now (break-glass). The approvers and security were told and can revoke it."),
            ))
        }
        Ok(Created::Duplicate(open)) => Reply::update(views::notice(&format!(
            "You already have {} pending for this app and role; cancel it first.",
            open.reference()
        ))),
        Err(err) => {
            failed(
                app,
                err,
                "create a break-glass ticket",
                "accessd could not record your request; nothing was granted. Please try again.",
                Where::Modal,
            )
            .await
        }
    }
}

/// More stages than any request has: the pickers read from a submission.
const MAX_STAGES: usize = 32;

pub(super) async fn step_submit(
    app: &Arc<App>,
    draft: &Draft,
    values: &StateValues,
    user: &str,
    email: &str,
    draft_id: &str,
) -> Reply {
    let config = app.config();
    let Some(found) = app_of(&config, draft) else {
        return app_gone();
    };
    // One picker per stage that offers a choice; a stage without one is
    // `None` (as the policy says), as is every index past the last.
    let chosen: Vec<Option<Vec<String>>> = (0..MAX_STAGES)
        .map(|i| {
            input(
                values,
                &format!("{APPROVERS_BLOCK_PREFIX}{i}"),
                APPROVERS_ACTION,
            )
            .and_then(|v| v.selected_options.as_ref())
            .map(|opts| opts.iter().map(|o| o.value.to_lowercase()).collect())
        })
        .collect();
    let filed = file(app, found, draft, &chosen, user, email).await;
    // A field to fix keeps the form (and its draft); anything else ends it.
    if !matches!(filed, Filed::Refused { .. }) {
        let _ = app.store.delete_draft(draft_id.to_string()).await;
    }
    match filed {
        Filed::New {
            reference,
            text,
            then,
        } => Reply::update(views::submitted(&reference, &text)).then(then),
        Filed::Duplicate(why) => Reply::update(views::notice(&why)),
        Filed::Refused { why, stage } => match stage {
            Some(i) if why.starts_with("Choose") => {
                let block = format!("{APPROVERS_BLOCK_PREFIX}{i}");
                Reply::field_errors(&[(block.as_str(), why)])
            }
            _ => Reply::update(views::notice(&why)),
        },
        Filed::Failed(err) => {
            failed(
                app,
                err,
                "create a ticket",
                "accessd could not record your request; nothing was sent. Please try again.",
                Where::Modal,
            )
            .await
        }
    }
}

/// What filing a request came to.
pub(super) enum Filed {
    /// Created: its reference, what to tell the requester, and the Home
    /// refresh to run after the answer.
    New {
        reference: String,
        text: String,
        then: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    },
    /// Not filed, and why; `stage` when a stage's approver choice is at fault.
    Refused {
        why: String,
        stage: Option<usize>,
    },
    /// The requester already has this pending.
    Duplicate(String),
    Failed(StoreError),
}

/// Files `draft` (app, roles, reason, duration all checked by the caller)
/// with the approvers chosen per stage (`None`: as the policy says): the
/// current policy's plan, the approvers reachable in Slack, the ticket and
/// its DMs in one transaction. The modal's last step and a one-line
/// `/access` both end here.
pub(super) async fn file(
    app: &Arc<App>,
    found: &AppConfig,
    draft: &Draft,
    chosen: &[Option<Vec<String>>],
    user: &str,
    email: &str,
) -> Filed {
    let config = app.config();
    let plan = match plan_for(app, found, &draft.roles, email).await {
        Ok(plan) => plan,
        Err(err) => {
            return Filed::Refused {
                why: err.to_string(),
                stage: None,
            }
        }
    };
    let ids = app.identity.slack_ids_of(plan.candidates(&config)).await;
    let plan = match reachable_plan(&config, plan, &ids, chosen, email) {
        Ok(plan) => plan,
        Err(why) => {
            let stage = chosen.iter().position(|c| c.is_some());
            return Filed::Refused { why, stage };
        }
    };
    let new = NewTicket {
        requester_slack_id: user.to_string(),
        requester_email: email.to_string(),
        app_id: found.id.clone(),
        roles: draft.roles.clone(),
        reason: draft.reason.clone(),
        duration_secs: i64::try_from(draft.duration_secs).unwrap_or(i64::MAX),
        status: if plan.auto_approve {
            Status::Approved
        } else {
            Status::Pending
        },
        plan,
        kind: Kind::Request,
        parent: None,
        reference: draft.reference(),
    };
    let slack_ids = ids.clone();
    let effects_config = config.clone();
    let effects =
        move |ticket: &Ticket| notices::creation_effects(&effects_config, ticket, &slack_ids);
    match app.store.create_ticket(new, effects).await {
        Ok(Created::New(ticket)) => {
            app.outbox.wake();
            app.jobs.wake();
            let (name, roles) = describe(&config, &ticket);
            let text = if ticket.status == Status::Approved {
                format!("for *{name}* ({roles}) was approved automatically.")
            } else {
                format!("for *{name}* ({roles}) was sent to the approvers. You will get a DM at each step.")
            };
            let refresh = app.clone();
            let mut users: Vec<String> = vec![user.to_string()];
            users.extend(
                ticket
                    .plan
                    .stages
                    .first()
                    .into_iter()
                    .flat_map(|s| s.approvers.iter().filter_map(|e| ids.get(e).cloned())),
            );
            Filed::New {
                reference: ticket.reference(),
                text,
                then: Box::pin(async move {
                    let users: Vec<&str> = users.iter().map(String::as_str).collect();
                    refresh.home_refresh.request_all(&users);
                }),
            }
        }
        Ok(Created::Duplicate(open)) => Filed::Duplicate(format!(
            "You already have {} pending for this app and role; nudge or cancel it from the Home tab.",
            open.reference()
        )),
        Err(err) => Filed::Failed(err),
    }
}
