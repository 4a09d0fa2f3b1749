//! Clicks on alert channel messages: Acknowledge, Add to watchlist, Ignore
//! app, Revoke and Deactivate in Slack (offboarded-but-active), and the
//! digest's per-kind Acknowledge. Only `requests.admins` and the app's
//! owners may act (Deactivate in Slack: admins only); every
//! action is re-read from SQLite, committed with its audit row and the
//! message update before the ack, and a second click answers who did it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use slack_morphism::prelude::{SlackInteractionActionContainer, SlackInteractionBlockActionsEvent};

use super::tell::{failed, logged, place_of, refuse, tell, Where, NOT_RECORDED};
use crate::alerts;
use crate::alerts::kind;
use crate::app::App;
use crate::lifecycle::findings::job::{ACCOUNT_REVOKE, SLACK_DEACTIVATE};
use crate::slack::envelope::Reply;
use crate::slack::ids;
use crate::slack::views::alert;
use crate::store::{ActionOutcome, AlertAction, AlertRow, AuditEvent, JobChange, NewMessage};

/// Who may act on a finding about `app` (None: not about an app).
fn may_act(app: &App, email: &str, about: Option<&str>) -> bool {
    let config = app.config();
    config.is_admin(email)
        || about.and_then(|a| config.app(a)).is_some_and(|a| {
            config
                .owners_of(a)
                .iter()
                .any(|o| o.eq_ignore_ascii_case(email))
        })
}

pub async fn clicked(
    app: &Arc<App>,
    action_id: &str,
    key: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let user = super::user_of(&event);
    let place = place_of(&event);
    let Ok(Some(email)) = app.identity.email_of(&user).await else {
        let why = "accessd cannot tell who you are (no email on your Slack account).";
        tell(app, &user, &place, why).await;
        return Reply::empty();
    };
    let alert = match app.store.alert(key.to_string()).await {
        Ok(Some(alert)) => alert,
        Ok(None) => {
            tell(app, &user, &place, "That alert no longer exists.").await;
            return Reply::empty();
        }
        Err(err) => {
            return failed(
                app,
                err,
                "read an alert",
                NOT_RECORDED,
                Where::Clicked {
                    user: &user,
                    place: &place,
                },
            )
            .await
        }
    };
    let action = match action_id {
        ids::ALERT_WATCH => "watch",
        ids::ALERT_IGNORE => "ignore",
        ids::ALERT_REVOKE => "revoke",
        ids::ALERT_DEACTIVATE => "deactivate",
        _ => "acknowledged",
    };
    let about = alert.app.as_deref();
    // Deactivating a workspace account is beyond what an app's owner decides.
    let allowed = if action == "deactivate" {
        app.config().is_admin(&email)
    } else {
        may_act(app, &email, about)
    };
    if !allowed {
        let audit = AuditEvent::new(
            &email,
            "alert.action_refused",
            &alert.key,
            json!({ "slack_id": user, "action": action, "kind": alert.kind }),
        );
        let text = if action == "deactivate" {
            "Only accessd admins can deactivate a Slack account."
        } else {
            "Only accessd admins and the app's owners can act on this alert."
        };
        refuse(app, &user, &place, text, Some(audit)).await;
        return Reply::empty();
    }
    let mark = match (action, about) {
        ("watch" | "ignore", Some(a)) => Some((a.to_string(), action.to_string())),
        ("watch" | "ignore", None) => {
            tell(app, &user, &place, "This alert is not about an app.").await;
            return Reply::empty();
        }
        _ => None,
    };
    let mut jobs = Vec::new();
    if action == "revoke" {
        if alert.kind != kind::OFFBOARDED_ACTIVE
            || !alerts::revocable(&app.config(), about.unwrap_or(""))
        {
            tell(
                app,
                &user,
                &place,
                "accessd cannot revoke this access: the app is not in the catalog.",
            )
            .await;
            return Reply::empty();
        }
        let d = &alert.detail;
        let payload = json!({
            "key": alert.key, "app": about, "email": d.get("email"), "by": email,
            "entitlements": d.pointer("/account/entitlements").cloned().unwrap_or(json!([])),
        });
        jobs.push(
            JobChange::schedule(ACCOUNT_REVOKE, &alert.key, Utc::now()).with_payload(payload),
        );
    }
    if action == "deactivate" {
        let source = alert.source_id.as_deref();
        let account = alert.detail.pointer("/account/id").and_then(|v| v.as_str());
        let (true, Some(source), Some(account)) = (
            alert.kind == kind::OFFBOARDED_ACTIVE && alerts::deactivatable(&app.config(), source),
            source,
            account,
        ) else {
            let text = "accessd cannot deactivate this account: it was not listed by a Slack source with a SCIM token.";
            tell(app, &user, &place, text).await;
            return Reply::empty();
        };
        let payload =
            json!({ "key": alert.key, "source": source, "account": account, "by": email });
        jobs.push(
            JobChange::schedule(SLACK_DEACTIVATE, &alert.key, Utc::now()).with_payload(payload),
        );
    }
    let acted = AlertRow {
        acted_by: Some(email.clone()),
        acted_at: Some(Utc::now()),
        action: Some(action.to_string()),
        status: "acknowledged".into(),
        ..alert.clone()
    };
    let messages = message_update(app, &acted, &event).into_iter().collect();
    let act = AlertAction {
        key: alert.key.clone(),
        action: action.to_string(),
        actor: email.clone(),
        mark,
        audit: AuditEvent::new(
            &email,
            format!("alert.{action}"),
            &alert.key,
            json!({ "slack_id": user, "kind": alert.kind, "app": about }),
        ),
        messages,
        jobs,
    };
    match app.store.act_on_alert(act).await {
        Ok(ActionOutcome::Done) => {
            app.outbox.wake();
            app.jobs.wake();
        }
        Ok(ActionOutcome::AlreadyDone { action, by }) => {
            let text = format!("Already handled: {} by {by}.", describe(&action));
            tell(app, &user, &place, &text).await;
        }
        Ok(ActionOutcome::NotFound) => {
            tell(app, &user, &place, "That alert no longer exists.").await;
        }
        Err(err) => {
            return failed(
                app,
                err,
                "record an alert action",
                NOT_RECORDED,
                Where::Clicked {
                    user: &user,
                    place: &place,
                },
            )
            .await
        }
    }
    Reply::empty()
}

fn describe(action: &str) -> &'static str {
    match action {
        "watch" => "added to the watchlist",
        "ignore" => "app ignored",
        "revoke" => "revocation requested",
        "deactivate" => "deactivation in Slack requested",
        _ => "acknowledged",
    }
}

/// The alert's message re-rendered with the outcome: where it was recorded
/// as posted, else where the click came from.
fn message_update(
    app: &App,
    alert: &AlertRow,
    event: &SlackInteractionBlockActionsEvent,
) -> Option<NewMessage> {
    let clicked = match &event.container {
        SlackInteractionActionContainer::Message(m) => m
            .channel_id
            .as_ref()
            .map(|c| (c.0.clone(), m.message_ts.0.clone())),
        _ => None,
    };
    let (channel, ts) = alert.channel.clone().zip(alert.ts.clone()).or(clicked)?;
    let (text, blocks) = alert::message(&app.config(), alert);
    Some(NewMessage::update(&channel, &channel, &ts, &text, blocks))
}

/// The digest's Acknowledge: every open finding of that kind raised before
/// the digest; admins only (a digest spans apps).
pub async fn digest_clicked(
    app: &Arc<App>,
    value: &str,
    event: SlackInteractionBlockActionsEvent,
) -> Reply {
    let user = super::user_of(&event);
    let place = place_of(&event);
    let parsed = value
        .split_once('|')
        .and_then(|(k, t)| {
            Some((
                k.to_string(),
                DateTime::parse_from_rfc3339(t).ok()?.with_timezone(&Utc),
            ))
        })
        .filter(|(k, _)| kind::FINDINGS.contains(&k.as_str()));
    let Some((kind_, before)) = parsed else {
        tracing::info!(value, "digest click with an unreadable value; acked");
        return Reply::empty();
    };
    let email = match app.identity.email_of(&user).await {
        Ok(Some(email)) if app.config().is_admin(&email) => email,
        _ => {
            let text = "Only accessd admins can acknowledge findings from the digest.";
            refuse(app, &user, &place, text, None).await;
            return Reply::empty();
        }
    };
    let audit = AuditEvent::new(
        &email,
        "alert.digest_acknowledged",
        &kind_,
        json!({ "slack_id": user, "before": before }),
    );
    let text = match app
        .store
        .acknowledge_findings(kind_.clone(), before, email, audit)
        .await
    {
        Ok(n) => format!("Acknowledged {n} open finding(s): {}.", kind::title(&kind_)),
        Err(err) => logged(err, "acknowledge findings", NOT_RECORDED).into(),
    };
    tell(app, &user, &place, &text).await;
    Reply::empty()
}
