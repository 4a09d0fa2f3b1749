//! Every durable job kind by name: the vocabulary the store records, the
//! handlers schedule and `lifecycle::run_job` dispatches on.

/// Subject `T-42`: run the provisioner for the ticket's pending grants.
pub const PROVISION: &str = "provision";
/// Subject `G-7`: end one grant; payload `{"reason": …, "by": …}`.
pub const REVOKE: &str = "revoke";
/// Subject `T-42`: tell the requester the access ends soon.
pub const EXPIRY_WARNING: &str = "expiry_warning";
/// Subject `T-42`: remind the current stage's approvers.
pub const REMIND: &str = "remind";
/// Subject `T-42`: end the ticket as stale if still pending.
pub const STALE: &str = "stale";
/// The daily findings digest.
pub const FINDINGS_DIGEST: &str = "findings_digest";
/// Post the audit log's head to `[audit] anchor_channel`.
pub const AUDIT_ANCHOR: &str = "audit_anchor";
/// Subject `G-7`: ask the owners again to remove a manual grant by hand.
pub const REMOVAL_REMIND: &str = "removal_remind";
/// Revoke an account an alert's Revoke button asked to end.
pub const ACCOUNT_REVOKE: &str = "account_revoke";
/// Subject: an alert key; deactivate its Slack account through SCIM.
pub const SLACK_DEACTIVATE: &str = "slack_deactivate";

/// Access review campaign jobs; every kind starts with [`review::PREFIX`].
pub mod review {
    pub const PREFIX: &str = "review_";
    pub const LAUNCH: &str = "review_launch";
    pub const REMIND: &str = "review_remind";
    pub const CLOSING_SOON: &str = "review_closing_soon";
    pub const CLOSE: &str = "review_close";
    pub const REVOKE: &str = "review_revoke";
    /// Subject: the `[[reviews.schedules]]` name.
    pub const SCHEDULED: &str = "review_scheduled";

    /// Whether `kind` belongs to a review campaign.
    pub fn is_review(kind: &str) -> bool {
        kind.starts_with(PREFIX)
    }
}
