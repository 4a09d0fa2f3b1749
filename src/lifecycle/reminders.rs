//! Approver reminders (`reminder_after`, then every `reminder_every`, while
//! the ticket is pending) and staleness (`stale_after`: the ticket ends as
//! `stale`, everyone involved is told, the approver DMs lose their buttons).

use std::sync::Arc;

use super::notices::{reminder_messages, update_approver_copies};
use super::store_error;
use super::JobResult;
use crate::app::App;
use crate::slack::views::ticket::requester_update;
use crate::store::{Changed, Effects, Job, JobChange, NewMessage};

pub mod job {
    pub use crate::domain::jobs::{REMIND, STALE};
}

pub async fn remind(app: &Arc<App>, ticket_id: i64) -> JobResult {
    let config = app.config();
    let ticket = match app.store.ticket(ticket_id).await {
        Ok(Some(t)) if t.status.is_pending() => t,
        Ok(_) => return JobResult::Done,
        Err(err) => return store_error(app, err),
    };
    let ids = app
        .identity
        .slack_ids_of(ticket.plan.stage_approvers(ticket.stage))
        .await;
    let next = chrono::Utc::now()
        + chrono::Duration::from_std(config.requests.reminder_every)
            .unwrap_or(chrono::Duration::MAX / 2);
    let messages = reminder_messages(&config, &ticket, &ids);
    match app.store.send_reminders(ticket.id, messages, next).await {
        Ok(()) => {
            app.outbox.wake();
            JobResult::Done
        }
        Err(err) => store_error(app, err),
    }
}

pub async fn stale(app: &Arc<App>, job: &Job, ticket_id: i64) -> JobResult {
    let config = app.config();
    let ticket = match app.store.ticket(ticket_id).await {
        Ok(Some(t)) if t.status.is_pending() => t,
        Ok(_) => return JobResult::Done,
        Err(err) => return store_error(app, err),
    };
    let ids = app.identity.slack_ids_of(ticket.plan.approvers()).await;
    let job_id = job.id;
    let changed = app
        .store
        .expire_pending(ticket_id, job_id, move |t| {
            let mut effects = Effects::default();
            update_approver_copies(&config, t, &ids, &mut effects);
            let (text, blocks) = requester_update(&config, t, &[]);
            effects
                .messages
                .push(NewMessage::post(&t.requester_slack_id, &text, blocks));
            effects
                .jobs
                .push(JobChange::cancel(job::REMIND, &t.reference()));
            effects
        })
        .await;
    match changed {
        Ok(Changed::Done(t)) => {
            app.outbox.wake();
            app.home_refresh.request(&t.requester_slack_id);
            JobResult::Done
        }
        Ok(_) => JobResult::Done,
        Err(err) => store_error(app, err),
    }
}
