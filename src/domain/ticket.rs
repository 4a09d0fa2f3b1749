//! The ticket state machine: which transitions exist and what a decision does
//! to a ticket. Every transition is applied by the store in one transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::policy::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Provisioning,
    Active,
    Expired,
    Revoked,
    Rejected,
    Cancelled,
    Stale,
    Failed,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Pending,
        Status::Approved,
        Status::Provisioning,
        Status::Active,
        Status::Expired,
        Status::Revoked,
        Status::Rejected,
        Status::Cancelled,
        Status::Stale,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Provisioning => "provisioning",
            Status::Active => "active",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::Stale => "stale",
            Status::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Still waiting for approvers.
    pub fn is_pending(self) -> bool {
        self == Status::Pending
    }

    /// Nothing will happen to the ticket any more (`failed` can be retried
    /// by an admin, so it is not final).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Expired
                | Status::Revoked
                | Status::Rejected
                | Status::Cancelled
                | Status::Stale
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a ticket asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// New access.
    Request,
    /// More time on an active grant (its parent ticket's); never provisions.
    Extension,
    /// Urgent access granted at once, approvers told after the fact.
    BreakGlass,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Extension => "extension",
            Kind::BreakGlass => "break_glass",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        [Kind::Request, Kind::Extension, Kind::BreakGlass]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }

    pub fn parse(text: &str) -> Option<Verdict> {
        match text {
            "approve" => Some(Verdict::Approve),
            "reject" => Some(Verdict::Reject),
            _ => None,
        }
    }
}

/// What one decision did to a pending ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Counted; the stage still needs more approvals.
    Counted { approvals: usize, required: usize },
    /// The stage is met and the next one (0-based) is asked now.
    NextStage { stage: usize },
    /// Every stage is met.
    Approved,
    /// One rejection ends the ticket.
    Rejected,
}

impl Transition {
    /// The ticket's status after this transition.
    pub fn status(self) -> Status {
        match self {
            Transition::Counted { .. } | Transition::NextStage { .. } => Status::Pending,
            Transition::Approved => Status::Approved,
            Transition::Rejected => Status::Rejected,
        }
    }
}

/// Applies a verdict to a ticket at `stage` whose stage now holds
/// `approvals_in_stage` distinct approvals (the new one included). A ticket
/// that is no longer pending is returned as the error: nothing changes.
pub fn decide(
    status: Status,
    stage: usize,
    plan: &Plan,
    approvals_in_stage: usize,
    verdict: Verdict,
) -> Result<Transition, Status> {
    if !status.is_pending() {
        return Err(status);
    }
    if verdict == Verdict::Reject {
        return Ok(Transition::Rejected);
    }
    let required = plan.stages.get(stage).map_or(1, |s| s.required.max(1));
    if approvals_in_stage < required {
        return Ok(Transition::Counted {
            approvals: approvals_in_stage,
            required,
        });
    }
    if stage + 1 < plan.stages.len() {
        Ok(Transition::NextStage { stage: stage + 1 })
    } else {
        Ok(Transition::Approved)
    }
}

/// Only a pending ticket can be cancelled (by its requester).
pub fn cancel(status: Status) -> Result<Status, Status> {
    if status.is_pending() {
        Ok(Status::Cancelled)
    } else {
        Err(status)
    }
}

/// Where an extension approved at `now` moves the access's end: `duration`
/// past the later of now and the current end, but never more than `cap`
/// after now (every cap is measured from the approval).
pub fn extended_end(
    current: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    duration_secs: i64,
    cap_secs: u64,
) -> DateTime<Utc> {
    let base = current.map_or(now, |end| end.max(now));
    let cap = chrono::Duration::seconds(i64::try_from(cap_secs).unwrap_or(i64::MAX / 1000));
    let wanted = base + chrono::Duration::seconds(duration_secs.max(0));
    wanted.min(now + cap)
}

/// `T-42` ⇄ 42.
pub fn ticket_ref(id: i64) -> String {
    format!("T-{id}")
}

pub fn parse_ticket_ref(text: &str) -> Option<i64> {
    let digits = text
        .trim()
        .trim_start_matches(['T', 't'])
        .trim_start_matches('-');
    digits.parse().ok().filter(|id: &i64| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::StagePlan;

    fn plan(required: &[usize]) -> Plan {
        Plan {
            stages: required
                .iter()
                .map(|r| StagePlan {
                    approvers: vec!["a@x".into(), "b@x".into(), "c@x".into()],
                    required: *r,
                    fallback: false,
                    source: "test".into(),
                })
                .collect(),
            auto_approve: false,
            max_duration_secs: 3600,
        }
    }

    type Case = (
        &'static str,
        Status,
        usize,
        &'static [usize],
        usize,
        Verdict,
        Result<Transition, Status>,
    );

    #[test]
    fn decisions_move_the_ticket_as_the_plan_says() {
        use Transition::*;
        let cases: &[Case] = &[
            (
                "one of one",
                Status::Pending,
                0,
                &[1],
                1,
                Verdict::Approve,
                Ok(Approved),
            ),
            (
                "one of two",
                Status::Pending,
                0,
                &[2],
                1,
                Verdict::Approve,
                Ok(Counted {
                    approvals: 1,
                    required: 2,
                }),
            ),
            (
                "two of two",
                Status::Pending,
                0,
                &[2],
                2,
                Verdict::Approve,
                Ok(Approved),
            ),
            (
                "first of two stages",
                Status::Pending,
                0,
                &[1, 1],
                1,
                Verdict::Approve,
                Ok(NextStage { stage: 1 }),
            ),
            (
                "last of two stages",
                Status::Pending,
                1,
                &[1, 1],
                1,
                Verdict::Approve,
                Ok(Approved),
            ),
            (
                "reject ends it",
                Status::Pending,
                0,
                &[2, 1],
                1,
                Verdict::Reject,
                Ok(Rejected),
            ),
            (
                "approved is final",
                Status::Approved,
                0,
                &[1],
                2,
                Verdict::Approve,
                Err(Status::Approved),
            ),
            (
                "rejected is final",
                Status::Rejected,
                0,
                &[1],
                1,
                Verdict::Reject,
                Err(Status::Rejected),
            ),
            (
                "cancelled is final",
                Status::Cancelled,
                0,
                &[1],
                1,
                Verdict::Approve,
                Err(Status::Cancelled),
            ),
        ];
        for (name, status, stage, required, approvals, verdict, expected) in cases {
            assert_eq!(
                decide(*status, *stage, &plan(required), *approvals, *verdict),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn only_pending_tickets_cancel() {
        assert_eq!(cancel(Status::Pending), Ok(Status::Cancelled));
        for status in Status::ALL.into_iter().filter(|s| *s != Status::Pending) {
            assert_eq!(cancel(status), Err(status));
        }
    }

    #[test]
    fn statuses_and_refs_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(parse_ticket_ref("T-42"), Some(42));
        assert_eq!(parse_ticket_ref("42"), Some(42));
        assert_eq!(parse_ticket_ref("t-7"), Some(7));
        assert_eq!(parse_ticket_ref("T-0"), None);
        assert_eq!(parse_ticket_ref("G-3"), None);
        assert_eq!(ticket_ref(42), "T-42");
        for kind in [Kind::Request, Kind::Extension, Kind::BreakGlass] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }
}
