//! Messages about a ticket: the approver DM (with and without buttons), the
//! approve / reject modals, and the requester's notifications.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use super::text::{
    actions, context, escape, fmt_duration, fmt_time, mention, plain, quote, section, styled_button,
};
use crate::config::Config;
use crate::domain::ticket::{extended_end, ticket_ref, Kind, Status, Verdict};
use crate::slack::ids::*;
use crate::store::Ticket;

/// App and role names as configured (ids when the app left the catalog).
pub fn describe(config: &Config, ticket: &Ticket) -> (String, String) {
    let app = config.app(&ticket.app_id);
    let app_name = app.map_or_else(|| ticket.app_id.clone(), |a| a.name.clone());
    let roles: Vec<String> = ticket
        .roles
        .iter()
        .map(|id| {
            app.and_then(|a| a.role(id))
                .map_or_else(|| id.clone(), |r| r.name.clone())
        })
        .collect();
    let roles = if roles.is_empty() {
        "access".to_string()
    } else {
        roles.join(", ")
    };
    (app_name, roles)
}

/// The ticket's outside reference as mrkdwn, `*Ticket* <link|OPS-12>` (the
/// value escaped, and percent-encoded into the link), or `None`.
pub fn reference_text(config: &Config, ticket: &Ticket) -> Option<String> {
    let value = ticket.reference.as_deref()?;
    let asked = config
        .app(&ticket.app_id)
        .and_then(|a| a.reference.as_ref());
    let label = asked.map_or("Reference", |r| r.label.as_str());
    let shown = escape(value, 100);
    Some(match asked.and_then(|r| r.link_for(value)) {
        Some(url) => format!("*{}* <{url}|{shown}>", escape(label, 30)),
        None => format!("*{}* {shown}", escape(label, 30)),
    })
}

fn duration_of(ticket: &Ticket) -> Duration {
    Duration::from_secs(u64::try_from(ticket.duration_secs).unwrap_or(0))
}

/// Who decided, for the outcome line: `<@U1> approved: "comment"`.
fn decision_line(ticket: &Ticket) -> String {
    let by = |verdict: Verdict| {
        let approvals: Vec<String> = ticket
            .approvals
            .iter()
            .filter(|a| a.verdict == verdict)
            .map(
                |a| match a.comment.as_deref().filter(|c| !c.trim().is_empty()) {
                    Some(c) => format!(
                        "{}: \u{201c}{}\u{201d}",
                        mention(&a.approver_slack_id),
                        escape(c, 300)
                    ),
                    None => mention(&a.approver_slack_id),
                },
            )
            .collect();
        approvals.join(", ")
    };
    match ticket.status {
        Status::Rejected => format!(":x: *Rejected* by {}", by(Verdict::Reject)),
        Status::Cancelled => ":heavy_minus_sign: *Cancelled* by the requester".to_string(),
        Status::Stale => ":hourglass: *Expired unanswered*".to_string(),
        Status::Pending => String::new(),
        _ => format!(":white_check_mark: *Approved* by {}", by(Verdict::Approve)),
    }
}

/// The facts every approver copy shows.
fn summary_blocks(config: &Config, ticket: &Ticket) -> Vec<Value> {
    let (app, roles) = describe(config, ticket);
    let duration = duration_of(ticket);
    let stages = ticket.plan.stages.len().max(1);
    let required = ticket
        .plan
        .stages
        .get(ticket.stage)
        .map_or(1, |s| s.required);
    let approvals = ticket.approvals_in_stage(ticket.stage).count();
    let mut fields = vec![
        json!({ "type": "mrkdwn", "text": format!("*App*\n{app}") }),
        json!({ "type": "mrkdwn", "text": format!("*Roles*\n{roles}") }),
        json!({ "type": "mrkdwn", "text": format!("*{}*\n{}", if ticket.kind == Kind::Extension { "Extra time" } else { "Duration" }, fmt_duration(duration)) }),
    ];
    if ticket.status.is_pending() && ticket.kind == Kind::Extension {
        let now = Utc::now();
        let current = ticket
            .extends_until
            .map_or_else(|| "unknown".to_string(), fmt_time);
        let new_end = extended_end(
            ticket.extends_until,
            now,
            ticket.duration_secs,
            ticket.plan.max_duration_secs,
        );
        fields.push(json!({ "type": "mrkdwn", "text": format!("*Ends now*\n{current}") }));
        fields.push(json!({ "type": "mrkdwn", "text": format!("*New end*\n{} if approved now", fmt_time(new_end)) }));
    } else if ticket.status.is_pending() {
        let expiry = Utc::now() + chrono::Duration::from_std(duration).unwrap_or_default();
        fields.push(json!({ "type": "mrkdwn", "text": format!("*Ends*\n{} if approved now", fmt_time(expiry)) }));
    }
    if ticket.status.is_pending() {
        fields.push(json!({
            "type": "mrkdwn",
            "text": format!("*Stage*\n{} of {stages} · {approvals} of {required} approvals", ticket.stage + 1),
        }));
    }
    let asks = match (ticket.kind, ticket.parent) {
        (Kind::Extension, Some(parent)) => format!(
            "asks to *extend* their access to *{app}* ({}); the extra time ends no later than the role's cap from the approval",
            ticket_ref(parent)
        ),
        _ => format!("requests access to *{app}*"),
    };
    vec![
        section(&format!(
            "{} {asks} · {}",
            mention(&ticket.requester_slack_id),
            ticket.reference()
        )),
        json!({ "type": "section", "fields": fields }),
        section(&format!(
            "*Reason*\n{}{}",
            quote(&ticket.reason),
            reference_text(config, ticket)
                .map(|r| format!("\n{r}"))
                .unwrap_or_default()
        )),
    ]
}

/// The DM asking an approver to decide; after a decision (or when the ticket
/// moved on), the same message without buttons, saying what happened.
pub fn approver_message(
    config: &Config,
    ticket: &Ticket,
    approver_stage: usize,
) -> (String, Value) {
    let (app, _) = describe(config, ticket);
    let mut blocks = summary_blocks(config, ticket);
    let value = ticket.id.to_string();
    if ticket.status.is_pending() && ticket.stage == approver_stage {
        blocks.push(actions(
            &format!("ticket_{}", ticket.id),
            vec![
                styled_button("Approve", APPROVE, &value, "primary"),
                styled_button("Reject", REJECT, &value, "danger"),
            ],
        ));
    } else if ticket.status.is_pending() {
        blocks.push(context(&format!(
            ":white_check_mark: Stage {} approved; now waiting for stage {}.",
            approver_stage + 1,
            ticket.stage + 1
        )));
    } else {
        blocks.push(context(&decision_line(ticket)));
    }
    let asks = if ticket.kind == Kind::Extension {
        "asks to extend their access to"
    } else {
        "requests access to"
    };
    let text = format!(
        "{} {asks} {app} ({})",
        mention(&ticket.requester_slack_id),
        ticket.reference()
    );
    (text, Value::Array(blocks))
}

/// A reminder to an approver: a new message, so Slack notifies.
pub fn reminder(config: &Config, ticket: &Ticket) -> (String, Value) {
    let (text, blocks) = approver_message(config, ticket, ticket.stage);
    let mut all = vec![section(&format!(
        ":bell: {} is still waiting for your decision.",
        mention(&ticket.requester_slack_id)
    ))];
    all.extend(blocks.as_array().cloned().unwrap_or_default());
    (format!("Reminder: {text}"), Value::Array(all))
}

/// The approve modal: optional comment, duration prefilled and capped.
pub fn approve_modal(config: &Config, ticket: &Ticket, cap: Duration) -> Value {
    let mut blocks = summary_blocks(config, ticket);
    blocks.push(json!({
        "type": "input",
        "block_id": DURATION_BLOCK,
        "label": plain("Duration"),
        "hint": plain(&format!("At most {}.", fmt_duration(cap))),
        "element": {
            "type": "plain_text_input",
            "action_id": DURATION_ACTION,
            "initial_value": fmt_duration(duration_of(ticket)),
        },
    }));
    blocks.push(comment_input());
    decision_modal(APPROVE_MODAL, ticket, "Approve", blocks)
}

pub fn reject_modal(config: &Config, ticket: &Ticket) -> Value {
    let mut blocks = summary_blocks(config, ticket);
    blocks.push(comment_input());
    decision_modal(REJECT_MODAL, ticket, "Reject", blocks)
}

pub(super) fn comment_input() -> Value {
    json!({
        "type": "input",
        "block_id": COMMENT_BLOCK,
        "optional": true,
        "label": plain("Comment"),
        "element": { "type": "plain_text_input", "action_id": COMMENT_ACTION, "multiline": true, "max_length": 1000 },
    })
}

fn decision_modal(callback_id: &str, ticket: &Ticket, verb: &str, blocks: Vec<Value>) -> Value {
    json!({
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": ticket.id.to_string(),
        "title": plain(&format!("{verb} {}", ticket.reference())),
        "submit": plain(verb),
        "close": plain("Back"),
        "blocks": blocks,
    })
}

/// What the requester is told after each step.
pub fn requester_update(config: &Config, ticket: &Ticket, asked: &[String]) -> (String, Value) {
    let (app, roles) = describe(config, ticket);
    let what = match reference_text(config, ticket) {
        Some(r) => format!("*{app}* ({roles}) · {} · {r}", ticket.reference()),
        None => format!("*{app}* ({roles}) · {}", ticket.reference()),
    };
    let text = match ticket.status {
        Status::Pending if ticket.approvals.is_empty() => format!(
            ":inbox_tray: Your request for {what} was sent to {}.{}",
            people(asked),
            stage_note(ticket)
        ),
        Status::Pending => format!(
            ":arrow_forward: Your request for {what} passed stage {} and was sent to {}.",
            ticket.stage,
            people(asked)
        ),
        Status::Approved if ticket.approvals.is_empty() => {
            format!(":white_check_mark: Your request for {what} was approved automatically.")
        }
        Status::Rejected | Status::Approved => {
            let changed = ticket
                .approvals
                .iter()
                .rev()
                .find_map(|a| a.duration_secs)
                .map(|d| {
                    format!(
                        " Duration: {}.",
                        fmt_duration(Duration::from_secs(u64::try_from(d).unwrap_or(0)))
                    )
                })
                .unwrap_or_default();
            format!(
                "{} — your request for {what}.{changed}",
                decision_line(ticket)
            )
        }
        Status::Cancelled => format!(":heavy_minus_sign: You cancelled your request for {what}."),
        Status::Stale => format!(
            ":hourglass: Your request for {what} got no decision within {} and was closed. Request it again if you still need it.",
            fmt_duration(config.requests.stale_after)
        ),
        other => format!("Your request for {what} is now {other}."),
    };
    (strip_markup(&text), json!([section(&text)]))
}

/// What the requester is told when the config in force closed their pending
/// request (its app or role gone, or they may no longer request it).
pub fn policy_closed(ticket: &Ticket, why: &str) -> (String, Value) {
    let text = format!(
        ":no_entry: Your request {} was closed: {why}. Nothing was granted.",
        ticket.reference()
    );
    (strip_markup(&text), json!([section(&text)]))
}

fn stage_note(ticket: &Ticket) -> String {
    let stages = ticket.plan.stages.len();
    if stages > 1 {
        format!(" It needs {stages} stages of approval.")
    } else {
        String::new()
    }
}

fn people(slack_ids: &[String]) -> String {
    if slack_ids.is_empty() {
        "the approvers".into()
    } else {
        slack_ids
            .iter()
            .map(|id| mention(id))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Notification fallback text: no emoji codes or bold markers.
fn strip_markup(text: &str) -> String {
    text.split(' ')
        .filter(|w| !(w.starts_with(':') && w.ends_with(':') && w.len() > 2))
        .collect::<Vec<_>>()
        .join(" ")
        .replace('*', "")
}
