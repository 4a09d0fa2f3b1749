//! What an identity source knows at one moment: apps and accounts as plain
//! data, shared by the readers in `sources`, the diff and the store.

use serde::{Deserialize, Serialize};

/// Everything a source knows at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Apps the source knows about (an IdP's app catalog, a file's `apps`).
    #[serde(default)]
    pub apps: Vec<SourceApp>,
    #[serde(default)]
    pub accounts: Vec<Account>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceApp {
    /// Lowercase id, comparable with catalog app ids (`slug` makes one).
    pub id: String,
    pub name: String,
    /// Where a person can look at it (the IdP's admin page), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One account of one person in one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Lowercase app id; accounts of the source's own directory use the
    /// source's `app` setting.
    pub app: String,
    /// Stable id of the account within the app (not the email: emails change).
    pub id: String,
    /// Lowercased; `None` when the source does not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: AccountStatus,
    /// The person's manager, by lowercased email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Sorted, deduplicated entitlement names (groups, roles, teams).
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Where a person can look at this account, if the source gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Suspended,
    Deprovisioned,
    Pending,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deprovisioned => "deprovisioned",
            AccountStatus::Pending => "pending",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "active" => Some(AccountStatus::Active),
            "suspended" => Some(AccountStatus::Suspended),
            "deprovisioned" => Some(AccountStatus::Deprovisioned),
            "pending" => Some(AccountStatus::Pending),
            _ => None,
        }
    }

    /// Suspended or deprovisioned: the person should have no access.
    pub fn is_offboarded(self) -> bool {
        matches!(
            self,
            AccountStatus::Suspended | AccountStatus::Deprovisioned
        )
    }
}
