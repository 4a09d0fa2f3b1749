//! Snapshot diffs: what changed between a source's last good snapshot and a
//! new one, as typed [`Change`]s, and the mass-change guard that holds a
//! diff which removes too much at once. Pure: the caller decides what to
//! store and alert.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::domain::snapshot::{Account, AccountStatus, Snapshot, SourceApp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    AccountAdded {
        account: Account,
    },
    AccountRemoved {
        account: Account,
    },
    StatusChanged {
        account: Account,
        from: AccountStatus,
    },
    EntitlementAdded {
        account: Account,
        entitlement: String,
    },
    EntitlementRemoved {
        account: Account,
        entitlement: String,
    },
    /// Email, name, manager or link changed (status and entitlements have
    /// their own changes): stored, never alerted.
    AccountUpdated {
        account: Account,
    },
    AppDiscovered {
        app: SourceApp,
    },
}

/// Counts of each kind of change, for logs and `accessd sources sync`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub accounts_added: usize,
    pub accounts_removed: usize,
    pub status_changed: usize,
    pub entitlements_added: usize,
    pub entitlements_removed: usize,
    pub accounts_updated: usize,
    pub apps_discovered: usize,
}

impl Summary {
    pub fn of(changes: &[Change]) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            match c {
                Change::AccountAdded { .. } => s.accounts_added += 1,
                Change::AccountRemoved { .. } => s.accounts_removed += 1,
                Change::StatusChanged { .. } => s.status_changed += 1,
                Change::EntitlementAdded { .. } => s.entitlements_added += 1,
                Change::EntitlementRemoved { .. } => s.entitlements_removed += 1,
                Change::AccountUpdated { .. } => s.accounts_updated += 1,
                Change::AppDiscovered { .. } => s.apps_discovered += 1,
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        *self == Summary::default()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "+{} accounts, -{} accounts, {} status changes, +{} / -{} entitlements, {} new apps",
            self.accounts_added,
            self.accounts_removed,
            self.status_changed,
            self.entitlements_added,
            self.entitlements_removed,
            self.apps_discovered
        )?;
        if self.accounts_updated > 0 {
            write!(f, ", {} accounts' details updated", self.accounts_updated)?;
        }
        Ok(())
    }
}

/// Every change from `old` to `new`, accounts keyed by (app, id). Order:
/// apps, then accounts in `new`'s order, then removals in `old`'s order —
/// stable, so alerts come out in the order the source lists people.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Change> {
    let mut changes = Vec::new();
    let old_apps = app_ids(old);
    for app in apps_of(new) {
        if !old_apps.contains(app.id.as_str()) {
            changes.push(Change::AppDiscovered { app });
        }
    }
    // Old accounts by key, with a seen flag per position: one hash lookup
    // per new account, and removals are the unseen positions.
    let before: HashMap<(&str, &str), usize> = old
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| ((a.app.as_str(), a.id.as_str()), i))
        .collect();
    let mut seen = vec![false; old.accounts.len()];
    for account in &new.accounts {
        let Some(&at) = before.get(&(account.app.as_str(), account.id.as_str())) else {
            changes.push(Change::AccountAdded {
                account: account.clone(),
            });
            continue;
        };
        seen[at] = true;
        let previous = &old.accounts[at];
        if previous.status != account.status {
            changes.push(Change::StatusChanged {
                account: account.clone(),
                from: previous.status,
            });
        }
        if previous.entitlements != account.entitlements {
            entitlement_changes(previous, account, &mut changes);
        }
        if previous.email != account.email
            || previous.name != account.name
            || previous.manager != account.manager
            || previous.url != account.url
        {
            changes.push(Change::AccountUpdated {
                account: account.clone(),
            });
        }
    }
    for (account, _) in old.accounts.iter().zip(&seen).filter(|(_, seen)| !**seen) {
        changes.push(Change::AccountRemoved {
            account: account.clone(),
        });
    }
    changes
}

/// Entitlement changes of one account. Both lists are sorted
/// (`Snapshot::normalized`): one merge pass.
fn entitlement_changes(previous: &Account, account: &Account, changes: &mut Vec<Change>) {
    let (mut i, mut j) = (0, 0);
    let (a, b) = (&previous.entitlements, &account.entitlements);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                changes.push(Change::EntitlementRemoved {
                    account: account.clone(),
                    entitlement: x.clone(),
                });
                i += 1;
            }
            (Some(x), None) => {
                changes.push(Change::EntitlementRemoved {
                    account: account.clone(),
                    entitlement: x.clone(),
                });
                i += 1;
            }
            (_, Some(y)) => {
                changes.push(Change::EntitlementAdded {
                    account: account.clone(),
                    entitlement: y.clone(),
                });
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// Every app a snapshot mentions: listed ones first, then those only seen
/// on accounts (named by their id).
pub fn apps_of(snapshot: &Snapshot) -> Vec<SourceApp> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for app in &snapshot.apps {
        if seen.insert(&app.id) {
            out.push(app.clone());
        }
    }
    for account in &snapshot.accounts {
        if seen.insert(&account.app) {
            out.push(SourceApp {
                id: account.app.clone(),
                name: account.app.clone(),
                url: None,
            });
        }
    }
    out
}

fn app_ids(snapshot: &Snapshot) -> HashSet<&str> {
    snapshot
        .apps
        .iter()
        .map(|a| a.id.as_str())
        .chain(snapshot.accounts.iter().map(|a| a.app.as_str()))
        .collect()
}

/// A diff that removes more than `share` (0, 1] of the accounts at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MassRemoval {
    pub removed: usize,
    pub before: usize,
}

impl MassRemoval {
    pub fn check(before: usize, changes: &[Change], share: f64) -> Option<MassRemoval> {
        let removed = changes
            .iter()
            .filter(|c| matches!(c, Change::AccountRemoved { .. }))
            .count();
        // Compare counts, not floats of floats: removed / before > share.
        (before > 0 && removed as f64 > share * before as f64)
            .then_some(MassRemoval { removed, before })
    }
}

impl std::fmt::Display for MassRemoval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} accounts ({:.0} %) gone at once",
            self.removed,
            self.before,
            100.0 * self.removed as f64 / self.before.max(1) as f64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(app: &str, id: &str, status: AccountStatus, ents: &[&str]) -> Account {
        Account {
            app: app.into(),
            id: id.into(),
            email: Some(format!("{id}@example.com")),
            name: None,
            status,
            manager: None,
            entitlements: ents.iter().map(|e| e.to_string()).collect(),
            url: None,
        }
    }

    fn snap(accounts: Vec<Account>) -> Snapshot {
        Snapshot {
            apps: vec![],
            accounts,
        }
    }

    use AccountStatus::*;

    #[test]
    fn identical_snapshots_have_no_changes() {
        let s = snap(vec![acc("github", "ann", Active, &["a", "b"])]);
        assert!(diff(&s, &s).is_empty());
    }

    #[test]
    fn adds_removes_status_and_entitlements() {
        let old = snap(vec![
            acc("github", "ann", Active, &["a", "c"]),
            acc("github", "bob", Active, &[]),
            acc("slack", "ann", Active, &[]),
        ]);
        let new = snap(vec![
            acc("github", "ann", Suspended, &["b", "c", "d"]),
            acc("slack", "ann", Active, &[]),
            acc("slack", "zed", Pending, &[]),
        ]);
        let changes = diff(&old, &new);
        let kinds: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::AccountAdded { account } => format!("+{}/{}", account.app, account.id),
                Change::AccountRemoved { account } => format!("-{}/{}", account.app, account.id),
                Change::StatusChanged { account, from } => {
                    format!("{}:{:?}->{:?}", account.id, from, account.status)
                }
                Change::EntitlementAdded {
                    account,
                    entitlement,
                } => {
                    format!("{}+{entitlement}", account.id)
                }
                Change::EntitlementRemoved {
                    account,
                    entitlement,
                } => {
                    format!("{}-{entitlement}", account.id)
                }
                Change::AccountUpdated { account } => format!("~{}", account.id),
                Change::AppDiscovered { app } => format!("app:{}", app.id),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ann:Active->Suspended",
                "ann-a",
                "ann+b",
                "ann+d",
                "+slack/zed",
                "-github/bob"
            ]
        );
        let s = Summary::of(&changes);
        assert_eq!(
            (s.accounts_added, s.accounts_removed, s.status_changed),
            (1, 1, 1)
        );
        assert_eq!((s.entitlements_added, s.entitlements_removed), (2, 1));
    }

    #[test]
    fn changed_details_are_an_update_so_the_stored_manager_follows() {
        let old = snap(vec![acc("hr", "ann", Active, &[])]);
        let mut moved = acc("hr", "ann", Active, &[]);
        moved.manager = Some("bob@example.com".into());
        let changes = diff(&old, &snap(vec![moved.clone()]));
        assert_eq!(changes, [Change::AccountUpdated { account: moved }]);
        assert_eq!(Summary::of(&changes).accounts_updated, 1);
    }

    #[test]
    fn apps_are_discovered_from_the_list_and_from_accounts() {
        let old = snap(vec![acc("github", "ann", Active, &[])]);
        let mut new = snap(vec![
            acc("github", "ann", Active, &[]),
            acc("notion", "ann", Active, &[]),
        ]);
        new.apps.push(SourceApp {
            id: "dropbox".into(),
            name: "Dropbox".into(),
            url: None,
        });
        let apps: Vec<String> = diff(&old, &new)
            .into_iter()
            .filter_map(|c| match c {
                Change::AppDiscovered { app } => Some(app.id),
                _ => None,
            })
            .collect();
        assert_eq!(apps, ["dropbox", "notion"]);
    }

    #[test]
    fn the_guard_trips_only_above_the_share() {
        let old = snap(
            (0..10)
                .map(|i| acc("a", &i.to_string(), Active, &[]))
                .collect(),
        );
        let two_gone = snap(old.accounts[2..].to_vec());
        let three_gone = snap(old.accounts[3..].to_vec());
        assert_eq!(MassRemoval::check(10, &diff(&old, &two_gone), 0.2), None);
        let held = MassRemoval::check(10, &diff(&old, &three_gone), 0.2).unwrap();
        assert_eq!((held.removed, held.before), (3, 10));
        assert_eq!(held.to_string(), "3 of 10 accounts (30 %) gone at once");
        assert_eq!(MassRemoval::check(0, &[], 0.2), None);
    }
}
