//! Clicks and modals of review DMs: Keep / Revoke, a decision with a
//! comment, Keep all remaining, and reassignment of one item or all of a
//! reviewer's items. Only the assigned reviewer or an admin may decide, and
//! nobody decides on their own access; every decision is committed with its
//! audit row, page update and revoke job before the ack.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use slack_morphism::prelude::*;

use super::tell::{failed, logged, open_modal, place_of, refuse, tell, Place, Where, NOT_RECORDED};
use crate::app::App;
use crate::config::Config;
use crate::lifecycle::reviews::{on_pages, page_locations, page_updates, send_pages, Intro};
use crate::reviews::{holder_unknown, item_ref, job, Person};
use crate::slack::envelope::Reply;
use crate::slack::ids;
use crate::slack::modal::{state_of, value_of};
use crate::slack::views::request::notice;
use crate::slack::views::review as views;
use crate::store::{
    AuditEvent, Campaign, Effects, JobChange, NewMessage, ReviewChange, ReviewItem,
};

/// Who may act on `items`: their reviewer or an admin, never the person
/// whose access it may be; an item whose holder is unknown only its reviewer
/// (an admin could be the holder as well as anyone).
fn may_review(config: &Config, who: &Person, items: &[ReviewItem]) -> Result<(), String> {
    let email = who.email.as_str();
    for item in items {
        if who.may_hold(item) {
            return Err("You cannot review your own access; reassign the item instead.".into());
        }
        let assigned = item.reviewer_email.eq_ignore_ascii_case(email);
        if !assigned && holder_unknown(item) {
            return Err(format!(
                "Nobody can tell whose account {} is, so only its reviewer {} can decide it.",
                item_ref(item.id),
                item.reviewer_email
            ));
        }
        if !assigned && !config.is_admin(email) {
            return Err(format!(
                "{} is assigned to {}; only they or an accessd admin can decide it.",
                item_ref(item.id),
                item.reviewer_email
            ));
        }
    }
    Ok(())
}

struct Clicker {
    slack_id: String,
    person: Person,
    place: Place,
}

/// The person behind a Slack user, with every Slack id linked to them;
/// `None` (refuse) when either cannot be read.
async fn person_of(app: &Arc<App>, slack_id: &str) -> Option<Person> {
    let email = app.identity.email_of(slack_id).await.ok().flatten()?;
    match Person::of(&app.store, &email, Some(slack_id)).await {
        Ok(person) => Some(person),
        Err(err) => {
            tracing::warn!(error = %err, "could not read a reviewer's links");
            None
        }
    }
}

async fn clicker(app: &Arc<App>, event: &SlackInteractionBlockActionsEvent) -> Option<Clicker> {
    let slack_id = super::user_of(event);
    let place = place_of(event);
    match person_of(app, &slack_id).await {
        Some(person) => Some(Clicker {
            slack_id,
            person,
            place,
        }),
        None => {
            let why = "accessd cannot tell who you are (no email on your Slack account).";
            tell(app, &slack_id, &place, why).await;
            None
        }
    }
}

/// Keep or Revoke from a page.
pub async fn decide_clicked(
    app: &Arc<App>,
    action_id: &str,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let Some(who) = clicker(app, &event).await else {
        return Reply::empty();
    };
    let Ok(id) = value.parse::<i64>() else {
        return Reply::empty();
    };
    let decision = if action_id == ids::REVIEW_REVOKE {
        "revoke"
    } else {
        "keep"
    };
    if let Some(answer) = decide(app, &who.person, vec![id], decision, None).await {
        answer_click(app, &who, answer).await;
    }
    Reply::empty()
}

/// Keep all remaining (Slack asked for confirmation before sending it).
pub async fn keep_all(
    app: &Arc<App>,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let Some(who) = clicker(app, &event).await else {
        return Reply::empty();
    };
    let Ok(campaign) = value.parse::<i64>() else {
        return Reply::empty();
    };
    let mine = app
        .store
        .reviewer_items(campaign, who.person.email.clone())
        .await;
    let ids: Vec<i64> = match mine {
        Ok(items) => items
            .into_iter()
            .filter(|i| i.decision.is_none())
            // What may be one's own access is left for someone else.
            .filter(|i| !who.person.may_hold(i))
            .map(|i| i.id)
            .collect(),
        Err(err) => {
            return failed(
                app,
                err,
                "read review items",
                NOT_RECORDED,
                Where::Clicked {
                    user: &who.slack_id,
                    place: &who.place,
                },
            )
            .await
        }
    };
    let answer = if ids.is_empty() {
        Answer::Told("You have no undecided items left in this campaign.".to_string())
    } else {
        let n = ids.len();
        decide(app, &who.person, ids, "keep", None)
            .await
            .unwrap_or_else(|| Answer::Told(format!("Kept {n} item(s).")))
    };
    answer_click(app, &who, answer).await;
    Reply::empty()
}

/// Commits a decision on `ids` with its effects. `Some(answer)` is what the
/// person who decided should be told instead of silence.
async fn decide(
    app: &Arc<App>,
    who: &Person,
    ids: Vec<i64>,
    decision: &str,
    comment: Option<String>,
) -> Option<Answer> {
    let config = app.config();
    let mut before = Vec::new();
    for id in &ids {
        if let Ok(Some(item)) = app.store.review_item(*id).await {
            before.push(item);
        }
    }
    if before.is_empty() {
        return Some(Answer::Told("That review item no longer exists.".into()));
    }
    let locations = page_locations(app, &before).await;
    let check_config = config.clone();
    let actor = who.email.clone();
    let check_actor = who.clone();
    let decided = app
        .store
        .decide_review_items(
            ids,
            actor.clone(),
            decision.to_string(),
            comment,
            move |_, items| may_review(&check_config, &check_actor, items),
            move |campaign, decided, mates| {
                let mut effects = Effects {
                    messages: page_updates(&config, campaign, &locations, &on_pages(mates)),
                    ..Effects::default()
                };
                for item in decided {
                    effects.audit.push(AuditEvent::new(
                        &actor,
                        format!("review.{}", if item.decision.as_deref() == Some("revoke") { "revoked" } else { "kept" }),
                        item_ref(item.id),
                        json!({ "campaign": campaign.reference(), "app": item.app_id, "account": item.account_id,
                                "email": item.email, "entitlement": item.entitlement, "comment": item.comment }),
                    ));
                    if item.decision.as_deref() == Some("revoke") {
                        effects.jobs.push(JobChange::schedule(job::REVOKE, &item_ref(item.id), Utc::now()));
                    }
                }
                effects
            },
        )
        .await;
    match decided {
        Ok(ReviewChange::Done(_)) => {
            app.outbox.wake();
            app.jobs.wake();
            if let Ok(Some(slack)) = app.identity.slack_id_of(&who.email).await {
                app.home_refresh.request(&slack);
            }
            None
        }
        Ok(ReviewChange::Already(item)) => Some(format!(
            "{} was already decided: {} by {}.",
            item_ref(item.id),
            item.decision.unwrap_or_default(),
            item.decided_by.unwrap_or_default()
        )),
        Ok(ReviewChange::Refused(why)) => {
            let audit = AuditEvent::new(
                &who.email,
                "review.decision_refused",
                item_ref(before[0].id),
                json!({ "reason": why }),
            );
            return Some(Answer::Refused(why, audit));
        }
        Ok(ReviewChange::Closed(c)) => Some(format!(
            "{} is closed; decisions are no longer taken.",
            c.reference()
        )),
        Err(err) => Some(logged(err, "record a review decision", NOT_RECORDED).into()),
    }
    .map(Answer::Told)
}

/// What the person who decided is told, when not silence.
enum Answer {
    Told(String),
    /// Refused: told through [`refuse`], with its audit row.
    Refused(String, AuditEvent),
}

/// Answers a click with what [`decide`] came to.
async fn answer_click(app: &Arc<App>, who: &Clicker, answer: Answer) {
    match answer {
        Answer::Told(text) => tell(app, &who.slack_id, &who.place, &text).await,
        Answer::Refused(why, audit) => {
            refuse(app, &who.slack_id, &who.place, &why, Some(audit)).await
        }
    }
}

/// The item menu: a decision with a comment, or a reassignment; both open a modal.
pub async fn more_clicked(
    app: &Arc<App>,
    selected: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let config = app.config();
    let Some((what, id)) = selected.split_once(':') else {
        return Reply::empty();
    };
    let Ok(id) = id.parse::<i64>() else {
        return Reply::empty();
    };
    let Some(who) = clicker(app, &event).await else {
        return Reply::empty();
    };
    let item = match app.store.review_item(id).await {
        Ok(Some(item)) => item,
        _ => {
            tell(
                app,
                &who.slack_id,
                &who.place,
                "That review item no longer exists.",
            )
            .await;
            return Reply::empty();
        }
    };
    if let Err(why) = may_review(&config, &who.person, std::slice::from_ref(&item)) {
        if what != "reassign" || !item.reviewer_email.eq_ignore_ascii_case(&who.person.email) {
            refuse(app, &who.slack_id, &who.place, &why, None).await;
            return Reply::empty();
        }
    }
    let view = if what == "reassign" {
        views::reassign_modal(
            &format!("item:{id}"),
            &format!(
                "{} ({})",
                item_ref(id),
                views::describe_item(&config, &item)
            ),
        )
    } else {
        views::comment_modal(&config, &item)
    };
    open_review_modal(app, &event.trigger_id.0, view)
}

/// Reassign all of the clicker's open items in a campaign.
pub async fn reassign_all_clicked(
    app: &Arc<App>,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let Ok(campaign) = value.parse::<i64>() else {
        return Reply::empty();
    };
    open_review_modal(
        app,
        &event.trigger_id.0,
        views::reassign_modal(&format!("all:{campaign}"), "all your undecided items"),
    )
}

/// Acks the click, then opens `view` on its trigger.
fn open_review_modal(app: &Arc<App>, trigger_id: &str, view: serde_json::Value) -> Reply {
    let app = app.clone();
    let trigger_id = trigger_id.to_string();
    Reply::empty().then(async move { open_modal(&app, &trigger_id, view, "review").await })
}

fn metadata(submission: &SlackInteractionViewSubmissionEvent) -> String {
    match &submission.view.view {
        SlackView::Modal(m) => m.private_metadata.clone().unwrap_or_default(),
        SlackView::Home(_) => String::new(),
    }
}

fn close_with(text: &str) -> Reply {
    Reply::update(notice(text))
}

/// The comment modal: a decision with a comment on one item.
pub async fn comment_submitted(
    app: &Arc<App>,
    submission: SlackInteractionViewSubmissionEvent,
) -> Reply {
    let user = submission.user.id.0.clone();
    let Ok(id) = metadata(&submission).parse::<i64>() else {
        return Reply::empty();
    };
    let decision = state_of(
        &submission,
        ids::REVIEW_DECISION_BLOCK,
        ids::REVIEW_DECISION_ACTION,
    )
    .and_then(|s| s.selected_option.as_ref())
    .map(|o| o.value.clone());
    let Some(decision) = decision.filter(|d| d == "keep" || d == "revoke") else {
        return Reply::field_errors(&[(
            ids::REVIEW_DECISION_BLOCK,
            "Choose Keep or Revoke.".into(),
        )]);
    };
    let comment = value_of(&submission, ids::COMMENT_BLOCK, ids::COMMENT_ACTION)
        .filter(|c| !c.trim().is_empty());
    let Some(who) = person_of(app, &user).await else {
        return close_with("accessd cannot tell who you are (no email on your Slack account).");
    };
    match decide(app, &who, vec![id], &decision, comment).await {
        None => Reply::empty(),
        Some(Answer::Told(text)) => close_with(&text),
        Some(Answer::Refused(why, audit)) => {
            // A modal is opened by a click we already answered; its one
            // refusal is recorded and shown in place.
            if let Err(err) = app.store.append_audit(audit).await {
                tracing::error!(error = %err, "could not audit a refused review decision");
            }
            close_with(&why)
        }
    }
}

/// The reassignment modal: one item (`item:ID`) or all (`all:CAMPAIGN`).
pub async fn reassign_submitted(
    app: &Arc<App>,
    submission: SlackInteractionViewSubmissionEvent,
) -> Reply {
    let config = app.config();
    let user = submission.user.id.0.clone();
    let what = metadata(&submission);
    let new_reviewer = state_of(&submission, ids::REVIEWER_BLOCK, ids::REVIEWER_ACTION)
        .and_then(|s| s.selected_user.as_ref())
        .map(|u| u.0.clone());
    let reason = value_of(
        &submission,
        ids::REASSIGN_REASON_BLOCK,
        ids::REASSIGN_REASON_ACTION,
    )
    .map(|r| r.trim().to_string())
    .filter(|r| !r.is_empty());
    let Some(new_reviewer) = new_reviewer else {
        return Reply::field_errors(&[(ids::REVIEWER_BLOCK, "Choose who should review.".into())]);
    };
    let Some(reason) = reason else {
        return Reply::field_errors(&[(
            ids::REASSIGN_REASON_BLOCK,
            "Say why, for the audit trail.".into(),
        )]);
    };
    let Ok(Some(email)) = app.identity.email_of(&user).await else {
        return close_with("accessd cannot tell who you are (no email on your Slack account).");
    };
    let to_email = match app.identity.email_of(&new_reviewer).await {
        Ok(Some(e)) => e,
        _ => {
            return Reply::field_errors(&[(
                ids::REVIEWER_BLOCK,
                "accessd cannot find that person's email; choose someone else.".into(),
            )])
        }
    };
    let target = match Person::of(&app.store, &to_email, Some(&new_reviewer)).await {
        Ok(person) => person,
        Err(err) => {
            tracing::warn!(error = %err, "could not read a new reviewer's links");
            return Reply::field_errors(&[(
                ids::REVIEWER_BLOCK,
                "accessd cannot check that person just now; try again.".into(),
            )]);
        }
    };
    if to_email.eq_ignore_ascii_case(&email) {
        return Reply::field_errors(&[(
            ids::REVIEWER_BLOCK,
            "Choose someone other than yourself.".into(),
        )]);
    }
    let item_ids: Vec<i64> = match what.split_once(':') {
        Some(("item", id)) => id.parse().ok().into_iter().collect(),
        Some(("all", campaign)) => match campaign.parse::<i64>() {
            Ok(c) => app
                .store
                .reviewer_items(c, email.clone())
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|i| i.decision.is_none())
                .map(|i| i.id)
                .collect(),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    };
    if item_ids.is_empty() {
        return close_with("There is nothing of yours left to reassign.");
    }
    let mut before = Vec::new();
    for id in &item_ids {
        if let Ok(Some(item)) = app.store.review_item(*id).await {
            before.push(item);
        }
    }
    // Checked here too, for an answer on the field: the person chosen must
    // not be the one whose access is under review (the transaction below
    // checks again, against the rows as they are then).
    if let Some(own) = before.iter().find(|item| target.may_hold(item)) {
        return Reply::field_errors(&[(
            ids::REVIEWER_BLOCK,
            format!(
                "{} is about {to_email}'s own access; choose someone else.",
                item_ref(own.id)
            ),
        )]);
    }
    let locations = page_locations(app, &before).await;
    let moved_from = on_pages(&before);
    let check_config = config.clone();
    let actor = email.clone();
    let to = to_email.clone();
    let target_person = target.clone();
    let result = app
        .store
        .reassign_review_items(
            item_ids,
            to_email.clone(),
            reason.clone(),
            move |_, items| {
                // The reviewer (or an admin, unless nobody knows whose the
                // account is) may hand items on; the new reviewer must not
                // be the person whose access it may be.
                for item in items {
                    let assigned = item.reviewer_email.eq_ignore_ascii_case(&actor);
                    if !assigned && (holder_unknown(item) || !check_config.is_admin(&actor)) {
                        return Err(format!("{} is assigned to {}.", item_ref(item.id), item.reviewer_email));
                    }
                    if target_person.may_hold(item) {
                        return Err(format!("{} is about {}'s own access; choose someone else.", item_ref(item.id), target_person.email));
                    }
                }
                Ok(())
            },
            move |campaign, moved, mates| {
                let mut shown = on_pages(mates);
                // Moved items stay on the old page, shown as reassigned.
                for (key, old) in &moved_from {
                    if let Some(now) = moved.iter().find(|m| m.id == old.id) {
                        shown.push((key.clone(), now.clone()));
                    }
                }
                let mut effects = Effects {
                    messages: page_updates(&config, campaign, &locations, &shown),
                    ..Effects::default()
                };
                effects.audit.push(AuditEvent::new(
                    &email,
                    "review.reassigned",
                    campaign.reference(),
                    json!({ "items": moved.iter().map(|m| item_ref(m.id)).collect::<Vec<_>>(), "to": to, "reason": reason }),
                ));
                effects
            },
        )
        .await;
    match result {
        Ok(ReviewChange::Done(moved)) => {
            let count = moved.len();
            let app = app.clone();
            let campaign_id = moved[0].campaign_id;
            let from = user.clone();
            let by = before[0].reviewer_email.clone();
            let reason_text = value_of(
                &submission,
                ids::REASSIGN_REASON_BLOCK,
                ids::REASSIGN_REASON_ACTION,
            )
            .unwrap_or_default();
            // The new reviewer's pages go out after the ack (Slack lookups).
            Reply::empty().then(async move {
                if let Ok(Some(campaign)) = app.store.campaign(campaign_id).await {
                    let intro = Intro::Reassigned {
                        from: by,
                        reason: reason_text,
                    };
                    if send_pages(&app, &campaign, &to_email, intro).await.is_err() {
                        tracing::warn!(
                            campaign = campaign.reference(),
                            "could not send reassigned pages now; the next reminder does"
                        );
                    }
                    notify_done(&app, &campaign, &from, count, &to_email).await;
                }
            })
        }
        Ok(ReviewChange::Already(item)) => {
            close_with(&format!("{} was already decided.", item_ref(item.id)))
        }
        Ok(ReviewChange::Refused(why)) => close_with(&why),
        Ok(ReviewChange::Closed(c)) => close_with(&format!("{} is closed.", c.reference())),
        Err(err) => {
            failed(
                app,
                err,
                "reassign review items",
                NOT_RECORDED,
                Where::Modal,
            )
            .await
        }
    }
}

async fn notify_done(app: &Arc<App>, _campaign: &Campaign, user: &str, count: usize, to: &str) {
    let (text, blocks) = views::reassigned_done(count, to);
    if let Err(err) = app.outbox.send(NewMessage::post(user, &text, blocks)).await {
        tracing::error!(error = %err, "could not queue a reassignment notice");
    }
    app.home_refresh.request(user);
}
