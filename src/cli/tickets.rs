//! `accessd tickets list|show|retry`: views of tickets, their frozen
//! approval plans, approvals and audit rows (people appear by email), and
//! the admin's retry of a failed provisioning.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Subcommand;
use serde::Serialize;

use super::actor::cli_actor;
use super::output::{
    clean, emit, or_dash, print_out, rfc3339_short, with_store, Failure, Outcome, Table,
};
use crate::domain::policy::StagePlan;
use crate::domain::ticket::{parse_ticket_ref, ticket_ref, Status};
use crate::store::{Approval, AuditRow, Changed, Store, StoreError, Ticket, TicketFilter};

#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// List tickets, newest first.
    List {
        /// Only tickets in this status.
        #[arg(long, value_name = "STATUS", value_parser = status_parser())]
        status: Option<Status>,
        /// At most this many tickets.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one ticket: every field, its approval plan, approvals and audit rows.
    Show {
        /// Ticket id: `T-42` or `42`.
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: i64,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Provision a failed ticket again (same idempotency keys; the running
    /// daemon picks it up within seconds; audited).
    Retry {
        /// Ticket id: `T-42` or `42`.
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: i64,
    },
}

/// Clap lists the valid statuses in `--help` and in its usage error (exit 2).
fn status_parser() -> impl TypedValueParser<Value = Status> {
    PossibleValuesParser::new(Status::ALL.map(Status::as_str))
        .try_map(|text: String| Status::parse(&text).ok_or("unknown status"))
}

fn parse_id(text: &str) -> Result<i64, String> {
    parse_ticket_ref(text).ok_or_else(|| format!("`{text}` is not a ticket id (T-42 or 42)"))
}

pub(crate) fn execute(config: &Path, command: TicketsCommand) -> Outcome {
    match command {
        TicketsCommand::List {
            status,
            limit,
            json,
        } => with_store(config, |store| list(store, status, limit, json)),
        TicketsCommand::Show { id, json } => with_store(config, |store| show(store, id, json)),
        TicketsCommand::Retry { id } => with_store(config, |store| retry(store, id)),
    }
}

async fn list(store: Store, status: Option<Status>, limit: Option<usize>, json: bool) -> Outcome {
    let tickets = store
        .list_tickets(TicketFilter {
            status,
            requester_slack_id: None,
            limit,
        })
        .await?;
    let views: Vec<TicketView> = tickets.iter().map(TicketView::from).collect();
    emit(json, &views, || list_table(&views))
}

async fn retry(store: Store, id: i64) -> Outcome {
    match store.retry_ticket(id, cli_actor()).await {
        Ok(Changed::Done(t)) => print_out(&format!(
            "{}: provisioning again; the running daemon picks it up within seconds",
            t.reference()
        )),
        Ok(Changed::NotApplicable(t))
        | Ok(Changed::Refused { ticket: t, .. })
        | Ok(Changed::TooSoon { ticket: t, .. }) => Err(Failure::runtime(format!(
            "{} is {}; only a failed request can be retried",
            t.reference(),
            t.status
        ))),
        Err(StoreError::NotFound { .. }) => {
            Err(Failure::runtime(format!("no ticket {}", ticket_ref(id))))
        }
        Err(err) => Err(err.into()),
    }
}

async fn show(store: Store, id: i64, json: bool) -> Outcome {
    let reference = ticket_ref(id);
    let Some(ticket) = store.ticket(id).await? else {
        return Err(Failure::runtime(format!("no ticket {reference}")));
    };
    let audit: Vec<AuditRow> = store
        .audit_rows(None)
        .await?
        .into_iter()
        .filter(|row| row.subject == reference)
        .collect();
    let detail = TicketDetail::new(&ticket, &audit);
    emit(json, &detail, || show_text(&detail))
}

// ---------------------------------------------------------------------------
// Views: what the CLI promises to print, independent of the store's types.

#[derive(Debug, Serialize)]
struct TicketView {
    id: String,
    status: &'static str,
    app: String,
    roles: Vec<String>,
    requester: String,
    requester_slack_id: String,
    reason: String,
    /// The outside reference (`[requests] reference`), if any.
    reference: Option<String>,
    /// humantime, e.g. `8h`.
    duration: String,
    /// 1-based; 0 only for a plan without stages (auto-approved).
    stage: usize,
    stages: usize,
    created_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    approvals: Vec<ApprovalView>,
}

#[derive(Debug, Serialize)]
struct ApprovalView {
    /// Email; null when the approver's email was not known.
    approver: Option<String>,
    approver_slack_id: String,
    /// 1-based.
    stage: usize,
    decision: &'static str,
    comment: Option<String>,
    /// A duration the approver set, humantime.
    duration: Option<String>,
    at: DateTime<Utc>,
}

/// `tickets show --json`: the list view plus everything else.
#[derive(Debug, Serialize)]
struct TicketDetail {
    #[serde(flatten)]
    ticket: TicketView,
    updated_at: DateTime<Utc>,
    last_nudge_at: Option<DateTime<Utc>>,
    plan: PlanView,
    approver_messages: Vec<ApproverMessageView>,
    audit: Vec<AuditView>,
}

#[derive(Debug, Serialize)]
struct PlanView {
    auto_approve: bool,
    max_duration: String,
    stages: Vec<StageView>,
}

#[derive(Debug, Serialize)]
struct StageView {
    /// 1-based.
    stage: usize,
    approvers: Vec<String>,
    required: usize,
    fallback: bool,
    source: String,
}

#[derive(Debug, Serialize)]
struct ApproverMessageView {
    approver_slack_id: String,
    channel: String,
    ts: String,
}

#[derive(Debug, Serialize)]
struct AuditView {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    detail: serde_json::Value,
}

fn human_duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn signed_duration(secs: i64) -> String {
    u64::try_from(secs).map_or_else(|_| format!("{secs}s"), human_duration)
}

impl From<&Ticket> for TicketView {
    fn from(t: &Ticket) -> Self {
        let stages = t.plan.stages.len();
        TicketView {
            id: t.reference(),
            status: t.status.as_str(),
            app: t.app_id.clone(),
            roles: t.roles.clone(),
            requester: t.requester_email.clone(),
            requester_slack_id: t.requester_slack_id.clone(),
            reason: t.reason.clone(),
            reference: t.reference.clone(),
            duration: signed_duration(t.duration_secs),
            stage: if stages == 0 { 0 } else { t.stage + 1 },
            stages,
            created_at: t.created_at,
            decided_at: t.decided_at,
            approvals: t.approvals.iter().map(ApprovalView::from).collect(),
        }
    }
}

impl From<&Approval> for ApprovalView {
    fn from(a: &Approval) -> Self {
        ApprovalView {
            approver: a.approver_email.clone(),
            approver_slack_id: a.approver_slack_id.clone(),
            stage: a.stage.saturating_add(1),
            decision: a.verdict.as_str(),
            comment: a.comment.clone(),
            duration: a.duration_secs.map(signed_duration),
            at: a.decided_at,
        }
    }
}

impl StageView {
    fn new(index: usize, s: &StagePlan) -> Self {
        StageView {
            stage: index + 1,
            approvers: s.approvers.clone(),
            required: s.required,
            fallback: s.fallback,
            source: s.source.clone(),
        }
    }
}

impl TicketDetail {
    fn new(t: &Ticket, audit: &[AuditRow]) -> Self {
        TicketDetail {
            ticket: TicketView::from(t),
            updated_at: t.updated_at,
            last_nudge_at: t.last_nudge_at,
            plan: PlanView {
                auto_approve: t.plan.auto_approve,
                max_duration: human_duration(t.plan.max_duration_secs),
                stages: t
                    .plan
                    .stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| StageView::new(i, s))
                    .collect(),
            },
            approver_messages: t
                .approver_messages
                .iter()
                .map(|m| ApproverMessageView {
                    approver_slack_id: m.approver_slack_id.clone(),
                    channel: m.channel.clone(),
                    ts: m.ts.clone(),
                })
                .collect(),
            audit: audit
                .iter()
                .map(|r| AuditView {
                    seq: r.seq,
                    at: r.at,
                    actor: r.actor.clone(),
                    action: r.action.clone(),
                    detail: r.detail.clone(),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// Human output.

fn stage_text(t: &TicketView) -> String {
    if t.stages == 0 {
        "-".into()
    } else {
        format!("{}/{}", t.stage, t.stages)
    }
}

fn list_table(views: &[TicketView]) -> String {
    if views.is_empty() {
        return "no tickets".into();
    }
    let mut table = Table::new(&[
        "ID",
        "STATUS",
        "APP",
        "ROLES",
        "REQUESTER",
        "REFERENCE",
        "STAGE",
        "CREATED",
    ]);
    for t in views {
        table.row(vec![
            t.id.clone(),
            t.status.into(),
            t.app.clone(),
            roles_text(&t.roles),
            t.requester.clone(),
            t.reference.clone().unwrap_or_else(|| "-".into()),
            stage_text(t),
            rfc3339_short(t.created_at),
        ]);
    }
    table.render()
}

fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        "-".into()
    } else {
        roles.join(",")
    }
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    or_dash(t.map(rfc3339_short))
}

fn show_text(d: &TicketDetail) -> String {
    use std::fmt::Write as _;
    let t = &d.ticket;
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: String| {
        let _ = writeln!(out, "{:<12}{}", format!("{name}:"), clean(&value));
    };
    field(&mut out, "Ticket", t.id.clone());
    field(&mut out, "Status", t.status.into());
    field(&mut out, "App", t.app.clone());
    field(&mut out, "Roles", roles_text(&t.roles));
    field(
        &mut out,
        "Requester",
        format!("{} ({})", t.requester, t.requester_slack_id),
    );
    field(&mut out, "Reason", t.reason.clone());
    if let Some(reference) = &t.reference {
        field(&mut out, "Reference", reference.clone());
    }
    field(&mut out, "Duration", t.duration.clone());
    field(&mut out, "Stage", stage_text(t));
    field(&mut out, "Created", rfc3339_short(t.created_at));
    field(&mut out, "Updated", rfc3339_short(d.updated_at));
    field(&mut out, "Decided", opt_time(t.decided_at));
    field(&mut out, "Last nudge", opt_time(d.last_nudge_at));

    let _ = writeln!(
        out,
        "\nPlan (max duration {}{}):",
        d.plan.max_duration,
        if d.plan.auto_approve {
            ", auto-approve"
        } else {
            ""
        }
    );
    if d.plan.stages.is_empty() {
        out.push_str("  no approval stages\n");
    }
    for s in &d.plan.stages {
        let _ = writeln!(
            out,
            "  stage {}: {} of {}{} (from {})",
            s.stage,
            s.required,
            clean(&s.approvers.join(", ")),
            if s.fallback {
                "; fallback approvers"
            } else {
                ""
            },
            clean(&s.source),
        );
    }

    out.push_str("\nApprovals:\n");
    if t.approvals.is_empty() {
        out.push_str("  none\n");
    }
    for a in &t.approvals {
        let mut line = format!(
            "  {}  stage {}  {}  {} ({})",
            rfc3339_short(a.at),
            a.stage,
            a.decision,
            a.approver.as_deref().unwrap_or("-"),
            a.approver_slack_id
        );
        if let Some(duration) = &a.duration {
            let _ = write!(line, "  duration {duration}");
        }
        if let Some(comment) = &a.comment {
            let _ = write!(line, "  \"{comment}\"");
        }
        let _ = writeln!(out, "{}", clean(&line));
    }

    if !d.approver_messages.is_empty() {
        out.push_str("\nApprover DMs:\n");
        for m in &d.approver_messages {
            let line = format!("  {}  {} {}", m.approver_slack_id, m.channel, m.ts);
            let _ = writeln!(out, "{}", clean(&line));
        }
    }

    out.push_str("\nAudit:\n");
    if d.audit.is_empty() {
        out.push_str("  none\n");
    }
    for r in &d.audit {
        let line = format!(
            "  #{}  {}  {}  {}  {}",
            r.seq,
            rfc3339_short(r.at),
            r.actor,
            r.action,
            r.detail
        );
        let _ = writeln!(out, "{}", clean(&line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_both_forms_and_refuse_others() {
        assert_eq!(parse_id("T-42"), Ok(42));
        assert_eq!(parse_id("42"), Ok(42));
        assert!(parse_id("G-7").is_err());
        assert!(parse_id("T-0").is_err());
        assert!(parse_id("").is_err());
    }

    #[test]
    fn durations_read_as_humantime() {
        assert_eq!(signed_duration(8 * 3600), "8h");
        assert_eq!(signed_duration(90 * 60), "1h 30m");
        assert_eq!(signed_duration(-5), "-5s");
    }
}
