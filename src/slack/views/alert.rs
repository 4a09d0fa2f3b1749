//! Alert channel messages: one per finding with the actions that fit it, the
//! same message after someone acted (buttons gone, who did what), and the
//! daily findings digest.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::text::{
    actions, button, clip, context, escape, fmt_time, header, section, section_with_button,
    styled_button,
};
use crate::config::Config;
use crate::domain::alert::{deactivatable, kind, revocable};
use crate::slack::ids;
use crate::store::AlertRow;

/// Findings listed per kind in the digest before "and N more".
const DIGEST_LINES: usize = 10;

fn s<'a>(detail: &'a Value, pointer: &str) -> &'a str {
    detail
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn app_name(config: &Config, detail: &Value) -> String {
    let id = s(detail, "/app");
    config
        .app(id)
        .map(|a| a.name.clone())
        .or_else(|| {
            detail
                .get("app_name")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.to_string())
}

fn who(detail: &Value, account: &str) -> String {
    let email = s(detail, &format!("{account}/email"));
    let name = s(detail, &format!("{account}/name"));
    let id = s(detail, &format!("{account}/id"));
    let main = if email.is_empty() { id } else { email };
    if name.is_empty() {
        format!("*{}*", escape(main, 200))
    } else {
        format!("*{}* ({})", escape(main, 200), escape(name, 200))
    }
}

/// One line saying what the finding is: the notification text and the
/// digest's list entry.
pub fn summary(config: &Config, alert: &AlertRow) -> String {
    let d = &alert.detail;
    match alert.kind.as_str() {
        kind::WATCHLIST_SIGNUP => format!(
            "{} signed up to watchlist app *{}*",
            who(d, "/account"),
            escape(&app_name(config, d), 200)
        ),
        kind::OFFBOARDED_ACTIVE => format!(
            "{} is {} in {} but still active in *{}*",
            who(d, "/account"),
            s(d, "/authority_status"),
            escape(s(d, "/authority"), 100),
            escape(&app_name(config, d), 200)
        ),
        kind::NEW_APP => format!(
            "New app *{}* seen in source {}",
            escape(&app_name(config, d), 200),
            escape(s(d, "/source"), 100)
        ),
        kind::SOURCE_FAILED => format!(
            "Source *{}* failed: {}",
            escape(s(d, "/source"), 100),
            escape(s(d, "/error"), 500)
        ),
        kind::MASS_CHANGE => format!(
            "Source *{}* held: {}",
            escape(s(d, "/source"), 100),
            escape(s(d, "/held"), 300)
        ),
        kind::PRIVILEGED => format!(
            "{} is now `{}` in *{}*",
            who(d, "/account"),
            escape(s(d, "/role").trim_start_matches("role:"), 50),
            escape(&app_name(config, d), 200)
        ),
        other => format!("{other} finding"),
    }
}

fn icon(kind_: &str) -> &'static str {
    match kind_ {
        kind::WATCHLIST_SIGNUP => ":eyes:",
        kind::OFFBOARDED_ACTIVE => ":rotating_light:",
        kind::NEW_APP => ":new:",
        kind::SOURCE_FAILED => ":x:",
        kind::MASS_CHANGE => ":raised_hand:",
        kind::PRIVILEGED => ":crown:",
        _ => ":bell:",
    }
}

fn body(config: &Config, alert: &AlertRow) -> Vec<Value> {
    let d = &alert.detail;
    let mut blocks = vec![section(&format!(
        "{} {}",
        icon(&alert.kind),
        summary(config, alert)
    ))];
    let mut facts = Vec::new();
    match alert.kind.as_str() {
        kind::WATCHLIST_SIGNUP | kind::OFFBOARDED_ACTIVE | kind::PRIVILEGED => {
            facts.push(format!("Account `{}` ({})", escape(s(d, "/account/id"), 200), s(d, "/account/status")));
            if let Some(ents) = d.pointer("/account/entitlements").and_then(Value::as_array) {
                if !ents.is_empty() {
                    let list: Vec<String> = ents
                        .iter()
                        .filter_map(Value::as_str)
                        .take(20)
                        .map(|e| format!("`{}`", escape(e, 100)))
                        .collect();
                    facts.push(format!("Entitlements: {}", list.join(", ")));
                }
            }
            facts.push(format!("Source: {}", escape(s(d, "/source"), 100)));
        }
        kind::NEW_APP => {
            if let Some(n) = d.get("accounts").and_then(Value::as_u64) {
                facts.push(format!("{n} account(s) seen"));
            }
            facts.push(format!("Not in the catalog; id `{}`", escape(s(d, "/app"), 100)));
        }
        kind::SOURCE_FAILED => facts.push(
            "No changes were applied: the last good snapshot stays in use until the source answers again."
                .into(),
        ),
        kind::MASS_CHANGE => facts.push(format!(
            "Nothing was applied. If this is real, accept it with `accessd sources sync {} --accept-mass-change`.",
            escape(s(d, "/source"), 100)
        )),
        _ => {}
    }
    if !facts.is_empty() {
        blocks.push(context(&facts.join("  ·  ")));
    }
    blocks
}

fn open_url(d: &Value) -> Option<&str> {
    d.pointer("/account/url")
        .or_else(|| d.get("url"))
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}

/// The buttons an open finding offers.
fn buttons(config: &Config, alert: &AlertRow) -> Vec<Value> {
    let key = alert.key.as_str();
    let mut out = Vec::new();
    match alert.kind.as_str() {
        kind::WATCHLIST_SIGNUP => {
            out.push(button("Acknowledge", ids::ALERT_ACK, key));
            out.push(button("Ignore app", ids::ALERT_IGNORE, key));
        }
        kind::NEW_APP => {
            out.push(styled_button(
                "Add to watchlist",
                ids::ALERT_WATCH,
                key,
                "primary",
            ));
            out.push(button("Ignore app", ids::ALERT_IGNORE, key));
        }
        kind::OFFBOARDED_ACTIVE => {
            if revocable(config, s(&alert.detail, "/app")) {
                out.push(styled_button("Revoke", ids::ALERT_REVOKE, key, "danger"));
            }
            if deactivatable(config, alert.source_id.as_deref()) {
                out.push(styled_button(
                    "Deactivate in Slack",
                    ids::ALERT_DEACTIVATE,
                    key,
                    "danger",
                ));
            }
            out.push(button("Acknowledge", ids::ALERT_ACK, key));
        }
        _ => out.push(button("Acknowledge", ids::ALERT_ACK, key)),
    }
    out
}

fn open_button(d: &Value) -> Option<Value> {
    open_url(d).map(|url| {
        let mut b = button("Open", ids::ALERT_OPEN, "open");
        b["url"] = json!(url);
        b
    })
}

/// The message announcing a finding (or, after an action, showing it).
pub fn message(config: &Config, alert: &AlertRow) -> (String, Value) {
    let text = format!("{} {}", icon(&alert.kind), summary(config, alert));
    let mut blocks = body(config, alert);
    let mut row = Vec::new();
    let acted = alert.acted_by.as_deref().zip(alert.action.as_deref());
    match acted {
        Some((by, action)) => blocks.push(context(&outcome_line(action, by, alert.acted_at))),
        None if alert.status == "resolved" => blocks.push(context(
            ":white_check_mark: Resolved: the condition is gone.",
        )),
        None => row.extend(buttons(config, alert)),
    }
    row.extend(open_button(&alert.detail));
    if !row.is_empty() {
        blocks.push(actions(&format!("alert:{}", alert.key), row));
    }
    (text, Value::Array(blocks))
}

fn outcome_line(action: &str, by: &str, at: Option<DateTime<Utc>>) -> String {
    let by = escape(by, 200);
    let when = at.map(|t| format!(" {}", fmt_time(t))).unwrap_or_default();
    match action {
        "watch" => format!(":eyes: *{by}* added this app to the watchlist{when}"),
        "ignore" => format!(":see_no_evil: *{by}* ignored this app{when}"),
        "revoke" => format!(":no_entry: *{by}* asked to revoke this access{when}"),
        "deactivate" => {
            format!(":no_entry: *{by}* asked to deactivate this account in Slack{when}")
        }
        _ => format!(":ballot_box_with_check: Acknowledged by *{by}*{when}"),
    }
}

/// The daily digest: every open finding, grouped by kind with counts, each
/// group with an Acknowledge for what it lists.
pub fn digest(config: &Config, open: &[AlertRow], at: DateTime<Utc>) -> (String, Value) {
    let total = open.len();
    let text = format!("Daily findings digest: {total} open finding(s)");
    let mut blocks = vec![header(&format!("Findings digest: {total} open"))];
    if total == 0 {
        blocks.push(section("No open findings. :tada:"));
        return (text, Value::Array(blocks));
    }
    for kind_ in kind::FINDINGS {
        let of_kind: Vec<&AlertRow> = open.iter().filter(|a| a.kind == kind_).collect();
        if of_kind.is_empty() {
            continue;
        }
        let mut lines: Vec<String> = of_kind
            .iter()
            .take(DIGEST_LINES)
            .map(|a| format!("• {}", summary(config, a)))
            .collect();
        if of_kind.len() > DIGEST_LINES {
            lines.push(format!("…and {} more", of_kind.len() - DIGEST_LINES));
        }
        let title = format!(
            "{} *{}* — {}",
            icon(kind_),
            kind::title(kind_),
            of_kind.len()
        );
        let value = format!("{kind_}|{}", at.to_rfc3339());
        blocks.push(section_with_button(
            &clip(&format!("{title}\n{}", lines.join("\n")), 2900),
            button("Acknowledge", ids::DIGEST_ACK, &value),
        ));
    }
    (text, Value::Array(blocks))
}
