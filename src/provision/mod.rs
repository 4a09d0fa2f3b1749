//! Provisioners: how approved access is granted in a target app and revoked
//! when it ends. Each call carries an idempotency key that stays the same for
//! every retry of one grant or revoke, and answers with an [`Outcome`] that
//! tells the caller whether to record, retry, or give up.

pub mod command;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Grant,
    Revoke,
}

/// The person access is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub email: String,
    pub slack_id: String,
}

/// One grant or revoke, serialised exactly as DESIGN.md §4's stdin document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub action: Action,
    pub idempotency_key: String,
    pub ticket: String,
    pub app: String,
    pub role: String,
    pub entitlement: String,
    pub user: Person,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Applied,
    /// Nothing to do: a grant already present, a revoke already absent.
    AlreadyInState,
    /// Worth retrying (timeouts, rate limits, temporary errors).
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Will not succeed by retrying; a person must look.
    Permanent { message: String },
}

pub trait Provisioner: Send + Sync {
    fn provision(&self, request: &Request) -> impl std::future::Future<Output = Outcome> + Send;
}
