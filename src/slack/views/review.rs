//! Review DMs: the launch message, pages of items with Keep / Revoke (and a
//! menu for a comment or reassignment), the modals, reminders, notices and
//! the owner's summary. Pages stay within Slack's 50 blocks per message.

use chrono::Utc;
use serde_json::{json, Value};

use super::text::{
    actions, button, clip, context, escape, fmt_time, header, mrkdwn, plain, section, styled_button,
};
use super::ticket::comment_input;
use crate::config::Config;
use crate::slack::ids;
use crate::store::{Campaign, ReviewItem};

/// Items per page: two blocks each (text, buttons) plus a header and a
/// footer keeps a page under the 50-block cap.
pub const PAGE_SIZE: usize = 20;

fn apps(config: &Config, campaign: &Campaign) -> String {
    campaign
        .apps
        .iter()
        .map(|a| config.app(a).map_or(a.clone(), |c| c.name.clone()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "ann@example.com (Ann Lee) · GitHub · `gh-admins`"
pub fn describe_item(config: &Config, item: &ReviewItem) -> String {
    let who = item.email.as_deref().unwrap_or(&item.account_id);
    let name = item
        .name
        .as_deref()
        .filter(|n| !n.eq_ignore_ascii_case(who))
        .map(|n| format!(" ({})", escape(n, 100)))
        .unwrap_or_default();
    let app = config
        .app(&item.app_id)
        .map_or(item.app_id.clone(), |a| a.name.clone());
    let what = item
        .entitlement
        .as_deref()
        .map(|e| format!("`{}`", escape(e, 150)))
        .unwrap_or_else(|| "account".into());
    let unknown = if item.email.is_none() {
        " · _holder unknown_"
    } else {
        ""
    };
    format!(
        "*{}*{name} · {} · {what}{unknown}",
        escape(who, 200),
        escape(&app, 100)
    )
}

fn outcome_line(item: &ReviewItem) -> String {
    let by = item
        .decided_by
        .as_deref()
        .map(|b| format!(" by {}", escape(b, 200)))
        .unwrap_or_default();
    let comment = item
        .comment
        .as_deref()
        .map(|c| format!(" — “{}”", escape(c, 300)))
        .unwrap_or_default();
    match item.decision.as_deref() {
        Some("keep") => format!(":white_check_mark: Kept{by}{comment}"),
        Some("revoke") => {
            let result = item
                .revoke_outcome
                .as_deref()
                .map(|o| format!(" · {}", escape(o, 400)))
                .unwrap_or_else(|| " · revoking…".into());
            format!(":x: Revoke{by}{comment}{result}")
        }
        _ => String::new(),
    }
}

/// The first DM of a campaign to one reviewer.
pub fn launch(config: &Config, campaign: &Campaign, items: usize, pages: usize) -> (String, Value) {
    let text = format!(
        "Access review: {} — {items} items for you, due {}",
        campaign.name,
        campaign.due_at.format("%Y-%m-%d")
    );
    let value = campaign.id.to_string();
    let keep_all = {
        let mut b = button("Keep all remaining", ids::REVIEW_KEEP_ALL, &value);
        b["confirm"] = json!({
            "title": plain("Keep all remaining?"),
            "text": mrkdwn("Every item you have not decided yet in this campaign will be kept."),
            "confirm": plain("Keep them all"),
            "deny": plain("Cancel"),
        });
        b
    };
    let blocks = json!([
        header(&format!("Access review: {}", clip(&campaign.name, 120))),
        section(&format!(
            "Please review *{items}* item(s) in *{}* by {} ({}). For each, choose *Keep* if the access is still needed or *Revoke* if not; the items follow in {pages} message(s).",
            escape(&apps(config, campaign), 500),
            fmt_time(campaign.due_at),
            campaign.reference()
        )),
        actions(
            &format!("review_launch_{}", campaign.id),
            vec![keep_all, button("Reassign all…", ids::REVIEW_REASSIGN_ALL, &value)]
        ),
    ]);
    (text, blocks)
}

/// One page of a reviewer's items, re-rendered after every decision on it.
pub fn page(
    config: &Config,
    campaign: &Campaign,
    page: i64,
    items: &[ReviewItem],
    reviewer: &str,
) -> (String, Value) {
    let open = items
        .iter()
        .filter(|i| i.decision.is_none() && i.reviewer_email.eq_ignore_ascii_case(reviewer))
        .count();
    let text = format!("{} — page {page}: {open} item(s) to decide", campaign.name);
    let mut blocks = vec![section(&format!(
        "*{}* · page {page} · {open} of {} left here · due {}",
        escape(&campaign.name, 200),
        items.len(),
        fmt_time(campaign.due_at)
    ))];
    for item in items {
        let line = describe_item(config, item);
        if !item.reviewer_email.eq_ignore_ascii_case(reviewer) {
            blocks.push(context(&format!(
                "{line}\n:arrow_right: Reassigned to {}",
                escape(&item.reviewer_email, 200)
            )));
        } else if item.decision.is_some() {
            blocks.push(context(&format!("{line}\n{}", outcome_line(item))));
        } else if !campaign.is_open() {
            blocks.push(context(&format!(
                "{line}\n:hourglass: Not decided before the campaign closed"
            )));
        } else {
            blocks.push(section(&line));
            let value = item.id.to_string();
            blocks.push(actions(
                &format!("review_item_{}", item.id),
                vec![
                    styled_button("Keep", ids::REVIEW_KEEP, &value, "primary"),
                    styled_button("Revoke", ids::REVIEW_REVOKE, &value, "danger"),
                    json!({
                        "type": "overflow",
                        "action_id": ids::REVIEW_MORE,
                        "options": [
                            { "text": plain("Decide with a comment…"), "value": format!("comment:{}", item.id) },
                            { "text": plain("Reassign…"), "value": format!("reassign:{}", item.id) },
                        ],
                    }),
                ],
            ));
        }
    }
    (text, Value::Array(blocks))
}

/// Keep or Revoke with a comment, for one item.
pub fn comment_modal(config: &Config, item: &ReviewItem) -> Value {
    let option = |value: &str, text: &str| json!({ "text": plain(text), "value": value });
    json!({
        "type": "modal",
        "callback_id": ids::REVIEW_COMMENT_MODAL,
        "private_metadata": item.id.to_string(),
        "title": plain("Review item"),
        "submit": plain("Decide"),
        "close": plain("Back"),
        "blocks": [
            section(&describe_item(config, item)),
            {
                "type": "input",
                "block_id": ids::REVIEW_DECISION_BLOCK,
                "label": plain("Decision"),
                "element": {
                    "type": "radio_buttons",
                    "action_id": ids::REVIEW_DECISION_ACTION,
                    "options": [option("keep", "Keep"), option("revoke", "Revoke")],
                },
            },
            comment_input(),
        ],
    })
}

/// Reassign one item (`item:ID`) or all of the reviewer's open items in a
/// campaign (`all:ID`).
pub fn reassign_modal(target: &str, what: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": ids::REVIEW_REASSIGN_MODAL,
        "private_metadata": target,
        "title": plain("Reassign"),
        "submit": plain("Reassign"),
        "close": plain("Back"),
        "blocks": [
            section(&format!("Reassign {what} to someone better placed to decide.")),
            {
                "type": "input",
                "block_id": ids::REVIEWER_BLOCK,
                "label": plain("New reviewer"),
                "element": { "type": "users_select", "action_id": ids::REVIEWER_ACTION },
            },
            {
                "type": "input",
                "block_id": ids::REASSIGN_REASON_BLOCK,
                "label": plain("Reason"),
                "element": { "type": "plain_text_input", "action_id": ids::REASSIGN_REASON_ACTION, "max_length": 500 },
            },
        ],
    })
}

/// A reminder or the closing-soon notice, as a new DM so Slack notifies.
pub fn nudge(
    config: &Config,
    campaign: &Campaign,
    open: i64,
    closing_soon: bool,
) -> (String, Value) {
    let left = (campaign.due_at - Utc::now()).num_hours().max(0);
    let text = if closing_soon {
        format!(
            ":hourglass_flowing_sand: *{}* closes {} (in about {left} h): you have {open} item(s) left to decide. Undecided items are reported as such.",
            escape(&campaign.name, 200),
            fmt_time(campaign.due_at)
        )
    } else {
        format!(
            ":bell: Reminder: *{}* ({}) — you have {open} item(s) left to decide, due {}.",
            escape(&campaign.name, 200),
            escape(&apps(config, campaign), 300),
            fmt_time(campaign.due_at)
        )
    };
    (text.clone(), json!([section(&text)]))
}

/// The new reviewer's notice; their pages follow.
pub fn reassigned_to_you(
    campaign: &Campaign,
    count: usize,
    from: &str,
    reason: &str,
) -> (String, Value) {
    let text = format!(
        ":arrow_right: {count} item(s) of *{}* were reassigned to you by {}: “{}”. Due {}.",
        escape(&campaign.name, 200),
        escape(from, 200),
        escape(reason, 500),
        fmt_time(campaign.due_at)
    );
    (text.clone(), json!([section(&text)]))
}

pub fn reassigned_done(count: usize, to: &str) -> (String, Value) {
    let text = format!(
        ":white_check_mark: Done: {count} item(s) reassigned to {}.",
        escape(to, 200)
    );
    (text.clone(), json!([section(&text)]))
}

/// The campaign owner's summary at the close.
pub fn summary(config: &Config, campaign: &Campaign, items: &[ReviewItem]) -> (String, Value) {
    let count = |d: Option<&str>| items.iter().filter(|i| i.decision.as_deref() == d).count();
    let (kept, revoked, open) = (count(Some("keep")), count(Some("revoke")), count(None));
    let text = format!(
        "Access review {} closed: {kept} kept, {revoked} revoked, {open} undecided of {}",
        campaign.reference(),
        items.len()
    );
    let mut reviewers: Vec<&str> = items
        .iter()
        .filter(|i| i.decision.is_none())
        .map(|i| i.reviewer_email.as_str())
        .collect();
    reviewers.sort();
    reviewers.dedup();
    let mut blocks = vec![
        header(&format!("Review closed: {}", clip(&campaign.name, 120))),
        section(&format!(
            "*{}* ({}) closed with *{kept}* kept, *{revoked}* revoked and *{open}* undecided of {} item(s).",
            escape(&campaign.name, 200),
            escape(&apps(config, campaign), 300),
            items.len()
        )),
    ];
    if !reviewers.is_empty() {
        blocks.push(section(&format!(
            "Undecided items were left by: {}",
            escape(&reviewers.join(", "), 2000)
        )));
    }
    blocks.push(context(&format!(
        "Full report for auditors: `accessd reviews report {} --format csv`",
        campaign.reference()
    )));
    (text, Value::Array(blocks))
}
