//! Views of `accessd reviews`: what the CLI promises to print, independent
//! of the store's types (a campaign with its counts, its progress per
//! reviewer, every item), and the auditor's report rows with their CSV.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::cli::output::csv_field;
use crate::reviews::item_ref;
use crate::store::{Campaign, ReviewItem};

/// `reviews list --json` (and `create --json`): a campaign with its counts.
#[derive(Debug, Serialize)]
pub(super) struct CampaignView {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) apps: Vec<String>,
    /// `owners`, `manager` or an email, as asked.
    pub(super) reviewer: String,
    pub(super) owner: String,
    pub(super) schedule: Option<String>,
    /// `open` or `closed`.
    pub(super) status: String,
    pub(super) due_at: DateTime<Utc>,
    pub(super) created_by: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) launched_at: Option<DateTime<Utc>>,
    pub(super) closed_at: Option<DateTime<Utc>>,
    /// Its own reminder interval in seconds (`null`: `[reviews]`'s).
    pub(super) remind_every_secs: Option<u64>,
    /// Its own closing-soon lead in seconds (`null`: `[reviews]`'s).
    pub(super) closing_soon_secs: Option<u64>,
    pub(super) reminders: bool,
    pub(super) items: usize,
    pub(super) decided: usize,
    pub(super) reviewers: usize,
}

impl CampaignView {
    pub(super) fn new(c: &Campaign, items: &[ReviewItem]) -> Self {
        let mut reviewers: Vec<&str> = items.iter().map(|i| i.reviewer_email.as_str()).collect();
        reviewers.sort_unstable();
        reviewers.dedup();
        CampaignView {
            id: c.reference(),
            name: c.name.clone(),
            apps: c.apps.clone(),
            reviewer: c.reviewer_rule.clone(),
            owner: c.owner_email.clone(),
            schedule: c.schedule.clone(),
            status: c.status.clone(),
            due_at: c.due_at,
            created_by: c.created_by.clone(),
            created_at: c.created_at,
            launched_at: c.launched_at,
            closed_at: c.closed_at,
            remind_every_secs: c.remind_every.map(|d| d.as_secs()),
            closing_soon_secs: c.closing_soon.map(|d| d.as_secs()),
            reminders: c.reminders,
            items: items.len(),
            decided: items.iter().filter(|i| i.decision.is_some()).count(),
            reviewers: reviewers.len(),
        }
    }
}

/// `reviews show --json`.
#[derive(Debug, Serialize)]
pub(super) struct CampaignDetail {
    #[serde(flatten)]
    pub(super) campaign: CampaignView,
    pub(super) kept: usize,
    pub(super) revoked: usize,
    pub(super) undecided: usize,
    pub(super) reviewers: Vec<ReviewerView>,
    pub(super) items: Vec<ItemView>,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct ReviewerView {
    pub(super) reviewer: String,
    pub(super) total: usize,
    pub(super) decided: usize,
    pub(super) kept: usize,
    pub(super) revoked: usize,
    pub(super) undecided: usize,
}

impl CampaignDetail {
    pub(super) fn new(c: &Campaign, items: &[ReviewItem]) -> Self {
        let mut by_reviewer: BTreeMap<&str, ReviewerView> = BTreeMap::new();
        for i in items {
            let r = by_reviewer
                .entry(i.reviewer_email.as_str())
                .or_insert_with(|| ReviewerView {
                    reviewer: i.reviewer_email.clone(),
                    ..ReviewerView::default()
                });
            r.total += 1;
            match decision(i) {
                "keep" => r.kept += 1,
                "revoke" => r.revoked += 1,
                _ => r.undecided += 1,
            }
            r.decided = r.kept + r.revoked;
        }
        let count = |d: &str| items.iter().filter(|i| decision(i) == d).count();
        let mut campaign = CampaignView::new(c, items);
        // `reviewers` is the list below; the count is its length.
        campaign.reviewers = by_reviewer.len();
        CampaignDetail {
            campaign,
            kept: count("keep"),
            revoked: count("revoke"),
            undecided: count("undecided"),
            reviewers: by_reviewer.into_values().collect(),
            items: items.iter().map(ItemView::from).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct ItemView {
    pub(super) id: String,
    pub(super) app: String,
    pub(super) source: String,
    pub(super) account_id: String,
    pub(super) email: Option<String>,
    pub(super) name: Option<String>,
    pub(super) entitlement: Option<String>,
    pub(super) reviewer: String,
    /// `keep`, `revoke` or `undecided`.
    pub(super) decision: &'static str,
    pub(super) comment: Option<String>,
    pub(super) decided_by: Option<String>,
    pub(super) decided_at: Option<DateTime<Utc>>,
    pub(super) reassigned_from: Option<String>,
    pub(super) reassign_reason: Option<String>,
    pub(super) revoke_outcome: Option<String>,
}

impl From<&ReviewItem> for ItemView {
    fn from(i: &ReviewItem) -> Self {
        ItemView {
            id: item_ref(i.id),
            app: i.app_id.clone(),
            source: i.source_id.clone(),
            account_id: i.account_id.clone(),
            email: i.email.clone(),
            name: i.name.clone(),
            entitlement: i.entitlement.clone(),
            reviewer: i.reviewer_email.clone(),
            decision: decision(i),
            comment: i.comment.clone(),
            decided_by: i.decided_by.clone(),
            decided_at: i.decided_at,
            reassigned_from: i.reassigned_from.clone(),
            reassign_reason: i.reassign_reason.clone(),
            revoke_outcome: i.revoke_outcome.clone(),
        }
    }
}

fn decision(i: &ReviewItem) -> &'static str {
    match i.decision.as_deref() {
        Some("keep") => "keep",
        Some("revoke") => "revoke",
        // The store only writes keep/revoke; anything else is not a decision
        // an auditor could rely on.
        _ => "undecided",
    }
}

/// The report's columns, in their documented (README) order; the CSV header
/// is these names and the JSON items use them as keys.
const REPORT_COLUMNS: [&str; 17] = [
    "campaign_id",
    "campaign_name",
    "item",
    "app",
    "source",
    "account_id",
    "email",
    "name",
    "entitlement",
    "reviewer",
    "decision",
    "comment",
    "decided_by",
    "decided_at",
    "reassigned_from",
    "reassign_reason",
    "revoke_outcome",
];

/// One report row; empty strings where there is nothing, so the CSV and
/// the JSON carry the same text.
#[derive(Debug, Serialize)]
pub(super) struct ReportRow {
    campaign_id: String,
    campaign_name: String,
    item: String,
    app: String,
    source: String,
    account_id: String,
    email: String,
    name: String,
    entitlement: String,
    reviewer: String,
    decision: &'static str,
    comment: String,
    decided_by: String,
    /// RFC 3339, UTC.
    decided_at: String,
    reassigned_from: String,
    reassign_reason: String,
    revoke_outcome: String,
}

impl ReportRow {
    pub(super) fn new(c: &Campaign, i: &ReviewItem) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        ReportRow {
            campaign_id: c.reference(),
            campaign_name: c.name.clone(),
            item: item_ref(i.id),
            app: i.app_id.clone(),
            source: i.source_id.clone(),
            account_id: i.account_id.clone(),
            email: text(&i.email),
            name: text(&i.name),
            entitlement: text(&i.entitlement),
            reviewer: i.reviewer_email.clone(),
            decision: decision(i),
            comment: text(&i.comment),
            decided_by: text(&i.decided_by),
            decided_at: i
                .decided_at
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default(),
            reassigned_from: text(&i.reassigned_from),
            reassign_reason: text(&i.reassign_reason),
            revoke_outcome: text(&i.revoke_outcome),
        }
    }

    /// The cells in `REPORT_COLUMNS` order.
    fn cells(&self) -> [&str; 17] {
        [
            &self.campaign_id,
            &self.campaign_name,
            &self.item,
            &self.app,
            &self.source,
            &self.account_id,
            &self.email,
            &self.name,
            &self.entitlement,
            &self.reviewer,
            self.decision,
            &self.comment,
            &self.decided_by,
            &self.decided_at,
            &self.reassigned_from,
            &self.reassign_reason,
            &self.revoke_outcome,
        ]
    }
}

/// `report --format json`.
#[derive(Debug, Serialize)]
pub(super) struct ReportDoc<'a> {
    pub(super) campaign: CampaignView,
    pub(super) summary: Summary,
    pub(super) items: &'a [ReportRow],
}

#[derive(Debug, Serialize)]
pub(super) struct Summary {
    total: usize,
    kept: usize,
    revoked: usize,
    undecided: usize,
    /// Revoke decisions the daemon has carried out (or scheduled through a grant).
    revoked_ok: usize,
    /// Revoke decisions a provisioner could not carry out.
    revoked_failed: usize,
    /// Revoke decisions handed to the app's owners as a manual task.
    revoked_manual: usize,
    /// Revoke decisions with no outcome recorded yet.
    revoke_pending: usize,
}

impl Summary {
    pub(super) fn new(items: &[ReviewItem]) -> Self {
        let count = |d: &str| items.iter().filter(|i| decision(i) == d).count();
        // The outcome line starts with its status word, as
        // `lifecycle::revoke::RevokeReport::outcome` writes it.
        let outcome = |prefix: Option<&str>| {
            items
                .iter()
                .filter(|i| decision(i) == "revoke")
                .filter(|i| match (prefix, i.revoke_outcome.as_deref()) {
                    (None, None) => true,
                    (Some(p), Some(o)) => o.starts_with(p),
                    _ => false,
                })
                .count()
        };
        Summary {
            total: items.len(),
            kept: count("keep"),
            revoked: count("revoke"),
            undecided: count("undecided"),
            revoked_ok: outcome(Some("revoked")),
            revoked_failed: outcome(Some("failed")),
            revoked_manual: outcome(Some("manual")),
            revoke_pending: outcome(None),
        }
    }
}

pub(super) fn to_csv(rows: &[ReportRow]) -> String {
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let fields: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    };
    line(&mut out, &REPORT_COLUMNS);
    for row in rows {
        line(&mut out, &row.cells());
    }
    out
}
