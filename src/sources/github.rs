//! The `github` source: organization members (admins tagged), outside
//! collaborators, team memberships and pending invitations, read through
//! GitHub's REST API (github.com or Enterprise Server) with a bearer token.
//!
//! Calls, each paged with `per_page=100` and `Link: rel="next"`:
//! `GET /orgs/{org}/members` (and `?role=admin`), `/orgs/{org}/outside_collaborators`,
//! `/orgs/{org}/teams` and `/orgs/{org}/teams/{slug}/members` per team,
//! `/orgs/{org}/invitations`, and `GET /users/{login}` per person for the
//! name and email.
//!
//! Accounts are keyed on the lowercased login (GitHub logins are
//! case-insensitive). Entitlements: `org:admin` or `org:member`,
//! `outside-collaborator`, `team:<slug>` (nested teams included, as GitHub
//! lists a parent team's members). The email is the user's *public* profile
//! email, which many people leave empty; the SAML SSO identity (GraphQL
//! `externalIdentities`) would be the reliable one and is not read here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, USER_AGENT};
use serde::Deserialize;

use super::http::Api;
use super::{Account, AccountStatus, Snapshot, SourceError};
use crate::config::Secret;

const PER_PAGE: &str = "100";
/// Profiles change rarely and cost one call each: re-read once a day, so a
/// large org stays well inside 5,000 calls an hour at a 15-minute schedule.
const PROFILE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Profile lookups in flight at once (GitHub asks integrators not to
/// hammer it with concurrent requests).
const LOOKUPS: usize = 4;

pub struct GithubSource {
    api: Api,
    org: String,
    app: String,
    /// The web UI's root, for profile links the API does not give.
    web: String,
    /// Lowercased login → profile and when it was read.
    profiles: Mutex<HashMap<String, (Profile, Instant)>>,
}

impl std::fmt::Debug for GithubSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSource")
            .field("api", &self.api)
            .field("org", &self.org)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// GitHub's simple-user object, as far as it is read here.
#[derive(Deserialize)]
struct SimpleUser {
    login: String,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
}

#[derive(Deserialize)]
struct Invitation {
    id: u64,
    login: Option<String>,
    email: Option<String>,
    role: Option<String>,
}

#[derive(Deserialize, Clone)]
struct Profile {
    name: Option<String>,
    email: Option<String>,
    /// Enterprise Server only: set while a site admin has suspended the user.
    suspended_at: Option<String>,
}

impl GithubSource {
    /// `api_url` is `https://api.github.com`, or `https://HOST/api/v3` on
    /// Enterprise Server.
    pub fn new(api_url: &str, org: &str, token: Secret, app: String) -> Result<Self, String> {
        let org = org.trim();
        if org.is_empty() {
            return Err("the GitHub organization is empty".into());
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("accessd/", env!("CARGO_PKG_VERSION"))),
        );
        let api = Api::new("GitHub", api_url, "Bearer", token, headers)?;
        // github.com answers its API on another host; Enterprise Server on
        // the web host under /api/v3.
        let web = match api.base().host_str() {
            Some("api.github.com") => "https://github.com".to_string(),
            _ => api.base().origin().ascii_serialization(),
        };
        Ok(Self {
            api,
            web,
            org: org.to_string(),
            app,
            profiles: Mutex::new(HashMap::new()),
        })
    }

    pub async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let members: Vec<SimpleUser> = self.list(&["members"], &[]).await?;
        let admins: Vec<SimpleUser> = self.list(&["members"], &[("role", "admin")]).await?;
        let collaborators: Vec<SimpleUser> = self.list(&["outside_collaborators"], &[]).await?;

        let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
        let admins: Vec<String> = admins.iter().map(|u| key(&u.login)).collect();
        for user in &members {
            let role = if admins.contains(&key(&user.login)) {
                "org:admin"
            } else {
                "org:member"
            };
            self.person(&mut accounts, user).push(role.to_string());
        }
        for user in &collaborators {
            self.person(&mut accounts, user)
                .push("outside-collaborator".to_string());
        }

        let teams: Vec<Team> = self.list(&["teams"], &[]).await?;
        for team in teams {
            let team_members: Vec<SimpleUser> =
                self.list(&["teams", &team.slug, "members"], &[]).await?;
            for user in team_members {
                // Someone who joined after the member listing: next sync.
                if let Some(account) = accounts.get_mut(&key(&user.login)) {
                    account.entitlements.push(format!("team:{}", team.slug));
                }
            }
        }

        self.add_profiles(&mut accounts).await?;

        let invitations: Vec<Invitation> = self.list(&["invitations"], &[]).await?;
        for invitation in invitations {
            if let Some(account) = self.invited(&invitation) {
                accounts.entry(account.id.clone()).or_insert(account);
            }
        }

        Ok(Snapshot {
            apps: Vec::new(),
            accounts: accounts.into_values().collect(),
        })
    }

    /// `GET /orgs/{org}/<segments>`, every page.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, SourceError> {
        let mut path = vec!["orgs", self.org.as_str()];
        path.extend_from_slice(segments);
        let mut params = query.to_vec();
        params.push(("per_page", PER_PAGE));
        self.api.get_all(self.api.endpoint(&path, &params)).await
    }

    /// The account of `user`, made on first sight; answers its entitlements.
    fn person<'a>(
        &self,
        accounts: &'a mut BTreeMap<String, Account>,
        user: &SimpleUser,
    ) -> &'a mut Vec<String> {
        let id = key(&user.login);
        &mut accounts
            .entry(id.clone())
            .or_insert_with(|| Account {
                app: self.app.clone(),
                id,
                email: None,
                name: None,
                status: AccountStatus::Active,
                manager: None,
                entitlements: Vec::new(),
                url: user
                    .html_url
                    .clone()
                    .or_else(|| Some(format!("{}/{}", self.web, user.login))),
            })
            .entitlements
    }

    /// Name, public email and (Enterprise Server) suspension of every
    /// account, from the cache or `GET /users/{login}`.
    async fn add_profiles(
        &self,
        accounts: &mut BTreeMap<String, Account>,
    ) -> Result<(), SourceError> {
        let now = Instant::now();
        let cached: HashMap<String, Profile> = match self.profiles.lock() {
            Ok(cache) => cache
                .iter()
                .filter(|(_, (_, read))| now.duration_since(*read) < PROFILE_TTL)
                .map(|(login, (profile, _))| (login.clone(), profile.clone()))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let missing: Vec<String> = accounts
            .keys()
            .filter(|login| !cached.contains_key(*login))
            .cloned()
            .collect();
        let fresh: Vec<(String, Profile)> = stream::iter(missing)
            .map(|login| async move {
                let url = self.api.endpoint(&["users", &login], &[]);
                let profile: Profile = self.api.get(url).await?;
                Ok::<_, SourceError>((login, profile))
            })
            .buffer_unordered(LOOKUPS)
            .try_collect()
            .await?;
        if let Ok(mut cache) = self.profiles.lock() {
            // People who left the org drop out of the cache with their account.
            cache.retain(|login, _| accounts.contains_key(login));
            for (login, profile) in &fresh {
                cache.insert(login.clone(), (profile.clone(), now));
            }
        }
        for (login, profile) in cached.into_iter().chain(fresh) {
            if let Some(account) = accounts.get_mut(&login) {
                account.name = profile.name.filter(|n| !n.trim().is_empty());
                account.email = profile.email.filter(|e| e.contains('@'));
                if profile.suspended_at.is_some() {
                    account.status = AccountStatus::Suspended;
                }
            }
        }
        Ok(())
    }

    /// A pending invitation as a pending account: by login when the
    /// invitee has one, else by the invitation id (an invitation by email).
    fn invited(&self, invitation: &Invitation) -> Option<Account> {
        let login = invitation.login.as_deref().filter(|l| !l.is_empty());
        let email = invitation.email.clone().filter(|e| e.contains('@'));
        if login.is_none() && email.is_none() {
            return None;
        }
        let role = match invitation.role.as_deref() {
            Some("admin") => "org:admin".to_string(),
            Some("direct_member" | "reinstate") | None => "org:member".to_string(),
            Some(other) => format!("org:{}", other.replace('_', "-")),
        };
        Some(Account {
            app: self.app.clone(),
            id: login
                .map(key)
                .unwrap_or_else(|| format!("invitation:{}", invitation.id)),
            email,
            name: None,
            status: AccountStatus::Pending,
            manager: None,
            entitlements: vec![role],
            url: login.map(|l| format!("{}/{l}", self.web)),
        })
    }
}

fn key(login: &str) -> String {
    login.trim().to_lowercase()
}
