//! Action, block and callback ids of everything the bot renders: one place
//! so the views that render them, the router that matches them and the
//! handlers that read them agree.

pub const REQUEST_ACCESS: &str = "request_access";
pub const HOME_PAGE: &str = "home_page";
/// callback_id of every step of the request modal.
pub const REQUEST_MODAL: &str = "access_request";
pub const APP_BLOCK: &str = "app";
pub const APP_ACTION: &str = "app_select";
pub const ROLES_BLOCK: &str = "roles";
pub const ROLES_ACTION: &str = "roles_select";
pub const REASON_BLOCK: &str = "reason";
pub const REASON_ACTION: &str = "reason_input";
pub const REFERENCE_BLOCK: &str = "reference";
pub const REFERENCE_ACTION: &str = "reference_input";
pub const DURATION_BLOCK: &str = "duration";
pub const DURATION_ACTION: &str = "duration_input";
/// Followed by the 0-based stage index.
pub const APPROVERS_BLOCK_PREFIX: &str = "approvers_";
pub const APPROVERS_ACTION: &str = "approvers_select";
pub const APPROVE: &str = "approve_ticket";
pub const REJECT: &str = "reject_ticket";
pub const APPROVE_MODAL: &str = "approve_ticket";
pub const REJECT_MODAL: &str = "reject_ticket";
pub const COMMENT_BLOCK: &str = "comment";
pub const COMMENT_ACTION: &str = "comment_input";
pub const NUDGE: &str = "nudge_ticket";
pub const CANCEL: &str = "cancel_ticket";
pub const EXTEND: &str = "extend_access";
pub const EXTEND_MODAL: &str = "extend_access";
pub const RELEASE: &str = "release_access";
/// An approver revokes break-glass access from their DM.
pub const REVOKE: &str = "revoke_access";
pub const TASK_DONE: &str = "task_done";
pub const TASK_FAILED: &str = "task_failed";
pub const REMOVAL_DONE: &str = "removal_done";
pub const REMOVAL_FAILED: &str = "removal_failed";
/// The request modal's break-glass checkbox.
pub const URGENT_BLOCK: &str = "urgent";
pub const URGENT_ACTION: &str = "urgent_check";
/// Alert channel messages; the value is the alert's key.
pub const ALERT_ACK: &str = "alert_ack";
pub const ALERT_WATCH: &str = "alert_watch";
pub const ALERT_IGNORE: &str = "alert_ignore";
pub const ALERT_REVOKE: &str = "alert_revoke";
pub const ALERT_DEACTIVATE: &str = "alert_deactivate";
/// A link button: Slack still sends the click, which needs only an ack.
pub const ALERT_OPEN: &str = "alert_open";
/// The digest's per-kind button; the value is `kind|digest time`.
pub const DIGEST_ACK: &str = "digest_ack";
/// Review pages; the value is the item id.
pub const REVIEW_KEEP: &str = "review_keep";
pub const REVIEW_REVOKE: &str = "review_revoke";
/// An item's overflow menu: `comment:ID` or `reassign:ID`.
pub const REVIEW_MORE: &str = "review_more";
/// The launch DM's buttons; the value is the campaign id.
pub const REVIEW_KEEP_ALL: &str = "review_keep_all";
pub const REVIEW_REASSIGN_ALL: &str = "review_reassign_all";
pub const REVIEW_COMMENT_MODAL: &str = "review_comment";
pub const REVIEW_REASSIGN_MODAL: &str = "review_reassign";
pub const REVIEW_DECISION_BLOCK: &str = "review_decision";
pub const REVIEW_DECISION_ACTION: &str = "review_decision_select";
pub const REVIEWER_BLOCK: &str = "reviewer";
pub const REVIEWER_ACTION: &str = "reviewer_select";
pub const REASSIGN_REASON_BLOCK: &str = "reassign_reason";
pub const REASSIGN_REASON_ACTION: &str = "reassign_reason_input";
