//! The `okta` source: Okta users (every status), group memberships as
//! entitlements, and the app catalog with each active app's assignments,
//! read through the Okta Management API with `SSWS` token auth.
//!
//! Calls, each paged with `limit=200` and `Link: rel="next"`:
//! - `GET /api/v1/users` lists every user *except* DEPROVISIONED ones, so a
//!   second listing, `GET /api/v1/users?filter=status eq "DEPROVISIONED"`,
//!   adds those (the `filter` parameter documents `status` equality);
//! - `GET /api/v1/groups`, then `GET /api/v1/groups/{id}/users` per group:
//!   the group's `profile.name` becomes an entitlement of each member;
//! - `GET /api/v1/apps`, then `GET /api/v1/apps/{id}/users` per ACTIVE app:
//!   one account per assigned user in app `slug(label)`.
//!
//! Manager: `profile.managerId` when it is the id of an Okta user (their
//! email is used) or itself an email, else `profile.manager` when it is an
//! email. Okta's base profile defines `manager` as a display name, which
//! cannot be keyed on, so it only counts when an HR import put an email there.

use std::collections::{BTreeMap, HashMap};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::http::Api;
use super::{slug, Account, AccountStatus, Snapshot, SourceApp, SourceError};
use crate::config::Secret;

const PAGE: &str = "200";

pub struct OktaSource {
    api: Api,
    /// The org URL without a trailing `/`, for admin-page links.
    org: String,
    app: String,
}

impl std::fmt::Debug for OktaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaSource")
            .field("org", &self.org)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct User {
    id: String,
    status: String,
    #[serde(default)]
    profile: Profile,
}

/// Okta profile values may be null, and custom schemas can change a
/// property's type, so the ones read here are taken as loose JSON.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Profile {
    login: Option<Value>,
    email: Option<Value>,
    first_name: Option<Value>,
    last_name: Option<Value>,
    display_name: Option<Value>,
    manager_id: Option<Value>,
    manager: Option<Value>,
}

#[derive(Deserialize)]
struct Group {
    id: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    profile: GroupProfile,
}

#[derive(Deserialize)]
struct GroupProfile {
    name: String,
}

#[derive(Deserialize)]
struct Member {
    id: String,
}

#[derive(Deserialize)]
struct App {
    id: String,
    /// The integration's key (`salesforce`, `oidc_client`), part of the
    /// admin page's path.
    name: Option<String>,
    label: String,
    status: Option<String>,
}

#[derive(Deserialize)]
struct AppUser {
    id: String,
    status: Option<String>,
    credentials: Option<AppCredentials>,
    profile: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppCredentials {
    user_name: Option<String>,
}

impl OktaSource {
    /// `url` is the org URL, e.g. `https://example.okta.com`.
    pub fn new(url: &str, token: Secret, app: String) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let api = Api::new("Okta", url, "SSWS", token, headers)?;
        let org = origin_url(api.base());
        Ok(Self { api, org, app })
    }

    pub async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let users = self.users().await?;
        let mut accounts: BTreeMap<String, Account> = users
            .values()
            .map(|u| Ok((u.id.clone(), self.directory_account(u, &users)?)))
            .collect::<Result<_, SourceError>>()?;
        self.add_group_entitlements(&mut accounts).await?;

        let mut snapshot = Snapshot {
            apps: Vec::new(),
            accounts: accounts.into_values().collect(),
        };
        self.add_apps(&users, &mut snapshot).await?;
        Ok(snapshot)
    }

    /// Every user, DEPROVISIONED included, by id.
    async fn users(&self) -> Result<HashMap<String, User>, SourceError> {
        let listed: Vec<User> = self
            .api
            .get_all(
                self.api
                    .endpoint(&["api", "v1", "users"], &[("limit", PAGE)]),
            )
            .await?;
        let deprovisioned: Vec<User> = self
            .api
            .get_all(self.api.endpoint(
                &["api", "v1", "users"],
                &[("filter", "status eq \"DEPROVISIONED\""), ("limit", PAGE)],
            ))
            .await?;
        // A user deprovisioned between the two calls is in both; the second
        // listing is the newer word.
        Ok(listed
            .into_iter()
            .chain(deprovisioned)
            .map(|u| (u.id.clone(), u))
            .collect())
    }

    fn directory_account(
        &self,
        user: &User,
        users: &HashMap<String, User>,
    ) -> Result<Account, SourceError> {
        Ok(Account {
            app: self.app.clone(),
            id: user.id.clone(),
            email: email_of(user),
            name: name_of(user),
            status: user_status(&user.id, &user.status)?,
            manager: manager_of(user, users),
            entitlements: Vec::new(),
            url: Some(format!("{}/admin/user/profile/view/{}", self.org, user.id)),
        })
    }

    /// Group names onto the members' directory accounts. Okta's built-in
    /// `Everyone` group holds every user and says nothing about access, so
    /// BUILT_IN groups are not listed.
    async fn add_group_entitlements(
        &self,
        accounts: &mut BTreeMap<String, Account>,
    ) -> Result<(), SourceError> {
        let groups: Vec<Group> = self
            .api
            .get_all(
                self.api
                    .endpoint(&["api", "v1", "groups"], &[("limit", PAGE)]),
            )
            .await?;
        for group in groups {
            if group.kind.as_deref() == Some("BUILT_IN") {
                continue;
            }
            let members: Vec<Member> = self
                .api
                .get_all(self.api.endpoint(
                    &["api", "v1", "groups", &group.id, "users"],
                    &[("limit", PAGE)],
                ))
                .await?;
            for member in members {
                // A user created after the user listing is picked up next sync.
                if let Some(account) = accounts.get_mut(&member.id) {
                    account.entitlements.push(group.profile.name.clone());
                }
            }
        }
        Ok(())
    }

    /// The app catalog, and one account per assignment of each ACTIVE app.
    async fn add_apps(
        &self,
        users: &HashMap<String, User>,
        snapshot: &mut Snapshot,
    ) -> Result<(), SourceError> {
        let apps: Vec<App> = self
            .api
            .get_all(
                self.api
                    .endpoint(&["api", "v1", "apps"], &[("limit", PAGE)]),
            )
            .await?;
        // Two app instances may share a label and so an id; their
        // assignments merge into one account per user.
        let mut assigned: BTreeMap<(String, String), Account> = BTreeMap::new();
        for app in apps {
            let app_id = slug(&app.label);
            if app_id.is_empty() {
                continue;
            }
            let admin = match &app.name {
                Some(name) => format!("{}/admin/app/{name}/instance/{}/", self.org, app.id),
                None => format!("{}/admin/apps/active", self.org),
            };
            snapshot.apps.push(SourceApp {
                id: app_id.clone(),
                name: app.label.clone(),
                url: Some(admin),
            });
            if app.status.as_deref() != Some("ACTIVE") {
                continue;
            }
            let app_users: Vec<AppUser> = self
                .api
                .get_all(
                    self.api
                        .endpoint(&["api", "v1", "apps", &app.id, "users"], &[("limit", PAGE)]),
                )
                .await?;
            for au in app_users {
                let account = self.app_account(&app_id, &au, users)?;
                match assigned.entry((app_id.clone(), au.id.clone())) {
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(account);
                    }
                    std::collections::btree_map::Entry::Occupied(mut slot) => {
                        slot.get_mut().entitlements.extend(account.entitlements);
                    }
                }
            }
        }
        // An app labelled like the directory itself would collide with the
        // directory accounts; its roles join those accounts instead.
        let own = self.app.trim().to_lowercase();
        for ((app_id, user_id), account) in assigned {
            let directory = if app_id == own {
                snapshot.accounts.iter_mut().find(|a| a.id == user_id)
            } else {
                None
            };
            match directory {
                Some(existing) => existing.entitlements.extend(account.entitlements),
                None => snapshot.accounts.push(account),
            }
        }
        Ok(())
    }

    fn app_account(
        &self,
        app_id: &str,
        au: &AppUser,
        users: &HashMap<String, User>,
    ) -> Result<Account, SourceError> {
        let user = users.get(&au.id);
        let status = match (user, au.status.as_deref()) {
            (Some(user), _) => user_status(&user.id, &user.status)?,
            (None, Some(status)) => app_user_status(&au.id, status)?,
            (None, None) => AccountStatus::Pending,
        };
        let user_name = au.credentials.as_ref().and_then(|c| c.user_name.clone());
        let email = user
            .and_then(email_of)
            .or_else(|| user_name.filter(|n| n.contains('@')));
        Ok(Account {
            app: app_id.to_string(),
            id: au.id.clone(),
            email,
            name: user.and_then(name_of),
            status,
            manager: user.and_then(|u| manager_of(u, users)),
            entitlements: roles(au.profile.as_ref()),
            url: Some(format!("{}/admin/user/profile/view/{}", self.org, au.id)),
        })
    }
}

/// `scheme://host[:port]` of the configured org URL.
fn origin_url(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn text(value: &Option<Value>) -> Option<String> {
    value
        .as_ref()
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn as_email(value: Option<String>) -> Option<String> {
    value.filter(|v| v.contains('@') && !v.contains(char::is_whitespace))
}

fn email_of(user: &User) -> Option<String> {
    as_email(text(&user.profile.email)).or_else(|| as_email(text(&user.profile.login)))
}

fn name_of(user: &User) -> Option<String> {
    let p = &user.profile;
    match (text(&p.first_name), text(&p.last_name)) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        (first, last) => first.or(last).or_else(|| text(&p.display_name)),
    }
}

fn manager_of(user: &User, users: &HashMap<String, User>) -> Option<String> {
    let id = text(&user.profile.manager_id);
    if let Some(manager) = id.as_ref().and_then(|id| users.get(id)) {
        return email_of(manager);
    }
    as_email(id).or_else(|| as_email(text(&user.profile.manager)))
}

/// An unknown status fails the fetch: guessing could raise (or hide) an
/// offboarding alert.
fn user_status(id: &str, status: &str) -> Result<AccountStatus, SourceError> {
    Ok(match status {
        "ACTIVE" | "PASSWORD_EXPIRED" | "LOCKED_OUT" | "RECOVERY" => AccountStatus::Active,
        "SUSPENDED" => AccountStatus::Suspended,
        "DEPROVISIONED" => AccountStatus::Deprovisioned,
        "STAGED" | "PROVISIONED" => AccountStatus::Pending,
        other => {
            return Err(SourceError::Invalid(format!(
                "Okta user {id} has an unknown status {other:?}"
            )))
        }
    })
}

/// The assignment's own status, used only for a user missing from the user
/// listings (created or deleted in between).
fn app_user_status(id: &str, status: &str) -> Result<AccountStatus, SourceError> {
    Ok(match status {
        "ACTIVE" | "PROVISIONED" | "IMPLICIT" => AccountStatus::Active,
        "INACTIVE" | "DEPROVISIONED" => AccountStatus::Deprovisioned,
        "STAGED" | "PENDING" => AccountStatus::Pending,
        other => {
            return Err(SourceError::Invalid(format!(
                "Okta app user {id} has an unknown status {other:?}"
            )))
        }
    })
}

/// `profile.role` of an app assignment, a string or a list of strings
/// (apps with multi-valued roles), as the account's entitlements.
fn roles(profile: Option<&Value>) -> Vec<String> {
    match profile.and_then(|p| p.get("role")) {
        Some(Value::String(role)) => vec![role.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(id: &str, profile: Value) -> User {
        serde_json::from_value(json!({ "id": id, "status": "ACTIVE", "profile": profile })).unwrap()
    }

    #[test]
    fn managers_by_okta_id_or_email_only() {
        let boss = user("00uboss", json!({ "login": "boss@example.com" }));
        let users: HashMap<String, User> = [("00uboss".to_string(), boss)].into();
        let by_id = user("00u1", json!({ "managerId": "00uboss" }));
        assert_eq!(
            manager_of(&by_id, &users).as_deref(),
            Some("boss@example.com")
        );
        let by_email = user("00u2", json!({ "managerId": "Mia@Example.com" }));
        assert_eq!(
            manager_of(&by_email, &users).as_deref(),
            Some("Mia@Example.com")
        );
        let display_name = user("00u3", json!({ "manager": "Mia Wong", "managerId": 42 }));
        assert_eq!(manager_of(&display_name, &users), None);
        let manager_email = user("00u4", json!({ "manager": "mia@example.com" }));
        assert_eq!(
            manager_of(&manager_email, &users).as_deref(),
            Some("mia@example.com")
        );
    }

    #[test]
    fn statuses_and_roles() {
        assert_eq!(
            user_status("u", "LOCKED_OUT").unwrap(),
            AccountStatus::Active
        );
        assert_eq!(user_status("u", "STAGED").unwrap(), AccountStatus::Pending);
        assert!(
            matches!(user_status("u", "WEIRD"), Err(SourceError::Invalid(m)) if m.contains("WEIRD"))
        );
        assert_eq!(roles(Some(&json!({ "role": "Admin" }))), vec!["Admin"]);
        assert_eq!(
            roles(Some(&json!({ "role": ["a", "b", 3] }))),
            vec!["a", "b"]
        );
        assert!(roles(Some(&json!({ "role": null }))).is_empty());
    }
}
