//! Identity sources: what a source reads (a complete [`Snapshot`] of apps and
//! accounts, or a [`SourceError`] — never a partial snapshot), and building
//! the configured sources. Diffing lives in `domain::diff`, timing in
//! `scheduler`, storage in `store::identity`.
//!
//! Each kind is one module with a `new` that reads its secrets (errors name
//! the config key, never the secret) and an async `fetch`. A kind that cannot
//! list everything it was asked for returns an error: a source that silently
//! drops a page would look like people leaving.

pub mod c1z;
pub mod file;
pub mod github;
pub mod google;
pub(crate) mod http;
pub mod okta;
pub mod scim;
pub mod slack;

use std::time::Duration;

use crate::config::{Secret, SourceConfig, SourceKind};
pub use crate::domain::snapshot::{Account, AccountStatus, Snapshot, SourceApp};

impl Snapshot {
    /// Lowercases and trims emails, app ids and managers, sorts and dedupes
    /// entitlements, and refuses what a diff could not key on: an account
    /// without app or id, or the same (app, id) twice.
    pub fn normalized(mut self) -> Result<Snapshot, SourceError> {
        // Most values are already clean: only rewrite those that are not
        // (a 100k-account snapshot holds about a million strings).
        fn lower(s: &mut String) {
            let t = s.trim();
            if t.len() != s.len() || t.chars().any(char::is_uppercase) {
                *s = t.to_lowercase();
            }
        }
        fn lower_opt(s: &mut Option<String>) {
            if let Some(v) = s {
                lower(v);
                if v.is_empty() {
                    *s = None;
                }
            }
        }
        fn trim(s: &mut String) {
            if s.trim().len() != s.len() {
                *s = s.trim().to_string();
            }
        }
        for app in &mut self.apps {
            lower(&mut app.id);
        }
        self.apps.retain(|a| !a.id.is_empty());
        self.apps.sort_by(|a, b| a.id.cmp(&b.id));
        self.apps.dedup_by(|a, b| a.id == b.id);
        for (i, acc) in self.accounts.iter_mut().enumerate() {
            lower(&mut acc.app);
            trim(&mut acc.id);
            if acc.app.is_empty() || acc.id.is_empty() {
                return Err(SourceError::Invalid(format!(
                    "account #{} has an empty app or id",
                    i + 1
                )));
            }
            lower_opt(&mut acc.email);
            lower_opt(&mut acc.manager);
            if !acc.entitlements.is_empty() {
                acc.entitlements.iter_mut().for_each(trim);
                acc.entitlements.retain(|e| !e.is_empty());
                acc.entitlements.sort_unstable();
                acc.entitlements.dedup();
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(self.accounts.len());
        for acc in &self.accounts {
            if !seen.insert((acc.app.as_str(), acc.id.as_str())) {
                return Err(SourceError::Invalid(format!(
                    "account {:?} appears twice in app {:?}",
                    acc.id, acc.app
                )));
            }
        }
        Ok(self)
    }
}

/// Why a source produced no snapshot. Messages are for operators: they name
/// the file, URL or HTTP status, never a token.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file or peer could not be read (missing file, connection refused,
    /// timeout, 5xx).
    #[error("{0}")]
    Unavailable(String),
    /// It answered, but not with something we understand.
    #[error("{0}")]
    Invalid(String),
    /// The credentials were refused (401/403) or cannot be used.
    #[error("{0}")]
    Auth(String),
    /// The peer asked us to slow down.
    #[error("rate limited{}", .retry_after.map(|d| format!("; retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
}

impl SourceError {
    /// A hint for the next attempt: a peer's Retry-After.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Lowercase id from a display name: `"Google Workspace"` → `google-workspace`.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Time limit of one HTTP call of the HTTP sources.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A configured source, ready to fetch.
#[derive(Debug)]
pub enum AnySource {
    File(file::FileSource),
    Scim(scim::ScimSource),
    Okta(okta::OktaSource),
    Github(github::GithubSource),
    Google(google::GoogleSource),
    C1z(c1z::C1zSource),
    Slack(slack::SlackSource),
}

impl AnySource {
    /// Reads the source's secrets; the error names the config key
    /// (`sources.ID.token_file: …`) and never holds a secret. `bot_token`
    /// is the daemon's own, for a `slack` source without a `token_file`.
    pub fn from_config(
        source: &SourceConfig,
        bot_token: Option<&Secret>,
    ) -> Result<AnySource, String> {
        let at = |key: &str| format!("sources.{}.{key}", source.id);
        let app = source.app.clone();
        Ok(match &source.kind {
            SourceKind::File { path } => AnySource::File(file::FileSource::new(path.clone(), app)),
            SourceKind::C1z { path } => AnySource::C1z(c1z::C1zSource::new(path.clone(), app)),
            SourceKind::Scim {
                url,
                token_file,
                filter,
            } => {
                let token = Secret::from_file(token_file)
                    .map_err(|e| format!("{}: {e}", at("token_file")))?;
                AnySource::Scim(
                    scim::ScimSource::new(url, token, filter.clone(), app)
                        .map_err(|e| format!("{}: {e}", at("url")))?,
                )
            }
            SourceKind::Okta { url, token_file } => {
                let token = Secret::from_file(token_file)
                    .map_err(|e| format!("{}: {e}", at("token_file")))?;
                AnySource::Okta(
                    okta::OktaSource::new(url, token, app)
                        .map_err(|e| format!("{}: {e}", at("url")))?,
                )
            }
            SourceKind::Github {
                org,
                token_file,
                api_url,
            } => {
                let token = Secret::from_file(token_file)
                    .map_err(|e| format!("{}: {e}", at("token_file")))?;
                AnySource::Github(
                    github::GithubSource::new(api_url, org, token, app)
                        .map_err(|e| format!("{}: {e}", at("api_url")))?,
                )
            }
            SourceKind::Slack {
                api_url,
                token_file,
                scim_token_file,
                scim_url,
            } => {
                let token = match token_file {
                    Some(f) => {
                        Secret::from_file(f).map_err(|e| format!("{}: {e}", at("token_file")))?
                    }
                    None => bot_token.cloned().ok_or_else(|| {
                        format!(
                            "{}: no bot token to read the workspace with",
                            at("token_file")
                        )
                    })?,
                };
                let scim = match scim_token_file {
                    Some(f) => Some((
                        scim_url.as_str(),
                        Secret::from_file(f)
                            .map_err(|e| format!("{}: {e}", at("scim_token_file")))?,
                    )),
                    None => None,
                };
                AnySource::Slack(
                    slack::SlackSource::new(api_url, &token, scim, app)
                        .map_err(|e| format!("{}: {e}", at("scim_url")))?,
                )
            }
            SourceKind::Google {
                credentials_file,
                customer,
                subject,
                token_uri,
            } => AnySource::Google(
                google::GoogleSource::new(credentials_file, customer, subject, token_uri, app)
                    .map_err(|e| format!("{}: {e}", at("credentials_file")))?,
            ),
        })
    }

    /// A complete, normalized snapshot, or why there is none.
    pub async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let raw = match self {
            AnySource::File(s) => s.fetch().await,
            AnySource::Scim(s) => s.fetch().await,
            AnySource::Okta(s) => s.fetch().await,
            AnySource::Github(s) => s.fetch().await,
            AnySource::Google(s) => s.fetch().await,
            AnySource::C1z(s) => s.fetch().await,
            AnySource::Slack(s) => s.fetch().await,
        }?;
        // CPU work on up to 100k accounts: off the threads that ack Slack.
        tokio::task::spawn_blocking(move || raw.normalized())
            .await
            .map_err(|e| SourceError::Invalid(format!("normalizing the snapshot failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(app: &str, id: &str) -> Account {
        Account {
            app: app.into(),
            id: id.into(),
            email: Some(" Ann@Example.COM ".into()),
            name: None,
            status: AccountStatus::Active,
            manager: Some("".into()),
            entitlements: vec!["b".into(), "a".into(), "b".into(), " ".into()],
            url: None,
        }
    }

    #[test]
    fn normalizing_lowercases_sorts_and_refuses_duplicates() {
        let snap = Snapshot {
            apps: vec![],
            accounts: vec![account("GitHub", "u1")],
        }
        .normalized()
        .unwrap();
        let a = &snap.accounts[0];
        assert_eq!(a.app, "github");
        assert_eq!(a.email.as_deref(), Some("ann@example.com"));
        assert_eq!(a.manager, None);
        assert_eq!(a.entitlements, vec!["a", "b"]);

        let dup = Snapshot {
            apps: vec![],
            accounts: vec![account("github", "u1"), account("GITHUB", "u1")],
        }
        .normalized();
        assert!(matches!(dup, Err(SourceError::Invalid(m)) if m.contains("twice")));
    }

    #[test]
    fn slugs_are_catalog_like_ids() {
        assert_eq!(slug("Google Workspace"), "google-workspace");
        assert_eq!(slug("  Dropbox (Business) "), "dropbox-business");
        assert_eq!(slug("Notion"), "notion");
    }
}
