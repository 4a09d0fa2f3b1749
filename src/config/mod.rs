//! The `accessd.toml` configuration: public types, `load`/`parse`, and lookups over the validated config.
//!
//! Parsing is a pure function of the text and the file's path (rathole's
//! style): toml → span tree (tree.rs) → raw serde structs (raw.rs) →
//! validated `Config` (validate.rs), every error naming the file, the dotted
//! key path and what was expected. Tokens never live here; see secret.rs.

mod error;
mod raw;
mod reference;
mod schedule;
mod secret;
mod tree;
mod usergroups;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
pub use reference::{ReferenceConfig, ReferencePattern, REFERENCE_MAX_CHARS};
pub use schedule::Schedule;
pub use secret::{Secret, SlackTokens};
pub use usergroups::{UserGroups, USERGROUP_FRESH};

/// Reads and parses the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, None, format!("cannot read the config file: {e}")))?;
    parse(&text, path)
}

/// Parses config text. Pure apart from reading the working directory to make
/// relative paths absolute: `path` names the file in errors and its folder is
/// the base for relative paths. Referenced files need not exist.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    validate::parse(text, path)
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The config file, as given.
    pub path: PathBuf,
    pub slack: SlackConfig,
    pub database: DatabaseConfig,
    pub server: ServerConfig,
    pub identity: IdentityConfig,
    pub requests: RequestsConfig,
    /// Group name → members as written: lowercased emails and `group:NAME`
    /// references. Use [`Config::group_members`] for the expanded set.
    pub groups: BTreeMap<String, Vec<String>>,
    pub apps: Vec<AppConfig>,
    pub sources: Vec<SourceConfig>,
    pub provisioners: Vec<ProvisionerConfig>,
    pub alerts: AlertsConfig,
    pub reviews: ReviewsConfig,
    pub audit: AuditConfig,
    /// Members of the Slack user groups this config names, as last read
    /// from Slack; shared across reloads (see [`UserGroups`]).
    pub usergroups: UserGroups,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Web API base without trailing `/`, e.g. `https://slack.com/api`.
    pub api_url: String,
    /// Socket Mode connections kept open, 1..=10.
    pub connections: usize,
    pub app_token_file: Option<PathBuf>,
    pub bot_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Resolved against the config file's folder.
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Health and metrics listener; `None` when `listen = ""`.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub require_known_email: bool,
    /// How long a cached Slack user → email link is trusted.
    pub link_refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct RequestsConfig {
    pub default_duration: Duration,
    pub max_duration: Duration,
    pub reminder_after: Duration,
    pub reminder_every: Duration,
    pub stale_after: Duration,
    pub expiry_warning: Duration,
    pub nudge_cooldown: Duration,
    pub fallback_approvers: Vec<Principal>,
    pub admins: Vec<Principal>,
    /// Whether Slack guests, bots and users of other teams may request.
    pub allow_guests: bool,
    /// Requests (tickets, extensions included) one person may file per hour.
    pub requests_per_hour: u32,
    /// Refused clicks one person is answered per minute; past it they are
    /// told once, audited once, and further refusals are dropped.
    pub refused_clicks_per_minute: u32,
    /// The outside reference every request may or must carry; an app may
    /// set its own.
    pub reference: Option<ReferenceConfig>,
}

/// A person or a group, as used in `admins`, `fallback_approvers`,
/// `deny_requesters` and group members.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    /// Lowercased email.
    Email(String),
    /// Name of a group defined in `[groups]`.
    Group(String),
    /// Handle of a Slack user group (lowercased, without `@`).
    UserGroup(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Email(e) => f.write_str(e),
            Principal::Group(g) => write!(f, "group:{g}"),
            Principal::UserGroup(h) => write!(f, "usergroup:{h}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `[a-z0-9][a-z0-9_-]*`, unique.
    pub id: String,
    /// Display name; defaults to the id.
    pub name: String,
    pub description: Option<String>,
    /// Lowercased; unique across apps and never another app's id.
    pub aliases: Vec<String>,
    /// Lowercased emails; see [`Config::owners_of`] for everyone.
    pub owners: Vec<String>,
    /// Handles of Slack user groups whose members are owners too.
    pub owner_groups: Vec<String>,
    /// Effective cap: the app's `max_duration`, else `requests.max_duration`.
    pub max_duration: Duration,
    /// Id of a defined provisioner; `None` → approved tickets become manual tasks.
    pub provisioner: Option<String>,
    /// Effective approval stages for a request without a role-level override.
    /// When the file gives none: one stage of `owners` (1 required) if the app
    /// has owners, else one stage of `requests.fallback_approvers`.
    pub stages: Vec<Stage>,
    pub deny_requesters: Vec<Principal>,
    pub roles: Vec<RoleConfig>,
    /// Effective: the app's own `reference`, else `[requests] reference`.
    pub reference: Option<ReferenceConfig>,
}

impl AppConfig {
    pub fn role(&self, id: &str) -> Option<&RoleConfig> {
        self.roles.iter().find(|r| r.id == id)
    }
}

#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// `[a-z0-9][a-z0-9_-]*`, unique within the app.
    pub id: String,
    /// Display name; defaults to the id.
    pub name: String,
    pub description: Option<String>,
    /// Passed to the provisioner as-is; defaults to the role id.
    pub entitlement: String,
    /// Effective cap: the role's `max_duration`, else the app's.
    pub max_duration: Duration,
    /// Effective stages: the role's own, else the app's.
    pub stages: Vec<Stage>,
    pub auto_approve: bool,
    pub break_glass: bool,
    /// Who besides `[requests] admins` may break-glass this role; empty means
    /// admins only.
    pub break_glass_by: Vec<Principal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub approvers: Vec<Approver>,
    pub required: Required,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Approver {
    /// Lowercased email.
    Email(String),
    /// A group defined in `[groups]`.
    Group(String),
    /// The members of a Slack user group, by handle.
    UserGroup(String),
    /// The app's owners.
    Owners,
    /// The requester's manager, as given by an identity source.
    Manager,
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Approver::Email(e) => f.write_str(e),
            Approver::Group(g) => write!(f, "group:{g}"),
            Approver::UserGroup(h) => write!(f, "usergroup:{h}"),
            Approver::Owners => f.write_str("owners"),
            Approver::Manager => f.write_str("manager"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// At least this many distinct approvals (≥ 1).
    Count(usize),
    /// Every eligible approver of the stage.
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub id: String,
    pub name: Option<String>,
    /// Default `every 15m`.
    pub schedule: Schedule,
    /// Employment status comes from this source (offboarding findings).
    pub authoritative: bool,
    /// The app whose accounts this source lists when the source itself does
    /// not say (a directory's own users); default: the source id.
    pub app: String,
    pub kind: SourceKind,
}

impl SourceConfig {
    /// `name`, else `id`.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// Kind-specific settings of a source. URLs have no trailing `/`; paths are
/// resolved against the config file's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    File {
        path: PathBuf,
    },
    Scim {
        url: String,
        token_file: PathBuf,
        /// SCIM filter applied to the Users listing (RFC 7644 §3.4.2.2).
        filter: Option<String>,
    },
    Okta {
        url: String,
        token_file: PathBuf,
    },
    Github {
        org: String,
        token_file: PathBuf,
        api_url: String,
    },
    Google {
        credentials_file: PathBuf,
        /// Default `my_customer`.
        customer: String,
        /// Admin email impersonated through domain-wide delegation.
        subject: String,
        /// Default `https://oauth2.googleapis.com/token`.
        token_uri: String,
    },
    C1z {
        path: PathBuf,
    },
    /// The workspace itself (`users.list`, `usergroups.list`). `api_url` is
    /// `slack.api_url`; `token_file` `None` means the bot token.
    /// `scim_token_file` enables **Deactivate in Slack** through `scim_url`.
    Slack {
        api_url: String,
        token_file: Option<PathBuf>,
        scim_token_file: Option<PathBuf>,
        scim_url: String,
    },
}

impl SourceKind {
    /// The `kind` value as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::File { .. } => "file",
            SourceKind::Scim { .. } => "scim",
            SourceKind::Okta { .. } => "okta",
            SourceKind::Github { .. } => "github",
            SourceKind::Google { .. } => "google",
            SourceKind::C1z { .. } => "c1z",
            SourceKind::Slack { .. } => "slack",
        }
    }

    /// Every URL this source calls.
    pub fn urls(&self) -> Vec<&str> {
        match self {
            SourceKind::Scim { url, .. } | SourceKind::Okta { url, .. } => vec![url],
            SourceKind::Github { api_url, .. } => vec![api_url],
            SourceKind::Google { token_uri, .. } => vec![token_uri],
            // `api_url` is `slack.api_url`, checked there.
            SourceKind::Slack {
                scim_token_file: Some(_),
                scim_url,
                ..
            } => vec![scim_url],
            SourceKind::Slack { .. } => Vec::new(),
            SourceKind::File { .. } | SourceKind::C1z { .. } => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    pub id: String,
    /// Limit for one grant or revoke call. Default 60s for `command`, 120s
    /// for `baton`, 30s for the HTTP kinds.
    pub timeout: Duration,
    pub kind: ProvisionerKind,
}

/// `Debug` by hand: a command's `env` table may hold secrets, so only its
/// names are shown.
#[derive(Clone, PartialEq, Eq)]
pub enum ProvisionerKind {
    Scim {
        url: String,
        token_file: PathBuf,
    },
    /// Run without a shell; a relative program path containing `/` is
    /// resolved against the config file's folder, a bare name via `PATH`.
    Command {
        command: Vec<String>,
        env: BTreeMap<String, String>,
    },
    /// `secret_file` holds the HMAC key that signs each request.
    Webhook {
        url: String,
        secret_file: PathBuf,
    },
    Okta {
        url: String,
        token_file: PathBuf,
    },
    /// `logins`: email (lowercased) → GitHub login, tried before the
    /// org's verified-domain emails.
    Github {
        org: String,
        token_file: PathBuf,
        api_url: String,
        logins: BTreeMap<String, String>,
    },
    /// `connector` is the Baton connector command line (program first).
    /// `env` as for `Command` (the connector's `BATON_*` credentials).
    Baton {
        connector: Vec<String>,
        c1z_path: Option<PathBuf>,
        env: BTreeMap<String, String>,
    },
    /// Slack user-group membership through `usergroups.users.update`;
    /// `api_url` is `slack.api_url`, `token_file` `None` the bot token.
    SlackUsergroup {
        api_url: String,
        token_file: Option<PathBuf>,
    },
}

impl fmt::Debug for ProvisionerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvisionerKind::Scim { url, token_file } => f
                .debug_struct("Scim")
                .field("url", url)
                .field("token_file", token_file)
                .finish(),
            ProvisionerKind::Command { command, env } => f
                .debug_struct("Command")
                .field("command", command)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            ProvisionerKind::Webhook { url, secret_file } => f
                .debug_struct("Webhook")
                .field("url", url)
                .field("secret_file", secret_file)
                .finish(),
            ProvisionerKind::Okta { url, token_file } => f
                .debug_struct("Okta")
                .field("url", url)
                .field("token_file", token_file)
                .finish(),
            ProvisionerKind::Github {
                org,
                token_file,
                api_url,
                logins,
            } => f
                .debug_struct("Github")
                .field("org", org)
                .field("token_file", token_file)
                .field("api_url", api_url)
                .field("logins", &logins.len())
                .finish(),
            ProvisionerKind::Baton {
                connector,
                c1z_path,
                env,
            } => f
                .debug_struct("Baton")
                .field("connector", connector)
                .field("c1z_path", c1z_path)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            ProvisionerKind::SlackUsergroup {
                api_url,
                token_file,
            } => f
                .debug_struct("SlackUsergroup")
                .field("api_url", api_url)
                .field("token_file", token_file)
                .finish(),
        }
    }
}

impl ProvisionerKind {
    /// The `kind` value as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            ProvisionerKind::Scim { .. } => "scim",
            ProvisionerKind::Command { .. } => "command",
            ProvisionerKind::Webhook { .. } => "webhook",
            ProvisionerKind::Okta { .. } => "okta",
            ProvisionerKind::Github { .. } => "github",
            ProvisionerKind::Baton { .. } => "baton",
            ProvisionerKind::SlackUsergroup { .. } => "slack_usergroup",
        }
    }

    /// Every URL this provisioner calls.
    pub fn urls(&self) -> Vec<&str> {
        match self {
            ProvisionerKind::Scim { url, .. }
            | ProvisionerKind::Okta { url, .. }
            | ProvisionerKind::Webhook { url, .. } => vec![url],
            ProvisionerKind::Github { api_url, .. } => vec![api_url],
            ProvisionerKind::Command { .. }
            | ProvisionerKind::Baton { .. }
            | ProvisionerKind::SlackUsergroup { .. } => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// App ids (lowercased) whose new sign-ups are alerted; may name apps
    /// only discovered by sources.
    pub watchlist: Vec<String>,
    /// Local time of the daily findings digest.
    pub digest_at: chrono::NaiveTime,
    /// Share of a source's accounts (0, 1] that may disappear in one sync
    /// before the diff is held.
    pub mass_change_guard: f64,
    pub channels: AlertChannels,
}

/// Alert kind → channel (`C…`/`G…` id or `#name`); `None` → that alert is not posted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertChannels {
    pub watchlist_signup: Option<String>,
    pub offboarded_active: Option<String>,
    pub new_app: Option<String>,
    pub findings_digest: Option<String>,
    pub provisioning_failed: Option<String>,
    pub source_failed: Option<String>,
    pub break_glass: Option<String>,
    /// New owners, admins and guests of the Slack workspace.
    pub privileged: Option<String>,
}

/// `[audit]`: where the audit log's head is posted, so a copy of it lives
/// off this host (`accessd audit verify --head` checks against it).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Channel id or `#name` (resolved at start-up); `None`: no anchor.
    pub anchor_channel: Option<String>,
    /// How often the head is posted (only when it moved).
    pub anchor_every: Duration,
}

#[derive(Debug, Clone)]
pub struct ReviewsConfig {
    pub reminder_every: Duration,
    /// "Closing soon" notice this long before a campaign's due date.
    pub closing_soon: Duration,
    pub schedules: Vec<ReviewSchedule>,
}

/// A campaign's own reminder settings (`accessd reviews create
/// --remind-every/--closing-soon/--no-reminders`, the same keys on a
/// schedule); `None` follows `[reviews]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewNotifications {
    pub remind_every: Option<Duration>,
    pub closing_soon: Option<Duration>,
    /// `false`: no reminders at all (the closing-soon notice still goes).
    pub reminders: bool,
}

impl Default for ReviewNotifications {
    fn default() -> Self {
        Self {
            remind_every: None,
            closing_soon: None,
            reminders: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReviewSchedule {
    /// Unique; campaigns created from this schedule carry it.
    pub name: String,
    /// App ids (lowercased).
    pub apps: Vec<String>,
    pub reviewer: Reviewer,
    pub cron: Schedule,
    /// Campaign length: due date = creation + `due`.
    pub due: Duration,
    pub notifications: ReviewNotifications,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reviewer {
    Owners,
    Manager,
    /// Lowercased email.
    Email(String),
}

impl Config {
    /// The app with this exact id.
    pub fn app(&self, id: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.id == id)
    }

    /// The app whose id, alias or name equals `text`, ignoring case.
    pub fn find_app(&self, text: &str) -> Option<&AppConfig> {
        let t = text.trim().to_lowercase();
        self.apps
            .iter()
            .find(|a| a.id == t || a.aliases.contains(&t))
            .or_else(|| self.apps.iter().find(|a| a.name.to_lowercase() == t))
    }

    pub fn source(&self, id: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.id == id)
    }

    pub fn provisioner(&self, id: &str) -> Option<&ProvisionerConfig> {
        self.provisioners.iter().find(|p| p.id == id)
    }

    /// Every email in group `name`, nested groups expanded; `None` when the
    /// group is not defined. Validation refuses cycles, so this terminates.
    pub fn group_members(&self, name: &str) -> Option<BTreeSet<String>> {
        self.groups.get(name)?;
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        self.expand_group(name, &mut seen, &mut out);
        Some(out)
    }

    fn expand_group(&self, name: &str, seen: &mut BTreeSet<String>, out: &mut BTreeSet<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        for member in self.groups.get(name).into_iter().flatten() {
            match member.strip_prefix("group:") {
                Some(g) => self.expand_group(g, seen, out),
                None => {
                    out.insert(member.clone());
                }
            }
        }
    }

    /// Every email named by `principals`, groups expanded.
    pub fn expand(&self, principals: &[Principal]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for p in principals {
            match p {
                Principal::Email(e) => {
                    out.insert(e.clone());
                }
                Principal::Group(g) => out.extend(self.group_members(g).unwrap_or_default()),
                Principal::UserGroup(h) => out.extend(self.usergroups.emails(h)),
            }
        }
        out
    }

    /// Every owner of `app`: its `owners` and the members of its
    /// `usergroup:` owners, sorted, without repeats.
    pub fn owners_of(&self, app: &AppConfig) -> Vec<String> {
        let mut all: BTreeSet<String> = app.owners.iter().cloned().collect();
        for handle in &app.owner_groups {
            all.extend(self.usergroups.emails(handle));
        }
        all.into_iter().collect()
    }

    /// Every Slack user group the config names, with the first key naming it
    /// (for start-up errors), in config order.
    pub fn usergroup_uses(&self) -> Vec<(String, String)> {
        let mut uses: Vec<(String, String)> = Vec::new();
        let mut add = |key: String, handle: &str| {
            if !uses.iter().any(|(_, h)| h == handle) {
                uses.push((key, handle.to_string()));
            }
        };
        let principals = |key: &str, list: &[Principal], add: &mut dyn FnMut(String, &str)| {
            for p in list {
                if let Principal::UserGroup(h) = p {
                    add(key.to_string(), h);
                }
            }
        };
        principals("requests.admins", &self.requests.admins, &mut add);
        principals(
            "requests.fallback_approvers",
            &self.requests.fallback_approvers,
            &mut add,
        );
        for app in &self.apps {
            let at = |key: &str| format!("apps.{}.{key}", app.id);
            for h in &app.owner_groups {
                add(at("owners"), h);
            }
            principals(&at("deny_requesters"), &app.deny_requesters, &mut add);
            let stages =
                app.stages
                    .iter()
                    .map(|s| (at("stages"), s))
                    .chain(app.roles.iter().flat_map(|r| {
                        r.stages
                            .iter()
                            .map(move |s| (format!("apps.{}.roles.{}.stages", app.id, r.id), s))
                    }));
            for (key, stage) in stages {
                for a in &stage.approvers {
                    if let Approver::UserGroup(h) = a {
                        add(key.clone(), h);
                    }
                }
            }
            for r in &app.roles {
                principals(
                    &format!("apps.{}.roles.{}.break_glass_by", app.id, r.id),
                    &r.break_glass_by,
                    &mut add,
                );
            }
        }
        uses
    }

    /// Whether `email` (any case) is an admin, directly or through a group.
    pub fn is_admin(&self, email: &str) -> bool {
        self.expand(&self.requests.admins)
            .contains(&email.to_lowercase())
    }
}
