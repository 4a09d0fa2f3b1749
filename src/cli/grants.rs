//! `accessd grants list|revoke`, and the CLI actor name both grants and
//! tickets commands write to the audit log.

use std::path::Path;

use chrono::{DateTime, Utc};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Subcommand;
use serde::Serialize;

use super::actor::cli_actor;
use super::output::{emit, or_dash, print_out, rfc3339_short, with_store, Failure, Outcome, Table};
use crate::domain::ticket::ticket_ref;
use crate::store::grants::parse_grant_ref;
use crate::store::{Actor, AuditEvent, Changed, Effects, Grant, GrantFilter, GrantStatus, Store};

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List grants, newest first.
    List {
        /// Only grants in this status.
        #[arg(long, value_name = "STATUS", value_parser = status_parser())]
        status: Option<GrantStatus>,
        /// At most this many grants.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an active grant now (the running daemon does it within seconds; audited).
    Revoke {
        /// Grant id: `G-7` or `7`.
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: i64,
        /// Why, for the audit log and the person's DM.
        #[arg(long, default_value = "revoked by an admin")]
        reason: String,
        /// The access was already removed by hand in the app (a revoke that
        /// failed because the target's account or group is gone): record the
        /// grant as ended without calling the provisioner. Audited as
        /// `grant.removed_by_hand` with the OS user.
        #[arg(long)]
        removed_by_hand: bool,
    },
}

fn status_parser() -> impl TypedValueParser<Value = GrantStatus> {
    PossibleValuesParser::new(GrantStatus::ALL.map(GrantStatus::as_str))
        .try_map(|text: String| GrantStatus::parse(&text).ok_or("unknown status"))
}

fn parse_id(text: &str) -> Result<i64, String> {
    parse_grant_ref(text).ok_or_else(|| format!("`{text}` is not a grant id (G-7 or 7)"))
}

pub(crate) fn execute(config: &Path, command: GrantsCommand) -> Outcome {
    match command {
        GrantsCommand::List {
            status,
            limit,
            json,
        } => with_store(config, |store| list(store, status, limit, json)),
        GrantsCommand::Revoke {
            id,
            reason,
            removed_by_hand: false,
        } => with_store(config, |store| revoke(store, id, reason)),
        GrantsCommand::Revoke {
            id,
            reason,
            removed_by_hand: true,
        } => with_store(config, |store| removed_by_hand(store, id, reason)),
    }
}

async fn list(
    store: Store,
    status: Option<GrantStatus>,
    limit: Option<usize>,
    json: bool,
) -> Outcome {
    let grants = store
        .list_grants(GrantFilter {
            status,
            limit,
            ..GrantFilter::default()
        })
        .await?;
    let views: Vec<GrantView> = grants.iter().map(GrantView::from).collect();
    emit(json, &views, || {
        let mut table = Table::new(&[
            "ID", "STATUS", "TICKET", "APP", "ROLE", "PERSON", "EXPIRES", "NOTE",
        ]);
        for v in &views {
            table.row(vec![
                v.id.clone(),
                v.status.into(),
                v.ticket.clone(),
                v.app.clone(),
                or_dash(Some(v.role.clone()).filter(|r| !r.is_empty())),
                v.person.clone(),
                v.expires_at.map_or_else(|| "-".into(), rfc3339_short),
                note(v),
            ]);
        }
        table.render()
    })
}

fn note(v: &GrantView) -> String {
    let mut notes = Vec::new();
    if v.preexisting {
        notes.push("pre-existing, kept at expiry".to_string());
    }
    if v.manual {
        notes.push("manual".to_string());
    }
    if let Some(by) = &v.ended_by {
        notes.push(by.clone());
    }
    if let Some(err) = &v.last_error {
        notes.push(err.clone());
    }
    or_dash(Some(notes.join("; ")).filter(|n| !n.is_empty()))
}

async fn revoke(store: Store, id: i64, reason: String) -> Outcome {
    let Some(grant) = store.grant(id).await? else {
        return Err(Failure::runtime(format!("no grant G-{id}")));
    };
    let actor = Actor {
        slack_id: String::new(),
        email: cli_actor(),
    };
    match store
        .revoke_now(grant.ticket_id, Some(id), actor, reason, |_| Ok(()))
        .await?
    {
        Changed::Done(_) => print_out(&format!(
            "{}: revoke scheduled now; the running daemon revokes it within seconds",
            grant.reference()
        )),
        _ => Err(Failure::runtime(format!(
            "{} is {}, not active: nothing to revoke",
            grant.reference(),
            grant.status
        ))),
    }
}

/// Ends an active grant in accessd only: someone checked the app and the
/// access is gone. Nothing is sent to the provisioner.
async fn removed_by_hand(store: Store, id: i64, reason: String) -> Outcome {
    let Some(grant) = store.grant(id).await? else {
        return Err(Failure::runtime(format!("no grant G-{id}")));
    };
    let actor = cli_actor();
    let reference = grant.reference();
    let audit = AuditEvent::new(
        &actor,
        "grant.removed_by_hand",
        reference.clone(),
        serde_json::json!({ "reason": reason }),
    );
    let ended = store
        .end_grant(
            id,
            None,
            GrantStatus::Revoked,
            format!("removed by hand ({actor}): {reason}"),
            move |_, _| Effects {
                audit: vec![audit],
                ..Effects::default()
            },
        )
        .await?;
    match ended {
        Some(_) => print_out(&format!("{reference}: recorded as removed by hand")),
        None => Err(Failure::runtime(format!(
            "{reference} is {}, not active: nothing to record",
            grant.status
        ))),
    }
}

#[derive(Debug, Serialize)]
struct GrantView {
    id: String,
    status: &'static str,
    ticket: String,
    app: String,
    role: String,
    entitlement: String,
    person: String,
    preexisting: bool,
    manual: bool,
    attempts: i64,
    granted_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    ended_by: Option<String>,
    last_error: Option<String>,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        GrantView {
            id: g.reference(),
            status: g.status.as_str(),
            ticket: ticket_ref(g.ticket_id),
            app: g.app_id.clone(),
            role: g.role_id.clone(),
            entitlement: g.entitlement.clone(),
            person: g.person_email.clone(),
            preexisting: g.preexisting,
            manual: g.manual,
            attempts: g.attempts,
            granted_at: g.granted_at,
            expires_at: g.expires_at,
            ended_at: g.ended_at,
            ended_by: g.ended_by.clone(),
            last_error: g.last_error.clone(),
        }
    }
}
