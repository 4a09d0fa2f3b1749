//! Review campaign jobs: the launch (each reviewer's DM and pages), the
//! reminders and closing-soon notices, the close with the owner's summary,
//! each Revoke decision carried out, and campaigns created on a schedule.
//! Also the page updates every change to an item needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::revoke::{revoke_access, RevokeAsk};
use super::store_error;
use super::JobResult;
use crate::app::App;
use crate::config::Config;
use crate::reviews::{self, item_ref, job, CampaignAsk, CreateError};
use crate::slack::views::review as views;
use crate::slack::views::text;
use crate::store::reviews::parse_campaign_ref;
use crate::store::StoreError;
use crate::store::{AuditEvent, Campaign, Effects, Job, JobChange, NewMessage, OnSent, ReviewItem};

pub async fn run(app: &Arc<App>, job_: &Job) -> JobResult {
    if job_.kind == job::SCHEDULED {
        return scheduled(app, &job_.subject).await;
    }
    if job_.kind == job::REVOKE {
        return match reviews::parse_item_ref(&job_.subject) {
            Some(id) => revoke_item(app, job_, id).await,
            None => JobResult::Fail(format!("bad review item {:?}", job_.subject)),
        };
    }
    let Some(id) = parse_campaign_ref(&job_.subject) else {
        return JobResult::Fail(format!("bad campaign {:?}", job_.subject));
    };
    let campaign = match app.store.campaign(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return JobResult::Fail(format!("no campaign {}", job_.subject)),
        Err(err) => return store_error(app, err),
    };
    if !campaign.is_open() {
        return JobResult::Done;
    }
    match job_.kind.as_str() {
        job::LAUNCH => launch(app, &campaign).await,
        job::REMIND => nudge(app, &campaign, false).await,
        job::CLOSING_SOON => nudge(app, &campaign, true).await,
        job::CLOSE => close(app, &campaign).await,
        other => JobResult::Fail(format!("unknown review job {other}")),
    }
}

/// Why a reviewer got pages: the campaign started, or items were moved to them.
pub enum Intro {
    Launch,
    Reassigned { from: String, reason: String },
}

async fn launch(app: &Arc<App>, campaign: &Campaign) -> JobResult {
    let items = match app.store.review_items(campaign.id).await {
        Ok(items) => items,
        Err(err) => return store_error(app, err),
    };
    let mut reviewers: Vec<String> = items.iter().map(|i| i.reviewer_email.clone()).collect();
    reviewers.sort();
    reviewers.dedup();
    for reviewer in reviewers {
        if let Err(result) = send_pages(app, campaign, &reviewer, Intro::Launch).await {
            return result;
        }
    }
    if let Err(err) = app.store.mark_campaign_launched(campaign.id).await {
        return store_error(app, err);
    }
    JobResult::Done
}

/// Posts the reviewer's items that no page shows yet, in pages, after the
/// intro. Re-runnable: already paged items are not sent again.
pub async fn send_pages(
    app: &Arc<App>,
    campaign: &Campaign,
    reviewer: &str,
    intro: Intro,
) -> Result<(), JobResult> {
    let config = app.config();
    let slack_id = match app.identity.slack_id_of(reviewer).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            tracing::warn!(
                campaign = campaign.reference(),
                reviewer,
                "reviewer not found in Slack; telling the campaign owner"
            );
            let text = format!(
                ":warning: {}: reviewer {reviewer} has no Slack account accessd can find, so their items were not sent. Link them with `accessd users link` (they are sent at the next reminder) or reassign the items.",
                campaign.reference()
            );
            if let Ok(Some(owner)) = app.identity.slack_id_of(&campaign.owner_email).await {
                let mut m = NewMessage::post(&owner, &text, json!([text::section(&text)]));
                m.dedupe_key = Some(format!("review:{}:unreachable:{reviewer}", campaign.id));
                app.outbox.send(m).await.map_err(|e| store_error(app, e))?;
            }
            return Ok(());
        }
        Err(err) => {
            return Err(JobResult::Retry {
                after: app.job_options.retry_base,
                error: format!("looking up {reviewer} in Slack: {err}"),
            })
        }
    };
    let total = app
        .store
        .reviewer_items(campaign.id, reviewer.to_string())
        .await
        .map_err(|e| store_error(app, e))?
        .len();
    let who = reviewer.to_string();
    let to = slack_id.clone();
    let pages = app
        .store
        .paginate(
            campaign.id,
            reviewer.to_string(),
            slack_id,
            views::PAGE_SIZE,
            move |c, pages| {
                let mut effects = Effects::default();
                if pages.is_empty() {
                    return effects;
                }
                let count: usize = pages.iter().map(|(_, items)| items.len()).sum();
                let (text, blocks) = match &intro {
                    Intro::Launch => views::launch(&config, c, total, pages.len()),
                    Intro::Reassigned { from, reason } => {
                        views::reassigned_to_you(c, count, from, reason)
                    }
                };
                let mut first = NewMessage::post(&to, &text, blocks);
                if matches!(intro, Intro::Launch) {
                    first.dedupe_key = Some(format!("review:{}:launch:{who}", c.id));
                }
                effects.messages.push(first);
                for (page, items) in pages {
                    let (text, blocks) = views::page(&config, c, *page, items, &who);
                    effects
                        .messages
                        .push(NewMessage::post(&to, &text, blocks).with_on_sent(
                            OnSent::ReviewPage {
                                campaign_id: c.id,
                                reviewer_email: who.clone(),
                                page: *page,
                            },
                        ));
                }
                effects
            },
        )
        .await
        .map_err(|e| store_error(app, e))?;
    if !pages.is_empty() {
        app.outbox.wake();
    }
    Ok(())
}

/// Where each page showing one of `items` was posted, by (reviewer, page).
pub async fn page_locations(
    app: &Arc<App>,
    items: &[ReviewItem],
) -> HashMap<(String, i64), (String, String)> {
    let mut out = HashMap::new();
    for item in items {
        let Some(page) = item.page else { continue };
        let key = (item.reviewer_email.to_lowercase(), page);
        if out.contains_key(&key) {
            continue;
        }
        if let Ok(Some(loc)) = app
            .store
            .page_location(item.campaign_id, key.0.clone(), page)
            .await
        {
            if let (Some(channel), Some(ts)) = (loc.channel, loc.ts) {
                out.insert(key, (channel, ts));
            }
        }
    }
    out
}

/// `chat.update`s of the pages that show `shown`: each entry is the page it
/// sits on (reviewer, page) and the item as it is now.
pub fn page_updates(
    config: &Config,
    campaign: &Campaign,
    locations: &HashMap<(String, i64), (String, String)>,
    shown: &[((String, i64), ReviewItem)],
) -> Vec<NewMessage> {
    let mut pages: BTreeMap<(String, i64), Vec<ReviewItem>> = BTreeMap::new();
    for (key, item) in shown {
        pages.entry(key.clone()).or_default().push(item.clone());
    }
    let mut out = Vec::new();
    for (key, mut items) in pages {
        let Some((channel, ts)) = locations.get(&key) else {
            continue;
        };
        items.sort_by_key(|i| i.id);
        items.dedup_by_key(|i| i.id);
        let (text, blocks) = views::page(config, campaign, key.1, &items, &key.0);
        out.push(NewMessage::update(channel, channel, ts, &text, blocks));
    }
    out
}

/// Items keyed by the page that shows them.
pub fn on_pages(items: &[ReviewItem]) -> Vec<((String, i64), ReviewItem)> {
    items
        .iter()
        .filter_map(|i| {
            i.page
                .map(|p| ((i.reviewer_email.to_lowercase(), p), i.clone()))
        })
        .collect()
}

async fn nudge(app: &Arc<App>, campaign: &Campaign, closing_soon: bool) -> JobResult {
    let config = app.config();
    let progress = match app.store.review_progress(None).await {
        Ok(p) => p,
        Err(err) => return store_error(app, err),
    };
    for p in progress
        .iter()
        .filter(|p| p.campaign.id == campaign.id && p.decided < p.total)
    {
        // Someone linked since the launch gets their pages now.
        if let Err(result) = send_pages(app, campaign, &p.reviewer_email, Intro::Launch).await {
            return result;
        }
        let Ok(Some(slack_id)) = app.identity.slack_id_of(&p.reviewer_email).await else {
            continue;
        };
        let (text, blocks) = views::nudge(&config, campaign, p.total - p.decided, closing_soon);
        if let Err(err) = app
            .outbox
            .send(NewMessage::post(&slack_id, &text, blocks))
            .await
        {
            return store_error(app, err);
        }
    }
    let every = reviews::remind_every(&config, &reviews::notifications_of(campaign));
    if let (false, Some(every)) = (closing_soon, every) {
        let next = Utc::now() + chrono::Duration::from_std(every).unwrap_or_default();
        if next < campaign.due_at {
            if let Err(err) = app
                .store
                .schedule_job(job::REMIND.into(), campaign.reference(), next, Value::Null)
                .await
            {
                return store_error(app, err);
            }
        }
    }
    JobResult::Done
}

async fn close(app: &Arc<App>, campaign: &Campaign) -> JobResult {
    let config = app.config();
    let owner = app
        .identity
        .slack_id_of(&campaign.owner_email)
        .await
        .ok()
        .flatten();
    let items = match app.store.review_items(campaign.id).await {
        Ok(items) => items,
        Err(err) => return store_error(app, err),
    };
    // Open items' pages lose their buttons.
    let open: Vec<ReviewItem> = items
        .iter()
        .filter(|i| i.decision.is_none())
        .cloned()
        .collect();
    let locations = page_locations(app, &open).await;
    let closed = app
        .store
        .close_campaign(campaign.id, move |c, items| {
            let mut effects = Effects::default();
            let (kept, revoked) = (
                items
                    .iter()
                    .filter(|i| i.decision.as_deref() == Some("keep"))
                    .count(),
                items
                    .iter()
                    .filter(|i| i.decision.as_deref() == Some("revoke"))
                    .count(),
            );
            if let Some(owner) = &owner {
                let (text, blocks) = views::summary(&config, c, items);
                effects
                    .messages
                    .push(NewMessage::post(owner, &text, blocks));
            }
            let mut on = on_pages(items);
            let keys: std::collections::HashSet<(String, i64)> =
                on_pages(&open).into_iter().map(|(k, _)| k).collect();
            on.retain(|(k, _)| keys.contains(k));
            effects
                .messages
                .extend(page_updates(&config, c, &locations, &on));
            effects
                .jobs
                .push(JobChange::cancel(job::REMIND, &c.reference()));
            effects
                .jobs
                .push(JobChange::cancel(job::CLOSING_SOON, &c.reference()));
            effects.audit.push(AuditEvent::new(
                "system",
                "review.closed",
                c.reference(),
                json!({ "items": items.len(), "kept": kept, "revoked": revoked,
                        "undecided": items.len() - kept - revoked }),
            ));
            effects
        })
        .await;
    match closed {
        Ok(_) => {
            app.outbox.wake();
            JobResult::Done
        }
        Err(err) => store_error(app, err),
    }
}

async fn revoke_item(app: &Arc<App>, job_: &Job, id: i64) -> JobResult {
    let item = match app.store.review_item(id).await {
        Ok(Some(item)) => item,
        Ok(None) => return JobResult::Fail(format!("no review item {id}")),
        Err(err) => return store_error(app, err),
    };
    if item.decision.as_deref() != Some("revoke") || item.revoke_outcome.is_some() {
        return JobResult::Done;
    }
    let campaign = match app.store.campaign(item.campaign_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return JobResult::Fail(format!("no campaign for item {id}")),
        Err(err) => return store_error(app, err),
    };
    let (outcome, tasks) = match item.email.clone() {
        None => (
            "failed: the account has no email to act on; remove it by hand".to_string(),
            Vec::new(),
        ),
        Some(email) => {
            let ask = RevokeAsk {
                app_id: item.app_id.clone(),
                email,
                entitlements: item.entitlement.iter().cloned().collect(),
                whole_account: item.entitlement.is_none(),
                key: format!("review/{}", item_ref(id)),
                by: item.decided_by.clone().unwrap_or_default(),
                reason: format!("access review {}", campaign.reference()),
            };
            match revoke_access(app, job_, &ask).await {
                Ok(report) => (report.outcome(), report.owner_tasks),
                Err(JobResult::Fail(why)) => (format!("failed: {why}"), Vec::new()),
                Err(retry) => return retry,
            }
        }
    };
    let mut done = item.clone();
    done.revoke_outcome = Some(outcome.clone());
    let mates = match app
        .store
        .reviewer_items(item.campaign_id, item.reviewer_email.clone())
        .await
    {
        Ok(items) => items
            .into_iter()
            .filter(|i| i.page == item.page)
            .map(|i| if i.id == id { done.clone() } else { i })
            .collect::<Vec<_>>(),
        Err(err) => return store_error(app, err),
    };
    let locations = page_locations(app, std::slice::from_ref(&item)).await;
    let mut effects = Effects {
        messages: tasks,
        ..Effects::default()
    };
    effects.messages.extend(page_updates(
        &app.config(),
        &campaign,
        &locations,
        &on_pages(&mates),
    ));
    effects.audit.push(AuditEvent::new(
        "system",
        "review.revoke_done",
        item_ref(id),
        json!({ "campaign": campaign.reference(), "outcome": outcome }),
    ));
    match app.store.record_revoke_outcome(id, outcome, effects).await {
        Ok(()) => {
            app.outbox.wake();
            JobResult::Done
        }
        Err(err) => store_error(app, err),
    }
}

/// A `[[reviews.schedules]]` entry came due: its campaign, then the next timer.
async fn scheduled(app: &Arc<App>, name: &str) -> JobResult {
    let config = app.config();
    let Some(schedule) = config.reviews.schedules.iter().find(|s| s.name == name) else {
        tracing::info!(
            schedule = name,
            "review schedule no longer configured; dropped"
        );
        return JobResult::Done;
    };
    let ask = CampaignAsk {
        name: Some(format!(
            "{} {}",
            schedule.name,
            Utc::now().format("%Y-%m-%d")
        )),
        apps: schedule.apps.clone(),
        reviewer: schedule.reviewer.clone(),
        due: schedule.due,
        owner: None,
        schedule: Some(schedule.name.clone()),
        created_by: format!("schedule:{}", schedule.name),
        notifications: schedule.notifications,
    };
    match reviews::create(&app.store, &config, ask, Utc::now()).await {
        Ok(c) => {
            tracing::info!(
                campaign = c.reference(),
                schedule = name,
                "scheduled review campaign created"
            );
            app.jobs.wake();
        }
        Err(CreateError::Store(err)) => return store_error(app, err),
        Err(err) => {
            tracing::warn!(schedule = name, error = %err, "scheduled review campaign not created")
        }
    }
    match schedule_next(app, name).await {
        Ok(()) => JobResult::Done,
        Err(err) => store_error(app, err),
    }
}

/// Sets the schedule's next run (a run missed while down is skipped).
pub async fn schedule_next(app: &App, name: &str) -> Result<(), StoreError> {
    let config = app.config();
    let Some(schedule) = config.reviews.schedules.iter().find(|s| s.name == name) else {
        return Ok(());
    };
    if let Some(next) = schedule.cron.next_after(Utc::now()) {
        app.store
            .schedule_job(job::SCHEDULED.into(), name.to_string(), next, Value::Null)
            .await?;
    }
    Ok(())
}
