//! Approval policy: who may request an app, which stages of approvers a request needs, and who may act on a ticket.
//!
//! Pure functions of the validated [`Config`] and the request: no I/O, no
//! clock. The plan is frozen into the ticket when it is created and
//! recomputed on every click, so it must be deterministic (sorted sets, config
//! order) and must fail closed: when in doubt a request needs more approval,
//! never less.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AppConfig, Approver, Config, Required, RoleConfig, Stage};

#[cfg(test)]
mod tests;

/// Who asks. `email` lowercased by the caller; `manager` from an identity source, if known.
///
/// Both are lowercased (and trimmed) again here, because a case mismatch
/// would silently let a requester approve their own ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester<'a> {
    pub email: &'a str,
    pub manager: Option<&'a str>,
}

/// The approval plan of one request: frozen into the ticket at creation (JSON), recomputed on every click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Stages in the order they are asked; empty exactly when `auto_approve`.
    pub stages: Vec<StagePlan>,
    pub auto_approve: bool,
    pub max_duration_secs: u64,
}

impl Plan {
    /// The approvers of every stage, in stage order (an email may repeat).
    pub fn approvers(&self) -> impl Iterator<Item = String> + '_ {
        self.stages.iter().flat_map(|s| s.approvers.iter().cloned())
    }

    /// The approvers of one stage; none when the stage does not exist.
    pub fn stage_approvers(&self, stage: usize) -> Vec<String> {
        self.stages
            .get(stage)
            .map(|s| s.approvers.clone())
            .unwrap_or_default()
    }

    /// Everyone who may be asked: every stage's approvers, then the
    /// `fallback_approvers` a short stage falls back to.
    pub fn candidates<'a>(&'a self, config: &Config) -> impl Iterator<Item = String> + 'a {
        self.approvers()
            .chain(config.expand(&config.requests.fallback_approvers))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePlan {
    /// Eligible approvers (sorted, unique, lowercased emails), requester excluded.
    pub approvers: Vec<String>,
    /// Distinct approvals needed (`All` resolved to the count of eligible approvers).
    pub required: usize,
    /// True when the configured approvers could not satisfy the stage and `requests.fallback_approvers` were used.
    pub fallback: bool,
    /// Human label of where approvers came from, for the DM: e.g. "owners", "group:eng-leads", "manager", "bob@example.com", joined with ", ".
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `deny_requesters` matched; `app` is the app's display name and `rule`
    /// the matching entry as written (e.g. "group:contractors").
    #[error("you may not request {app}: {rule}")]
    Denied { app: String, rule: String },
    #[error("choose at least one role")]
    NoRoles,
    /// `app` is the app's display name.
    #[error("unknown role `{role}` for {app}")]
    UnknownRole { app: String, role: String },
    /// `stage` is 1-based, counted in the plan being built.
    #[error("no one can approve stage {stage} of this request")]
    NoApprovers { stage: usize },
}

/// What an actor may do on a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// An eligible approver of the ticket's current stage.
    Approver,
    /// A `requests.admins` member who is neither the requester nor a current approver.
    Admin,
    /// The requester: may cancel or nudge, never approve.
    Requester,
    None,
}

/// Computes the plan for `app` + `roles` (role ids) requested by `requester`.
///
/// Order of checks: `deny_requesters` (before anything else, so a denied
/// person learns nothing about roles), then the role ids, then each stage.
/// An app that defines no roles at all is requested with no role ids and uses
/// the app's stages.
pub fn plan(
    config: &Config,
    app: &AppConfig,
    role_ids: &[String],
    requester: &Requester,
) -> Result<Plan, PolicyError> {
    let email = normalize(requester.email);
    let manager = requester.manager.map(normalize).filter(|m| !m.is_empty());

    if let Some(rule) = deny_rule(config, app, &email) {
        return Err(PolicyError::Denied {
            app: app.name.clone(),
            rule,
        });
    }

    let roles = resolve_roles(app, role_ids)?;
    let max_duration_secs = duration_cap(app, role_ids)
        .unwrap_or(app.max_duration)
        .as_secs();

    // An app without roles is one implicit request that is never auto-approved:
    // auto-approval is a per-role opt-in.
    let auto_approve = !roles.is_empty() && roles.iter().all(|r| r.auto_approve);
    if auto_approve {
        return Ok(Plan {
            stages: Vec::new(),
            auto_approve: true,
            max_duration_secs,
        });
    }

    // An auto-approved role's policy is "no approval", so in a mixed request
    // it adds no stages; the other roles' stages still all apply.
    let lists: Vec<&[Stage]> = if roles.is_empty() {
        vec![app.stages.as_slice()]
    } else {
        roles
            .iter()
            .filter(|r| !r.auto_approve)
            .map(|r| r.stages.as_slice())
            .collect()
    };

    let ctx = StageCtx {
        config,
        app,
        requester: &email,
        manager: manager.as_deref(),
    };
    let mut built: Vec<Built> = Vec::new();
    for list in lists {
        // Validation never produces a non-auto role without stages; if one
        // appears anyway, refusing is safer than approving with no one asked.
        if list.is_empty() {
            return Err(PolicyError::NoApprovers {
                stage: built.len() + 1,
            });
        }
        for stage in list {
            let next = ctx.resolve(stage, built.len() + 1)?;
            // Identical once resolved (same people, same count, same origin
            // kind) means one set of approvals meets both, so asking twice
            // would only add noise. Labels are merged so the DM still says
            // every reason these people were asked.
            match built.iter_mut().find(|b| b.same_requirement(&next)) {
                Some(existing) => {
                    for label in next.labels {
                        if !existing.labels.contains(&label) {
                            existing.labels.push(label);
                        }
                    }
                }
                None => built.push(next),
            }
        }
    }

    Ok(Plan {
        stages: built.into_iter().map(Built::into_stage_plan).collect(),
        auto_approve: false,
        max_duration_secs,
    })
}

/// What `actor` may do on a ticket at `stage` (0-based) given the current plan.
///
/// The requester check comes first so that no other capacity (admin,
/// approver in a stale or hand-edited plan) lets anyone approve their own
/// ticket. An actor without an email (unlinked) has no authority.
pub fn authority(
    config: &Config,
    plan: &Plan,
    stage: usize,
    requester_email: &str,
    actor_email: &str,
) -> Authority {
    let actor = normalize(actor_email);
    if actor.is_empty() {
        return Authority::None;
    }
    if actor == normalize(requester_email) {
        return Authority::Requester;
    }
    // Plans come back from JSON, so compare normalized rather than trusting
    // the stored case or order.
    let is_approver = plan
        .stages
        .get(stage)
        .is_some_and(|s| s.approvers.iter().any(|a| normalize(a) == actor));
    if is_approver {
        Authority::Approver
    } else if config.is_admin(&actor) {
        Authority::Admin
    } else {
        Authority::None
    }
}

/// A stage that fell back to `fallback_approvers`: its 1-based number and the
/// approvers of the policy that Slack could not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FellBack {
    pub stage: usize,
    pub unreachable: Vec<String>,
}

/// Restricts each stage to the approvers who can be reached in Slack and, where
/// the requester chose, to those chosen. A stage left short falls back to the
/// fallback approvers; if even they cannot satisfy it, the request cannot go on.
///
/// Stages that fell back are listed in the result with the approvers Slack
/// could not reach, for the caller to log.
pub fn reachable_plan(
    config: &Config,
    mut plan: Plan,
    ids: &HashMap<String, String>,
    chosen: &[Option<Vec<String>>],
    requester: &str,
) -> Result<(Plan, Vec<FellBack>), String> {
    let mut fell_back = Vec::new();
    let fallback: BTreeSet<String> = config.expand(&config.requests.fallback_approvers);
    for (i, stage) in plan.stages.iter_mut().enumerate() {
        let mut asked: Vec<String> = stage
            .approvers
            .iter()
            .filter(|e| ids.contains_key(*e))
            .cloned()
            .collect();
        if let Some(Some(chosen)) = chosen.get(i) {
            if chosen.len() < stage.required {
                return Err(format!(
                    "Choose at least {} approvers for stage {}.",
                    stage.required,
                    i + 1
                ));
            }
            asked.retain(|e| chosen.contains(e));
            // The requester's choice never steers a stage onto the fallback
            // approvers: someone they chose who cannot be reached is theirs
            // to replace.
            if asked.len() < stage.required {
                return Err(format!(
                    "Choose approvers who can be reached in Slack for stage {}; some you chose cannot be.",
                    i + 1
                ));
            }
        }
        if asked.len() < stage.required {
            let unreachable: Vec<&String> = stage
                .approvers
                .iter()
                .filter(|e| !ids.contains_key(*e))
                .collect();
            fell_back.push(FellBack {
                stage: i + 1,
                unreachable: unreachable.into_iter().cloned().collect(),
            });
            let backup: Vec<String> = fallback
                .iter()
                .filter(|e| *e != requester && ids.contains_key(*e))
                .cloned()
                .collect();
            if backup.len() < stage.required {
                return Err(format!(
                    "No approver of stage {} can be reached in Slack; ask an admin to check the approvers' emails.",
                    i + 1
                ));
            }
            asked = backup;
            stage.fallback = true;
            stage.source = "fallback_approvers".into();
        }
        stage.approvers = asked;
    }
    Ok((plan, fell_back))
}

/// Whether the config in force still allows a ticket for `app_id` + `roles`
/// by `requester`: the app and every role still in the catalog, the
/// requester not denied. Checked again before every decision and before
/// provisioning; the plan frozen in the ticket never stands in for it.
pub fn still_allowed<'a>(
    config: &'a Config,
    app_id: &str,
    role_ids: &[String],
    requester: &str,
) -> Result<&'a AppConfig, String> {
    let Some(app) = config.app(app_id) else {
        return Err(format!("{app_id} is no longer in the catalog"));
    };
    if let Some(rule) = deny_rule(config, app, &normalize(requester)) {
        return Err(format!(
            "the requester may no longer request {} ({rule})",
            app.name
        ));
    }
    if let Some(gone) = role_ids.iter().find(|r| app.role(r).is_none()) {
        return Err(format!(
            "the role {gone} of {} is no longer in the catalog",
            app.name
        ));
    }
    Ok(app)
}

/// Whether `email` may break-glass these roles of `app`: admins may; anyone
/// else only when every role sets `break_glass = true` and lists them in its
/// `break_glass_by`.
pub fn may_break_glass(config: &Config, app: &AppConfig, roles: &[String], email: &str) -> bool {
    if config.is_admin(email) {
        return true;
    }
    let email = email.to_lowercase();
    !roles.is_empty()
        && roles.iter().all(|id| {
            app.role(id).is_some_and(|role| {
                role.break_glass && config.expand(&role.break_glass_by).contains(&email)
            })
        })
}

/// Whether the request modal offers break-glass to `email` for `app` at all:
/// admins, and people some role of the app lets break-glass.
pub fn offers_break_glass(config: &Config, app: &AppConfig, email: &str) -> bool {
    config.is_admin(email)
        || app
            .roles
            .iter()
            .any(|role| may_break_glass(config, app, std::slice::from_ref(&role.id), email))
}

/// Effective cap for a request: min of the roles' `max_duration` (already ≤ app ≤ requests.max_duration by validation).
///
/// No role ids → the app's cap (what a role-less app allows, and an upper
/// bound to show before roles are chosen). Any unknown role id → `None`:
/// there is no cap for a request that cannot be made.
pub fn duration_cap(app: &AppConfig, role_ids: &[String]) -> Option<Duration> {
    let mut cap = app.max_duration;
    for id in role_ids {
        cap = cap.min(app.role(id)?.max_duration);
    }
    Some(cap)
}

/// The cap a form shows and checks a typed duration against: [`duration_cap`],
/// or the app's cap while a role id is unknown (such a request is refused by
/// [`plan`] anyway, so this never lets anything through).
pub fn form_cap(app: &AppConfig, role_ids: &[String]) -> Duration {
    duration_cap(app, role_ids).unwrap_or(app.max_duration)
}

/// Emails are compared lowercased and trimmed everywhere.
fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The first `deny_requesters` entry (in config order) that names `email`, as written.
fn deny_rule(config: &Config, app: &AppConfig, email: &str) -> Option<String> {
    app.deny_requesters
        .iter()
        .find(|p| config.expand(std::slice::from_ref(*p)).contains(email))
        .map(ToString::to_string)
}

/// The requested roles, in request order, duplicates dropped.
fn resolve_roles<'a>(
    app: &'a AppConfig,
    role_ids: &[String],
) -> Result<Vec<&'a RoleConfig>, PolicyError> {
    if role_ids.is_empty() {
        return if app.roles.is_empty() {
            Ok(Vec::new())
        } else {
            Err(PolicyError::NoRoles)
        };
    }
    let mut roles: Vec<&RoleConfig> = Vec::new();
    for id in role_ids {
        let role = app.role(id).ok_or_else(|| PolicyError::UnknownRole {
            app: app.name.clone(),
            role: id.clone(),
        })?;
        if !roles.iter().any(|r| r.id == role.id) {
            roles.push(role);
        }
    }
    Ok(roles)
}

/// What resolving one stage needs besides the stage itself.
struct StageCtx<'a> {
    config: &'a Config,
    app: &'a AppConfig,
    requester: &'a str,
    manager: Option<&'a str>,
}

/// A resolved stage whose source labels may still grow through dedupe.
struct Built {
    approvers: BTreeSet<String>,
    required: usize,
    fallback: bool,
    labels: Vec<String>,
}

impl Built {
    fn same_requirement(&self, other: &Built) -> bool {
        self.approvers == other.approvers
            && self.required == other.required
            && self.fallback == other.fallback
    }

    fn into_stage_plan(self) -> StagePlan {
        StagePlan {
            approvers: self.approvers.into_iter().collect(),
            required: self.required,
            fallback: self.fallback,
            source: self.labels.join(", "),
        }
    }
}

impl StageCtx<'_> {
    /// Resolves one configured stage, falling back to
    /// `requests.fallback_approvers` when the requester's exclusion (or a
    /// missing manager) leaves too few people. `number` is the 1-based
    /// position the stage would take in the plan, for the error.
    fn resolve(&self, stage: &Stage, number: usize) -> Result<Built, PolicyError> {
        let mut approvers = BTreeSet::new();
        let mut labels = Vec::new();
        for approver in &stage.approvers {
            let people = self.members(approver);
            // Only entries that still name someone are shown as a source, so
            // the DM never claims e.g. "manager" when none is known.
            if !people.is_empty() {
                labels.push(approver.to_string());
                approvers.extend(people);
            }
        }
        // `Count(0)` is refused by validation; treat it as 1 so a stage can
        // never be met by nobody.
        let needed = match stage.required {
            Required::Count(n) => n.max(1),
            Required::All => approvers.len().max(1),
        };
        if approvers.len() >= needed {
            return Ok(Built {
                approvers,
                required: needed,
                fallback: false,
                labels,
            });
        }

        // The fallback replaces the configured approvers rather than topping
        // them up: the stage's own audience failed, and mixing the two would
        // make "who is responsible" unclear in the DM.
        let mut approvers = BTreeSet::new();
        let mut labels = Vec::new();
        for principal in &self.config.requests.fallback_approvers {
            let people: BTreeSet<String> = self
                .config
                .expand(std::slice::from_ref(principal))
                .iter()
                .map(|e| normalize(e))
                .filter(|e| self.eligible(e))
                .collect();
            if !people.is_empty() {
                labels.push(principal.to_string());
                approvers.extend(people);
            }
        }
        // The stage's bar is kept as is: `Count(n)` still needs n distinct
        // approvals, `All` needs every fallback approver.
        let needed = match stage.required {
            Required::Count(n) => n.max(1),
            Required::All => approvers.len().max(1),
        };
        if approvers.len() >= needed {
            Ok(Built {
                approvers,
                required: needed,
                fallback: true,
                labels,
            })
        } else {
            Err(PolicyError::NoApprovers { stage: number })
        }
    }

    /// Eligible people named by one approver entry.
    fn members(&self, approver: &Approver) -> BTreeSet<String> {
        let raw: Vec<String> = match approver {
            Approver::Email(e) => vec![e.clone()],
            // An undefined group is refused by validation; if it slips
            // through it names nobody rather than failing the request here.
            Approver::Group(g) => self
                .config
                .group_members(g)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            Approver::UserGroup(h) => self.config.usergroups.emails(h).into_iter().collect(),
            Approver::Owners => self.config.owners_of(self.app),
            Approver::Manager => self.manager.map(str::to_string).into_iter().collect(),
        };
        raw.iter()
            .map(|e| normalize(e))
            .filter(|e| self.eligible(e))
            .collect()
    }

    /// The requester never counts, and an empty address is nobody.
    fn eligible(&self, email: &str) -> bool {
        !email.is_empty() && email != self.requester
    }
}
