//! The request flow: the modal opened from the Home tab or `/access`, its
//! steps validated inline, and the ticket it creates with the approvers' DMs.
//! The modal's state lives in SQLite (`request_drafts`); `private_metadata`
//! holds only the draft id, and a draft is only ever read by its owner.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use slack_morphism::prelude::*;

use super::tell::open_modal;
use super::who::{manager_of, plan_for, requester_email, Who};
use crate::app::App;
use crate::config::{AppConfig, Config};
use crate::domain::policy::{self, Plan, PolicyError, Requester};
use crate::slack::envelope::Reply;
use crate::slack::ids::*;
use crate::slack::modal::{checked_duration, input, state_values, StateValues};
use crate::slack::views::request as views;
use crate::slack::views::text::{fmt_duration, mention};

mod oneline;
mod submit;
use crate::domain::catalog;
use crate::slack::views::text;
use crate::store::{AuditEvent, StoreError};
use submit::{break_glass, step_submit};

/// Reasons shorter than this tell an approver nothing.
const MIN_REASON_CHARS: usize = 10;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    #[default]
    App,
    Roles,
    Duration,
    Approvers,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Draft {
    step: Step,
    app: Option<String>,
    roles: Vec<String>,
    reason: String,
    duration_secs: u64,
    /// Break-glass: granted at once, approvers told after.
    #[serde(default)]
    urgent: bool,
    /// The outside reference (`reference`), trimmed; empty when none.
    #[serde(default)]
    reference: String,
}

impl Draft {
    /// The reference to record: `None` when none was given or the app no
    /// longer asks for one.
    fn reference(&self) -> Option<String> {
        (!self.reference.is_empty()).then(|| self.reference.clone())
    }
}

/// Opens the modal (after the ack: `trigger_id` is valid 3 s, once). `text`
/// is what followed `/access`: an app to preselect, or a whole one-line
/// request, filed before the ack and answered ephemerally when complete
/// (see [`oneline`]).
pub async fn open(app: &Arc<App>, trigger_id: &str, user: String, text: Option<String>) -> Reply {
    let line = text
        .as_deref()
        .and_then(|t| oneline::parse(&app.config(), t));
    if let Some(line) = &line {
        if let Some(answer) = oneline::file_now(app, &user, line).await {
            return answer;
        }
    }
    let app = app.clone();
    let trigger_id = trigger_id.to_string();
    Reply::empty().then(async move {
        let view = match requester_email(&app, &user).await {
            Who::Refused(why) => views::notice(&why),
            Who::Known(_) => first_step(&app, &user, text.as_deref(), line).await,
        };
        open_modal(&app, &trigger_id, view, "request").await;
    })
}

async fn first_step(
    app: &Arc<App>,
    user: &str,
    text: Option<&str>,
    line: Option<oneline::Line>,
) -> Value {
    let config = app.config();
    let draft_id = new_draft_id();
    let from_line = line.is_some();
    let mut draft = line.as_ref().map(oneline::Line::draft).unwrap_or_default();
    let mut note = None;
    // A line names its app exactly: the roles step opens with what it said.
    if let Some(text) = text.map(str::trim).filter(|t| !t.is_empty() && !from_line) {
        match catalog::match_app(&config, text) {
            Some(found) => {
                draft.app = Some(found.id.clone());
                draft.step = Step::Roles;
            }
            None => {
                note = Some(format!(
                    "No app matches \u{201c}{}\u{201d}; choose one below.",
                    text::escape(text, 80)
                ))
            }
        }
    }
    if config.apps.is_empty() {
        return views::notice(
            "No apps are configured yet: an admin adds them under `[[apps]]` in accessd.toml.",
        );
    }
    if let Err(err) = save(app, &draft_id, user, &draft).await {
        tracing::error!(error = %err, "could not save a request draft");
        return views::notice("accessd could not start a request just now; please try again.");
    }
    match draft.app.as_deref().and_then(|id| config.app(id)) {
        Some(found) => {
            let email = app.identity.email_of(user).await.ok().flatten();
            views::roles_step(
                found,
                &draft_id,
                &draft.roles,
                &draft.reason,
                &draft.reference,
                may_break_glass(app, found, email.as_deref()),
            )
        }
        None => views::app_step(&config, &draft_id, note.as_deref()),
    }
}

fn new_draft_id() -> String {
    use rand::RngExt;
    let bytes: [u8; 12] = rand::rng().random();
    hex::encode(bytes)
}

async fn save(app: &Arc<App>, id: &str, user: &str, draft: &Draft) -> Result<(), StoreError> {
    let state = serde_json::to_value(draft)?;
    app.store
        .save_draft(id.to_string(), user.to_string(), state)
        .await
}

pub async fn submitted(app: &Arc<App>, submission: SlackInteractionViewSubmissionEvent) -> Reply {
    let user = submission.user.id.0.clone();
    let draft_id = match &submission.view.view {
        SlackView::Modal(modal) => modal.private_metadata.clone().unwrap_or_default(),
        SlackView::Home(_) => String::new(),
    };
    let draft: Option<Draft> = match app.store.draft(draft_id.clone(), user.clone()).await {
        Ok(state) => state.and_then(|s| serde_json::from_value(s).ok()),
        Err(err) => {
            tracing::error!(error = %err, "could not read a request draft");
            None
        }
    };
    let Some(mut draft) = draft else {
        return Reply::update(views::notice(
            "This request form has expired. Start again with `/access` or the Home tab.",
        ));
    };
    let email = match requester_email(app, &user).await {
        Who::Known(email) => email,
        Who::Refused(why) => return Reply::update(views::notice(&why)),
    };
    let values = state_values(&submission);
    let reply = match draft.step {
        Step::App => step_app(app, &mut draft, &values, &email, &draft_id).await,
        Step::Roles => step_roles(app, &mut draft, &values, &email, &draft_id).await,
        Step::Duration if draft.urgent => {
            return break_glass(app, &draft, &values, &user, &email, &draft_id).await
        }
        Step::Duration => step_duration(app, &mut draft, &values, &email, &draft_id).await,
        Step::Approvers => {
            let cap =
                app_of(&app.config(), &draft).map(|found| policy::form_cap(found, &draft.roles));
            match cap {
                Some(cap) if draft.duration_secs > cap.as_secs() => {
                    back_to_duration(app, &mut draft, cap, &draft_id)
                }
                _ => return step_submit(app, &draft, &values, &user, &email, &draft_id).await,
            }
        }
    };
    if let Err(err) = save(app, &draft_id, &user, &draft).await {
        tracing::error!(error = %err, "could not save a request draft");
        return Reply::update(views::notice(
            "accessd could not save your request just now; please try again.",
        ));
    }
    reply
}

async fn step_app(
    app: &Arc<App>,
    draft: &mut Draft,
    values: &StateValues,
    email: &str,
    draft_id: &str,
) -> Reply {
    let config = app.config();
    let chosen = input(values, APP_BLOCK, APP_ACTION)
        .and_then(|v| v.selected_option.as_ref())
        .map(|o| o.value.clone());
    let Some(found) = chosen.as_deref().and_then(|id| config.app(id)) else {
        return Reply::field_errors(&[(APP_BLOCK, "Choose an app from the list.".into())]);
    };
    let manager = manager_of(app, email).await;
    if let Err(PolicyError::Denied { app: name, rule }) = policy::plan(
        &config,
        found,
        &[],
        &Requester {
            email,
            manager: manager.as_deref(),
        },
    ) {
        return Reply::field_errors(&[(
            APP_BLOCK,
            format!("You may not request {name} ({rule})."),
        )]);
    }
    draft.app = Some(found.id.clone());
    draft.step = Step::Roles;
    Reply::update(views::roles_step(
        found,
        draft_id,
        &draft.roles,
        &draft.reason,
        &draft.reference,
        may_break_glass(app, found, Some(email)),
    ))
}

/// Whether to offer break-glass at all (see `policy::offers_break_glass`).
fn may_break_glass(app: &Arc<App>, found: &AppConfig, email: Option<&str>) -> bool {
    email.is_some_and(|e| policy::offers_break_glass(&app.config(), found, e))
}

/// The draft's app was removed from the config since the modal opened.
fn app_gone() -> Reply {
    Reply::update(views::notice(
        "That app is no longer in the catalog. Start again with `/access`.",
    ))
}

fn app_of<'a>(config: &'a Config, draft: &Draft) -> Option<&'a AppConfig> {
    draft.app.as_deref().and_then(|id| config.app(id))
}

async fn step_roles(
    app: &Arc<App>,
    draft: &mut Draft,
    values: &StateValues,
    email: &str,
    draft_id: &str,
) -> Reply {
    let config = app.config();
    let Some(found) = app_of(&config, draft) else {
        return app_gone();
    };
    let roles: Vec<String> = input(values, ROLES_BLOCK, ROLES_ACTION)
        .and_then(|v| v.selected_options.as_ref())
        .map(|opts| opts.iter().map(|o| o.value.clone()).collect())
        .unwrap_or_default();
    let reason = input(values, REASON_BLOCK, REASON_ACTION)
        .and_then(|v| v.value.clone())
        .unwrap_or_default();
    let mut problems = Vec::new();
    if let Some(unknown) = roles.iter().find(|r| found.role(r).is_none()) {
        problems.push((
            ROLES_BLOCK,
            format!("{} has no role `{unknown}`.", found.name),
        ));
    } else if roles.is_empty() && !found.roles.is_empty() {
        problems.push((ROLES_BLOCK, "Choose at least one role.".to_string()));
    }
    if reason.trim().chars().count() < MIN_REASON_CHARS {
        problems.push((
            REASON_BLOCK,
            format!("Tell the approvers why, in at least {MIN_REASON_CHARS} characters."),
        ));
    }
    let reference = input(values, REFERENCE_BLOCK, REFERENCE_ACTION)
        .and_then(|v| v.value.clone())
        .unwrap_or_default();
    if let Some(Err(why)) = found.reference.as_ref().map(|r| r.check(&reference)) {
        problems.push((REFERENCE_BLOCK, why));
    }
    if problems.is_empty() {
        match plan_for(app, found, &roles, email).await {
            Err(PolicyError::NoApprovers { stage }) => problems.push((
                ROLES_BLOCK,
                format!("No one can approve stage {stage} of this request; ask an admin to fix the approvers."),
            )),
            Err(err) => problems.push((ROLES_BLOCK, err.to_string())),
            Ok(_) => {}
        }
    }
    if problems.is_empty() {
        let duplicate = app
            .store
            .pending_duplicate(email.to_string(), found.id.clone(), roles.clone())
            .await;
        if let Ok(Some(open)) = duplicate {
            problems.push((ROLES_BLOCK, format!("You already have {open} pending for this; nudge or cancel it from the Home tab.")));
        }
    }
    let urgent = input(values, URGENT_BLOCK, URGENT_ACTION)
        .and_then(|v| v.selected_options.as_ref())
        .is_some_and(|opts| !opts.is_empty());
    if urgent && !policy::may_break_glass(&config, found, &roles, email) {
        refuse_break_glass(app, email, &found.id, &roles, "roles").await;
        problems.push((
            URGENT_BLOCK,
            "Break-glass is for admins and the people a role names in break_glass_by; leave it unchecked to ask the approvers.".to_string(),
        ));
    }
    if !problems.is_empty() {
        return Reply::field_errors(&problems);
    }
    draft.urgent = urgent;
    let cap = policy::form_cap(found, &roles);
    draft.roles = roles;
    draft.reason = reason.trim().to_string();
    draft.reference = reference.trim().to_string();
    draft.step = Step::Duration;
    let initial = if draft.duration_secs > 0 {
        Duration::from_secs(draft.duration_secs)
    } else {
        config.requests.default_duration
    };
    let (_, names) = role_names(found, &draft.roles);
    Reply::update(views::duration_step(
        found,
        &names,
        draft_id,
        initial.min(cap),
        cap,
        None,
    ))
}

/// The role's cap was lowered (a reload) after the duration step: back to
/// that step, saying so, rather than a ticket longer than the policy allows
/// or a notice with no way on.
fn back_to_duration(app: &Arc<App>, draft: &mut Draft, cap: Duration, draft_id: &str) -> Reply {
    let config = app.config();
    let Some(found) = app_of(&config, draft) else {
        return app_gone();
    };
    draft.step = Step::Duration;
    let (_, names) = role_names(found, &draft.roles);
    let note = format!(
        "The longest allowed for this role is now {}; choose again.",
        fmt_duration(cap)
    );
    Reply::update(views::duration_step(
        found,
        &names,
        draft_id,
        cap,
        cap,
        Some(&note),
    ))
}

fn role_names(found: &AppConfig, roles: &[String]) -> (String, String) {
    let names: Vec<String> = roles
        .iter()
        .map(|r| found.role(r).map_or_else(|| r.clone(), |x| x.name.clone()))
        .collect();
    (
        found.name.clone(),
        if names.is_empty() {
            "access".into()
        } else {
            names.join(", ")
        },
    )
}

/// The duration step's input checked against the cap, and the plan it
/// leads to; the reply to send instead when either is wrong.
async fn duration_and_plan<'a>(
    app: &Arc<App>,
    config: &'a Config,
    draft: &Draft,
    values: &StateValues,
    email: &str,
) -> Result<(&'a AppConfig, Duration, Plan), Reply> {
    let found = app_of(config, draft).ok_or_else(app_gone)?;
    let cap = policy::form_cap(found, &draft.roles);
    let text = input(values, DURATION_BLOCK, DURATION_ACTION)
        .and_then(|v| v.value.clone())
        .unwrap_or_default();
    let duration = checked_duration(&text, cap)
        .map_err(|why| Reply::field_errors(&[(DURATION_BLOCK, why)]))?;
    let plan = plan_for(app, found, &draft.roles, email)
        .await
        .map_err(|err| Reply::field_errors(&[(DURATION_BLOCK, err.to_string())]))?;
    Ok((found, duration, plan))
}

async fn step_duration(
    app: &Arc<App>,
    draft: &mut Draft,
    values: &StateValues,
    email: &str,
    draft_id: &str,
) -> Reply {
    let config = app.config();
    let (found, duration, plan) = match duration_and_plan(app, &config, draft, values, email).await
    {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    draft.duration_secs = duration.as_secs();
    draft.step = Step::Approvers;
    let ids = app.identity.slack_ids_of(plan.approvers()).await;
    let name_of = |email: &str| {
        ids.get(email)
            .map_or_else(|| email.to_string(), |id| mention(id))
    };
    let (name, roles) = role_names(found, &draft.roles);
    let summary = format!(
        "*{name}* · {roles} · {}\n{}",
        fmt_duration(duration),
        text::quote(&draft.reason)
    );
    Reply::update(views::approvers_step(
        found, &summary, draft_id, &plan, &name_of,
    ))
}

/// Audits a break-glass the policy does not allow this person (a crafted
/// submission, or a reload that took the right away mid-form).
async fn refuse_break_glass(
    app: &Arc<App>,
    email: &str,
    app_id: &str,
    roles: &[String],
    step: &str,
) {
    let audit = AuditEvent::new(
        email,
        "ticket.break_glass_refused",
        app_id,
        json!({ "roles": roles, "step": step }),
    );
    if let Err(err) = app.store.append_audit(audit).await {
        tracing::error!(error = %err, "could not audit a refused break-glass");
    }
}
