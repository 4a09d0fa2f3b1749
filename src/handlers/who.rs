//! Who is asking: the requester's email (or why they cannot request), their
//! manager from the identity sources, and the approval plan for them. Shared
//! by the surfaces that take requests and decisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use crate::app::App;
use crate::config::{AppConfig, Config};
use crate::domain::policy::{self, Plan, PolicyError, Requester};
use crate::identity::Standing;
use crate::limit::Admit;
use crate::metrics;
use crate::store::{AuditEvent, Ticket};

/// Whether `email` has any part in `ticket`: its requester, a person its plan
/// asks or who decided it, an owner of its app, or an admin. Anyone else is
/// answered as if the ticket did not exist, so a crafted id learns nothing of
/// its status or approvers (authorise before describing).
pub fn involved(config: &Config, ticket: &Ticket, email: &str) -> bool {
    let is = |e: &str| e.eq_ignore_ascii_case(email);
    is(&ticket.requester_email)
        || ticket.plan.approvers().any(|e| is(&e))
        || ticket
            .approvals
            .iter()
            .any(|a| a.approver_email.as_deref().is_some_and(is))
        || config
            .app(&ticket.app_id)
            .is_some_and(|a| config.owners_of(a).iter().any(|e| is(e)))
        || config.is_admin(email)
}

const HOUR: Duration = Duration::from_secs(3600);

const LOOKUP_FAILED: &str =
    "accessd could not look up your Slack profile just now; please try again in a minute.";

/// What the requester's Slack account is, or why they cannot request.
pub enum Who {
    Known(String),
    Refused(String),
}

/// Resolves the requester's email; the refusal names the email seen and what to do.
pub async fn requester_email(app: &Arc<App>, user: &str) -> Who {
    match app.identity.email_of(user).await {
        Ok(Some(email)) if app.config().identity.require_known_email && !known_in_sources(app, &email).await => Who::Refused(format!(
            "Your Slack account's email is *{email}*, and no identity source knows that address, so accessd \
             cannot tell who you are. Ask an admin to link you (`accessd users link {user} you@company`)."
        )),
        Ok(Some(email)) => {
            let refused = match refused_standing(app, user, &email).await {
                Some(why) => Some(why),
                None => match offboarded(app, &email).await {
                    Some(why) => Some(why),
                    None => over_request_limit(app, user, &email).await,
                },
            };
            match refused {
                Some(why) => Who::Refused(why),
                None => Who::Known(email),
            }
        }
        Ok(None) => Who::Refused(
            "Slack has no email for your account, so accessd cannot tell who you are. Ask an admin to link you \
             with `accessd users link`."
                .into(),
        ),
        Err(err) => {
            tracing::warn!(user, error = %err, "could not resolve a requester's email");
            Who::Refused(LOOKUP_FAILED.into())
        }
    }
}

/// Why a Slack guest, bot or user of another team may not request (audited),
/// or `None`: a full member, or `[requests] allow_guests = true`. Slack not
/// answering refuses too: uncertain never allows.
async fn refused_standing(app: &Arc<App>, user: &str, email: &str) -> Option<String> {
    if app.config().requests.allow_guests {
        return None;
    }
    let standing = match app.identity.standing_of(user).await {
        Ok(Standing::Member) => return None,
        Ok(standing) => standing,
        Err(err) => {
            tracing::warn!(user, error = %err, "could not learn what kind of Slack account a requester has");
            return Some(LOOKUP_FAILED.into());
        }
    };
    let audit = AuditEvent::new(
        email,
        "request.refused_standing",
        email,
        json!({ "slack_id": user, "standing": standing.as_str() }),
    );
    if let Err(err) = app.store.append_audit(audit).await {
        tracing::error!(error = %err, "could not audit a refused requester");
    }
    let what = match standing {
        Standing::Guest => "a guest account in this workspace",
        Standing::Bot => "a bot",
        Standing::External | Standing::Member => "an account of another Slack team",
    };
    Some(format!(
        "Your Slack account is {what}, and accessd takes requests only from full members of this workspace. \
         Ask someone on the team, or an admin, to request for you."
    ))
}

/// Why a person who filed `[requests] requests_per_hour` tickets within the
/// last hour may not file another, or `None`. The first refusal in an hour
/// is audited (`request.limited`); every one is counted in the metrics. A
/// database error refuses too.
async fn over_request_limit(app: &Arc<App>, user: &str, email: &str) -> Option<String> {
    let limit = app.config().requests.requests_per_hour;
    let since = Utc::now() - chrono::Duration::hours(1);
    let filed = match app
        .store
        .tickets_filed_since(email.to_string(), since)
        .await
    {
        Ok(n) => n,
        Err(err) => {
            tracing::error!(error = %err, "could not count a requester's recent requests");
            return Some(LOOKUP_FAILED.into());
        }
    };
    if filed < limit {
        return None;
    }
    metrics::global().limited("request");
    // The limiter with a limit of 0 answers JustOver once per window: one
    // audit row per person per hour, however often they try.
    if app.request_limits.admit(email, 0, HOUR, Instant::now()) == Admit::JustOver {
        let audit = AuditEvent::new(
            email,
            "request.limited",
            email,
            json!({ "slack_id": user, "filed": filed, "limit": limit, "per": "1h" }),
        );
        if let Err(err) = app.store.append_audit(audit).await {
            tracing::error!(error = %err, "could not audit a limited requester");
        }
    }
    Some(format!(
        "You have filed {filed} requests within the last hour, the most accessd takes from one person; \
         please wait a while before filing another (your open requests are on the Home tab)."
    ))
}

/// Why a person an authoritative source lists as suspended or
/// deprovisioned may not request (audited), or `None`. A database error
/// refuses too: uncertain never allows.
async fn offboarded(app: &Arc<App>, email: &str) -> Option<String> {
    let authorities = authoritative_sources(app);
    if authorities.is_empty() {
        return None;
    }
    let (source, status) = match app
        .store
        .offboarded_in(email.to_string(), authorities)
        .await
    {
        Ok(found) => found?,
        Err(err) => {
            tracing::error!(error = %err, "could not check a requester against the identity sources");
            return Some(
                "accessd could not check your account just now; please try again in a minute."
                    .into(),
            );
        }
    };
    let audit = AuditEvent::new(
        email,
        "request.refused_offboarded",
        email,
        json!({ "source": source, "status": status }),
    );
    if let Err(err) = app.store.append_audit(audit).await {
        tracing::error!(error = %err, "could not audit a refused requester");
    }
    Some(format!(
        "The identity source *{source}* lists your account as {status}, so accessd takes no requests from it. \
         If that is wrong, ask IT to fix it there."
    ))
}

/// The ids of the `authoritative = true` sources.
fn authoritative_sources(app: &Arc<App>) -> Vec<String> {
    app.config()
        .sources
        .iter()
        .filter(|s| s.authoritative)
        .map(|s| s.id.clone())
        .collect()
}

/// Whether an identity source's last good snapshot lists `email`. Until a
/// source has synced nobody is known, so `require_known_email = true`
/// refuses everyone rather than guessing; a database error refuses too.
async fn known_in_sources(app: &Arc<App>, email: &str) -> bool {
    app.store
        .email_known(email.to_string())
        .await
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "could not check an email against the identity sources");
            false
        })
}

/// The person's manager as the `authoritative` identity sources give it,
/// for `manager` approvers; a source people can edit never names one.
pub async fn manager_of(app: &Arc<App>, email: &str) -> Option<String> {
    let authorities = authoritative_sources(app);
    if authorities.is_empty() {
        return None;
    }
    app.store
        .authoritative_manager(email.to_string(), authorities)
        .await
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "could not read a manager from the identity sources");
            None
        })
}

pub async fn plan_for(
    app: &Arc<App>,
    found: &AppConfig,
    roles: &[String],
    email: &str,
) -> Result<Plan, PolicyError> {
    let manager = manager_of(app, email).await;
    policy::plan(
        &app.config(),
        found,
        roles,
        &Requester {
            email,
            manager: manager.as_deref(),
        },
    )
}

/// [`policy::reachable_plan`], with the stages that fell back logged.
pub fn reachable_plan(
    config: &Config,
    plan: Plan,
    ids: &HashMap<String, String>,
    chosen: &[Option<Vec<String>>],
    requester: &str,
) -> Result<Plan, String> {
    let (plan, fell_back) = policy::reachable_plan(config, plan, ids, chosen, requester)?;
    for stage in fell_back {
        tracing::warn!(
            stage = stage.stage,
            unreachable = ?stage.unreachable,
            "approvers not reachable in Slack; using the fallback approvers"
        );
    }
    Ok(plan)
}
