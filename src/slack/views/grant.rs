//! Messages about access once approved: the requester's granted / failed /
//! expiring / ended DMs, the owners' manual task, the provisioning-failed
//! alert, the break-glass announcement, and the extend modal.

use serde_json::{json, Value};

use super::text::{
    actions, clip, context, escape, fmt_duration, fmt_time, mention, plain, quote, section,
    styled_button,
};
use super::ticket::{describe, reference_text};
use crate::config::Config;
use crate::domain::ticket::Status;
use crate::slack::ids::*;
use crate::store::{Grant, GrantStatus, Ticket};

fn what(config: &Config, ticket: &Ticket) -> String {
    let (app, roles) = describe(config, ticket);
    format!("*{app}* ({roles}) · {}", ticket.reference())
}

fn until(ticket: &Ticket) -> String {
    ticket.expires_at.map_or_else(
        || "until further notice".into(),
        |t| format!("until {}", fmt_time(t)),
    )
}

/// Extend and Release now, for an active ticket.
pub fn access_buttons(ticket: &Ticket) -> Value {
    let value = ticket.id.to_string();
    actions(
        &format!("access_{}", ticket.id),
        vec![
            styled_button("Extend", EXTEND, &value, "primary"),
            styled_button("Release now", RELEASE, &value, "danger"),
        ],
    )
}

/// The requester's DM once provisioning ended, either way.
pub fn provisioned(config: &Config, ticket: &Ticket, grants: &[Grant]) -> (String, Value) {
    let what = what(config, ticket);
    if ticket.status == Status::Active {
        let kept = grants.iter().any(|g| g.preexisting);
        let mut text = format!(":key: Access granted: {what}, {}.", until(ticket));
        if kept {
            text.push_str(
                " You already had part of it before this request; that part stays when this ends.",
            );
        }
        return (
            format!("Access granted ({})", ticket.reference()),
            json!([section(&text), access_buttons(ticket)]),
        );
    }
    let kind = config
        .app(&ticket.app_id)
        .and_then(|a| a.provisioner.as_deref())
        .and_then(|id| config.provisioner(id))
        .map(|p| p.kind.name());
    let reason = failure_summary(kind, ticket.failure.as_deref().unwrap_or_default());
    let text = format!(
        ":warning: Access could not be granted: {what}.\n{}\nThe accessd admins were alerted with the details and can retry it.",
        quote(&reason)
    );
    (
        format!("Access could not be granted ({})", ticket.reference()),
        json!([section(&text)]),
    )
}

/// What the requester may be told of a provisioner's failure: built only
/// from fixed words, the provisioner kind and numbers found in the message
/// (an HTTP status, an exit code), so nothing the target or the program said
/// (a token, a URL with credentials, the stderr tail) ever reaches them. The
/// whole message goes to the log and the admins' alert.
fn failure_summary(kind: Option<&str>, failure: &str) -> String {
    let who = match kind {
        Some("scim") => "the SCIM server",
        Some("webhook") => "the provisioning webhook",
        Some("command") => "the provisioning program",
        _ => "the provisioner",
    };
    let number_after = |marker: &str| -> Option<u32> {
        let rest = &failure[failure.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let status = number_after(" answered HTTP ")
        .or_else(|| number_after(" answered "))
        .filter(|s| (100..600).contains(s));
    let mut summary = if let Some(status) = status {
        let words = format!("{status} {}", status_words(status));
        format!("{who} refused: {}", words.trim_end())
    } else if failure.contains("no SCIM user has") {
        format!("{who} has no account for your email")
    } else if failure.contains("no SCIM group is named") {
        format!("{who} has no group for this role")
    } else if let Some(code) = number_after("(exit ") {
        format!("{who} failed (exit {code})")
    } else if failure.contains("killed by a signal") {
        format!("{who} was stopped (it ran past its time limit or was killed)")
    } else if failure.contains("timed out") || failure.contains("did not answer within") {
        format!("{who} did not answer in time")
    } else if failure.contains("cannot connect") || failure.contains("cannot reach") {
        format!("{who} could not be reached")
    } else {
        format!("{who} could not do it")
    };
    if let Some(attempts) = number_after("gave up after ") {
        summary.push_str(&format!(" (gave up after {attempts} attempts)"));
    }
    summary
}

fn status_words(status: u32) -> &'static str {
    match status {
        400 => "bad request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found",
        409 => "conflict",
        422 => "unprocessable",
        429 => "too many requests",
        500..=599 => "server error",
        _ => "",
    }
}

/// The alert to `alerts.channels.provisioning_failed`.
pub fn provisioning_failed_alert(config: &Config, ticket: &Ticket, error: &str) -> (String, Value) {
    let text = format!(
        ":rotating_light: Provisioning failed for {} — {}.\n{}\nFix the cause, then run `accessd tickets retry {}`.",
        mention(&ticket.requester_slack_id),
        what(config, ticket),
        quote(&clip(error, 1500)),
        ticket.reference()
    );
    (
        format!("Provisioning failed ({})", ticket.reference()),
        json!([section(&text)]),
    )
}

/// The alert when a revoke keeps failing: access outlives its expiry.
pub fn revoke_failed_alert(
    config: &Config,
    ticket: &Ticket,
    grant: &Grant,
    error: &str,
) -> (String, Value) {
    let text = format!(
        ":rotating_light: Could not revoke {} ({}) of {} — {}.\n{}\nIt stays active in accessd. After fixing the cause run `accessd grants revoke {}`; once you have checked it is gone from the app, `accessd grants revoke {} --removed-by-hand --reason \"…\"`.",
        grant.reference(),
        grant.role_id,
        mention(&ticket.requester_slack_id),
        what(config, ticket),
        quote(&clip(error, 1500)),
        grant.reference(),
        grant.reference()
    );
    (
        format!("Revoke failed ({})", grant.reference()),
        json!([section(&text)]),
    )
}

/// The manual task for app owners (no provisioner): do it, then say so.
/// After someone acted, the same message without buttons.
pub fn manual_task(config: &Config, ticket: &Ticket, acted_by: Option<&str>) -> (String, Value) {
    let (_, roles) = describe(config, ticket);
    let mut blocks = vec![section(&format!(
        ":hammer_and_wrench: Please grant {} {} by hand — {}.\nThen click *Mark done*: the duration starts then, and you will be asked to remove it when it ends.",
        mention(&ticket.requester_slack_id),
        roles,
        what(config, ticket),
    ))];
    blocks.push(section(&format!(
        "*Reason*\n{}{}",
        quote(&ticket.reason),
        reference_text(config, ticket)
            .map(|r| format!("\n{r}"))
            .unwrap_or_default()
    )));
    match acted_by {
        None => {
            let value = ticket.id.to_string();
            blocks.push(actions(
                &format!("task_{}", ticket.id),
                vec![
                    styled_button("Mark done", TASK_DONE, &value, "primary"),
                    styled_button("Could not do it", TASK_FAILED, &value, "danger"),
                ],
            ));
        }
        Some(by) => {
            let outcome = if ticket.status == Status::Failed {
                format!(":x: {} could not do it.", mention(by))
            } else {
                format!(
                    ":white_check_mark: Done by {}; access {}.",
                    mention(by),
                    until(ticket)
                )
            };
            blocks.push(context(&outcome));
        }
    }
    (
        format!("Manual task: grant access ({})", ticket.reference()),
        Value::Array(blocks),
    )
}

/// The requester's DM when approval led to a manual task.
pub fn waiting_for_owners(config: &Config, ticket: &Ticket) -> (String, Value) {
    let text = format!(
        ":hourglass_flowing_sand: Your request for {} was approved. This app is set up by hand: its owners were asked to grant it, and you will get a DM when they have.",
        what(config, ticket)
    );
    (
        format!(
            "Approved, waiting for the app owners ({})",
            ticket.reference()
        ),
        json!([section(&text)]),
    )
}

/// The owners' reminder to remove access granted by hand.
/// The owners' request to remove a manual grant by hand (`why`: expired,
/// revoked by …), with *Removed* / *Could not remove*: accessd keeps the
/// grant active until one is clicked. `reminder` for the repeats.
pub fn manual_removal(
    config: &Config,
    ticket: &Ticket,
    grant: &Grant,
    why: &str,
    reminder: bool,
) -> (String, Value) {
    let text = format!(
        ":broom: {}Please remove {}'s {} access by hand — {} ended ({}).\nUntil someone clicks *Removed*, accessd records it as still active.",
        if reminder { "Reminder: " } else { "" },
        mention(&ticket.requester_slack_id),
        if grant.role_id.is_empty() { "app" } else { grant.role_id.as_str() },
        what(config, ticket),
        escape(why, 200),
    );
    let value = grant.reference();
    (
        format!("Remove access by hand ({})", grant.reference()),
        json!([
            section(&text),
            actions(
                &format!("removal_{}", grant.id),
                vec![
                    styled_button("Removed", REMOVAL_DONE, &value, "primary"),
                    styled_button("Could not remove", REMOVAL_FAILED, &value, "danger"),
                ],
            ),
        ]),
    )
}

/// Sent `requests.expiry_warning` before the end.
pub fn expiry_warning(config: &Config, ticket: &Ticket) -> (String, Value) {
    let text = format!(
        ":alarm_clock: Your access to {} ends {}. Extend it or release it now.",
        what(config, ticket),
        ticket.expires_at.map_or_else(|| "soon".into(), fmt_time)
    );
    (
        format!("Your access ends soon ({})", ticket.reference()),
        json!([section(&text), access_buttons(ticket)]),
    )
}

/// Sent when a grant ended.
pub fn ended(config: &Config, ticket: &Ticket, grant: &Grant) -> (String, Value) {
    let how = match (grant.status, grant.preexisting) {
        (_, true) => {
            "ended in accessd; you had it before this request, so it was left in place".to_string()
        }
        (GrantStatus::Expired, _) => "expired and was removed".to_string(),
        _ => format!(
            "was revoked ({})",
            grant.ended_by.as_deref().unwrap_or("revoked")
        ),
    };
    let text = format!(":lock: Your access to {} {how}.", what(config, ticket));
    (
        format!("Your access ended ({})", ticket.reference()),
        json!([section(&text)]),
    )
}

/// The extension modal: how much longer, and why.
pub fn extend_modal(config: &Config, ticket: &Ticket, cap: std::time::Duration) -> Value {
    json!({
        "type": "modal",
        "callback_id": EXTEND_MODAL,
        "private_metadata": ticket.id.to_string(),
        "title": plain("Extend access"),
        "submit": plain("Request"),
        "close": plain("Cancel"),
        "blocks": [
            section(&format!("{}, {}.", what(config, ticket), until(ticket))),
            {
                "type": "input",
                "block_id": DURATION_BLOCK,
                "label": plain("Extend by"),
                "hint": plain(&format!("At most {}. Goes to the approvers like a new request.", fmt_duration(cap))),
                "element": { "type": "plain_text_input", "action_id": DURATION_ACTION,
                             "initial_value": fmt_duration(cap.min(std::time::Duration::from_secs(
                                 u64::try_from(ticket.duration_secs).unwrap_or(3600)))) },
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": plain("Reason"),
                "element": { "type": "plain_text_input", "action_id": REASON_ACTION, "multiline": true, "max_length": 1000 },
            },
        ],
    })
}

/// The requester's DM when an extension took effect or could not.
pub fn extended(config: &Config, extension: &Ticket, parent: Option<&Ticket>) -> (String, Value) {
    let text = match parent {
        Some(parent) => format!(
            ":white_check_mark: Extension {} approved: your access to {} now lasts {}.",
            extension.reference(),
            what(config, parent),
            until(parent)
        ),
        None => format!(
            ":warning: Extension {} was approved, but the access had already ended; request it again.",
            extension.reference()
        ),
    };
    let mut blocks = vec![section(&text)];
    if let Some(parent) = parent {
        blocks.push(access_buttons(parent));
    }
    (
        format!("Extension {}", extension.reference()),
        Value::Array(blocks),
    )
}

/// Break-glass: told to the approvers (with Revoke) and to the alert channel.
pub fn break_glass_notice(config: &Config, ticket: &Ticket, with_revoke: bool) -> (String, Value) {
    let text = format!(
        ":rotating_light: *Break-glass*: {} took {} at once, for {}.\n*Reason*\n{}",
        mention(&ticket.requester_slack_id),
        what(config, ticket),
        fmt_duration(std::time::Duration::from_secs(
            u64::try_from(ticket.duration_secs).unwrap_or(0)
        )),
        quote(&ticket.reason)
    );
    let text = match reference_text(config, ticket) {
        Some(r) => format!("{text}\n{r}"),
        None => text,
    };
    let mut blocks = vec![section(&text)];
    if with_revoke {
        blocks.push(actions(
            &format!("break_glass_{}", ticket.id),
            vec![styled_button(
                "Revoke",
                REVOKE,
                &ticket.id.to_string(),
                "danger",
            )],
        ));
    }
    (
        format!("Break-glass access ({})", ticket.reference()),
        Value::Array(blocks),
    )
}

#[cfg(test)]
mod tests {
    use super::failure_summary;

    #[test]
    fn the_requester_summary_keeps_only_fixed_words_and_numbers() {
        let cases = [
            (
                Some("scim"),
                "SCIM PATCH /scim/v2/Groups/7 answered 409 {\"detail\":\"token xoxb-1 at https://u:p@h\"}",
                "the SCIM server refused: 409 conflict",
            ),
            (
                Some("webhook"),
                "the webhook answered HTTP 403: secret=hunter2",
                "the provisioning webhook refused: 403 forbidden",
            ),
            (
                Some("command"),
                "/opt/p.sh failed (exit 1): password=hunter2",
                "the provisioning program failed (exit 1)",
            ),
            (
                Some("scim"),
                "gave up after 5 attempts: SCIM GET /Users: timed out: https://u:p@h/",
                "the SCIM server did not answer in time (gave up after 5 attempts)",
            ),
            (
                Some("scim"),
                "no SCIM user has userName or email ann@example.com",
                "the SCIM server has no account for your email",
            ),
            (None, "anything at all: xoxb-123", "the provisioner could not do it"),
            (Some("webhook"), "x answered 418 teapot", "the provisioning webhook refused: 418"),
        ];
        for (kind, failure, expected) in cases {
            assert_eq!(failure_summary(kind, failure), expected, "{failure}");
        }
    }
}
