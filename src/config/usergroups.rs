//! Members of the Slack user groups a config names (`usergroup:HANDLE`), as
//! last read from Slack. The identity layer writes it; the policy reads it
//! through [`Config::expand`](super::Config::expand) and friends. A group
//! not read within [`USERGROUP_FRESH`] names nobody: a click is never
//! authorised on membership older than that.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How old a group's member list may be when a click is authorised.
pub const USERGROUP_FRESH: Duration = Duration::from_secs(60);

/// Cheap to clone; every clone shares one table, so a reloaded config keeps
/// what the running one read.
#[derive(Clone, Default)]
pub struct UserGroups {
    read: Arc<RwLock<HashMap<String, Members>>>,
}

struct Members {
    emails: BTreeSet<String>,
    at: Instant,
}

impl fmt::Debug for UserGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let handles: Vec<String> = self.table().keys().cloned().collect();
        f.debug_struct("UserGroups")
            .field("handles", &handles)
            .finish()
    }
}

impl UserGroups {
    fn table(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Members>> {
        // A writer that panicked leaves a consistent map (each write is one insert).
        self.read.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The members' emails, read within [`USERGROUP_FRESH`]; else nobody.
    pub fn emails(&self, handle: &str) -> BTreeSet<String> {
        match self.table().get(handle) {
            Some(m) if m.at.elapsed() <= USERGROUP_FRESH => m.emails.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// Which of `handles` were not read within `max_age`.
    pub fn older_than(&self, handles: &[String], max_age: Duration) -> Vec<String> {
        let table = self.table();
        handles
            .iter()
            .filter(|h| table.get(*h).is_none_or(|m| m.at.elapsed() > max_age))
            .cloned()
            .collect()
    }

    /// Records a member list read at `at` (lowercased emails).
    pub fn set(&self, handle: &str, emails: BTreeSet<String>, at: Instant) {
        let mut table = self.read.write().unwrap_or_else(|e| e.into_inner());
        table.insert(handle.to_string(), Members { emails, at });
    }

    /// Drops what is known of `handle` (its read failed): it names nobody.
    pub fn forget(&self, handle: &str) {
        let mut table = self.read.write().unwrap_or_else(|e| e.into_inner());
        table.remove(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_names_its_members_only_while_fresh() {
        let groups = UserGroups::default();
        let ann: BTreeSet<String> = ["ann@example.com".to_string()].into();
        groups.set("sre", ann.clone(), Instant::now());
        assert_eq!(groups.emails("sre"), ann);
        assert!(groups
            .older_than(&["sre".into()], USERGROUP_FRESH)
            .is_empty());

        let stale = Instant::now()
            .checked_sub(USERGROUP_FRESH + Duration::from_secs(1))
            .expect("the clock is past a minute");
        groups.set("sre", ann, stale);
        assert!(groups.emails("sre").is_empty());
        assert_eq!(
            groups
                .older_than(&["sre".into(), "ops".into()], USERGROUP_FRESH)
                .len(),
            2
        );

        groups.forget("sre");
        assert!(groups.emails("sre").is_empty());
    }
}
