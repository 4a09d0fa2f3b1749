//! The request modal, one view per step: app → roles + reason → duration →
//! approvers. Every step has callback_id `access_request` and carries only
//! the draft id in `private_metadata`.

use serde_json::{json, Value};

use super::text::{clip, context, fmt_duration, plain, section};
use crate::config::{AppConfig, Config, REFERENCE_MAX_CHARS};
use crate::domain::policy::Plan;
use crate::slack::ids::*;

/// Slack's cap on a static select's options.
pub const MAX_OPTIONS: usize = 100;

fn modal(draft_id: &str, submit: &str, blocks: Vec<Value>) -> Value {
    json!({
        "type": "modal",
        "callback_id": REQUEST_MODAL,
        "private_metadata": draft_id,
        "title": plain("Request access"),
        "submit": plain(submit),
        "close": plain("Cancel"),
        "blocks": blocks,
    })
}

fn option(text: &str, value: &str) -> Value {
    json!({ "text": plain(&clip(text, 75)), "value": value })
}

/// Step 1: which app. More apps than a select holds are searched instead.
pub fn app_step(config: &Config, draft_id: &str, note: Option<&str>) -> Value {
    let mut blocks = Vec::new();
    if let Some(note) = note {
        blocks.push(section(note));
    }
    let element = if config.apps.len() <= MAX_OPTIONS {
        json!({
            "type": "static_select",
            "action_id": APP_ACTION,
            "placeholder": plain("Choose an app"),
            "options": config.apps.iter().map(|a| option(&a.name, &a.id)).collect::<Vec<_>>(),
        })
    } else {
        json!({
            "type": "external_select",
            "action_id": APP_ACTION,
            "placeholder": plain("Type to search apps"),
            "min_query_length": 1,
        })
    };
    blocks.push(json!({ "type": "input", "block_id": APP_BLOCK, "label": plain("App"), "element": element }));
    modal(draft_id, "Next", blocks)
}

/// Options for the app search (`block_suggestion`), best matches first.
pub fn app_options(config: &Config, query: &str) -> Value {
    let query = query.trim().to_lowercase();
    let options: Vec<Value> = config
        .apps
        .iter()
        .filter(|a| {
            a.id.contains(&query)
                || a.name.to_lowercase().contains(&query)
                || a.aliases.iter().any(|x| x.contains(&query))
        })
        .take(MAX_OPTIONS)
        .map(|a| option(&a.name, &a.id))
        .collect();
    json!({ "options": options })
}

/// Step 2: roles and reason.
/// Step 2: roles and reason; `urgent` offers the break-glass checkbox.
pub fn roles_step(
    app: &AppConfig,
    draft_id: &str,
    roles: &[String],
    reason: &str,
    reference: &str,
    urgent: bool,
) -> Value {
    let mut blocks = vec![section(&format!(
        "*{}*{}",
        app.name,
        app.description
            .as_deref()
            .map(|d| format!("\n{d}"))
            .unwrap_or_default()
    ))];
    if !app.roles.is_empty() {
        let options: Vec<Value> = app
            .roles
            .iter()
            .map(|r| {
                let label = match &r.description {
                    Some(d) => format!("{} — {d}", r.name),
                    None => r.name.clone(),
                };
                option(&label, &r.id)
            })
            .collect();
        let initial: Vec<Value> = app
            .roles
            .iter()
            .filter(|r| roles.contains(&r.id))
            .map(|r| options[app.roles.iter().position(|x| x.id == r.id).unwrap_or(0)].clone())
            .collect();
        let mut element = json!({
            "type": if app.roles.len() <= 10 { "checkboxes" } else { "multi_static_select" },
            "action_id": ROLES_ACTION,
            "options": options,
        });
        if app.roles.len() > 10 {
            element["placeholder"] = plain("Choose roles");
        }
        if !initial.is_empty() {
            element["initial_options"] = Value::Array(initial);
        }
        blocks.push(json!({ "type": "input", "block_id": ROLES_BLOCK, "label": plain("Roles"), "element": element }));
    }
    let mut reason_input = json!({
        "type": "plain_text_input",
        "action_id": REASON_ACTION,
        "multiline": true,
        "max_length": 2000,
        "placeholder": plain("What do you need it for? Approvers see this."),
    });
    if !reason.is_empty() {
        reason_input["initial_value"] = reason.into();
    }
    blocks.push(json!({ "type": "input", "block_id": REASON_BLOCK, "label": plain("Reason"), "element": reason_input }));
    if let Some(asked) = &app.reference {
        let mut input = json!({
            "type": "plain_text_input",
            "action_id": REFERENCE_ACTION,
            "max_length": REFERENCE_MAX_CHARS,
        });
        if !reference.is_empty() {
            input["initial_value"] = reference.into();
        }
        blocks.push(json!({
            "type": "input", "block_id": REFERENCE_BLOCK, "label": plain(&asked.label),
            "optional": !asked.required, "element": input
        }));
    }
    if urgent {
        blocks.push(json!({
            "type": "input",
            "block_id": URGENT_BLOCK,
            "optional": true,
            "label": plain("Emergency"),
            "element": {
                "type": "checkboxes",
                "action_id": URGENT_ACTION,
                "options": [option(
                    "Break-glass: grant it now; approvers and security are told at once and can revoke it",
                    "urgent",
                )],
            },
        }));
    }
    modal(draft_id, "Next", blocks)
}

/// Step 3: how long, with the cap shown.
/// `note` says why the person is back here (the cap changed under them).
pub fn duration_step(
    app: &AppConfig,
    roles: &str,
    draft_id: &str,
    initial: std::time::Duration,
    cap: std::time::Duration,
    note: Option<&str>,
) -> Value {
    let mut blocks = vec![section(&format!("*{}* · {roles}", app.name))];
    blocks.extend(note.map(context));
    blocks.push(json!({
                "type": "input",
                "block_id": DURATION_BLOCK,
                "label": plain("For how long?"),
                "hint": plain(&format!("e.g. 2h, 1d. At most {}.", fmt_duration(cap))),
                "element": {
                    "type": "plain_text_input",
                    "action_id": DURATION_ACTION,
                "initial_value": fmt_duration(initial),
            },
    }));
    modal(draft_id, "Next", blocks)
}

/// Step 4: who will be asked. Where a stage needs fewer approvals than it has
/// approvers, the requester may choose whom to ask.
pub fn approvers_step(
    app: &AppConfig,
    summary: &str,
    draft_id: &str,
    plan: &Plan,
    name_of: &dyn Fn(&str) -> String,
) -> Value {
    let mut blocks = vec![section(summary)];
    if plan.auto_approve {
        blocks.push(section(
            "This role is approved automatically: access is granted as soon as you submit.",
        ));
    }
    let total = plan.stages.len();
    for (i, stage) in plan.stages.iter().enumerate() {
        let names: Vec<String> = stage.approvers.iter().map(|e| name_of(e)).collect();
        let needed = if stage.required >= stage.approvers.len() {
            "all of".to_string()
        } else {
            format!("{} of", stage.required)
        };
        let fallback = if stage.fallback {
            " _(fallback approvers)_"
        } else {
            ""
        };
        blocks.push(section(&format!(
            "*Stage {} of {total}* — {needed}: {}{fallback}",
            i + 1,
            names.join(", ")
        )));
        if stage.required < stage.approvers.len() && stage.approvers.len() <= MAX_OPTIONS {
            let options: Vec<Value> = stage
                .approvers
                .iter()
                .map(|e| option(&name_of(e), e))
                .collect();
            blocks.push(json!({
                "type": "input",
                "block_id": format!("{APPROVERS_BLOCK_PREFIX}{i}"),
                "label": plain(&format!("Ask in stage {}", i + 1)),
                "hint": plain(&format!("At least {}.", stage.required)),
                "element": {
                    "type": "multi_static_select",
                    "action_id": APPROVERS_ACTION,
                    "options": options.clone(),
                    "initial_options": options,
                },
            }));
        }
    }
    blocks.push(context(&format!(
        "{} · requests are recorded and audited",
        app.name
    )));
    modal(draft_id, "Submit request", blocks)
}

/// Replaces the modal once the ticket exists.
pub fn submitted(reference: &str, text: &str) -> Value {
    json!({
        "type": "modal",
        "title": plain("Request access"),
        "close": plain("Close"),
        "blocks": [section(&format!("*{reference}* {text}"))],
    })
}

/// Replaces the modal when the request cannot go on (stale draft, refusal).
pub fn notice(text: &str) -> Value {
    json!({
        "type": "modal",
        "title": plain("Request access"),
        "close": plain("Close"),
        "blocks": [section(text)],
    })
}
