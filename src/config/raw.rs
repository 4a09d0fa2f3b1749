//! The config file as written: serde structs with `deny_unknown_fields`, before defaults and validation.
//!
//! Everything optional stays `Option` here so that defaults live in one place
//! (validate.rs) next to the checks; durations, schedules and principals stay
//! strings so their errors can name the key.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::tree::{from_node, DeError, Filter, KeyPath, Node, Value};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub slack: RawSlack,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub requests: RawRequests,
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub apps: Vec<RawApp>,
    // Dispatched on `kind` by hand (see `sources`/`provisioners` below):
    // serde's internally tagged enums buffer the table and lose every key
    // path and span inside it. Declared so the top level accepts them.
    #[allow(dead_code)]
    #[serde(default)]
    pub sources: Vec<de::IgnoredAny>,
    #[allow(dead_code)]
    #[serde(default)]
    pub provisioners: Vec<de::IgnoredAny>,
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub reviews: RawReviews,
    #[serde(default)]
    pub audit: RawAudit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    pub api_url: Option<String>,
    pub connections: Option<i64>,
    pub app_token_file: Option<String>,
    pub bot_token_file: Option<String>,
    pub allow_insecure_http: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub require_known_email: Option<bool>,
    pub link_refresh: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequests {
    pub default_duration: Option<String>,
    pub max_duration: Option<String>,
    pub reminder_after: Option<String>,
    pub reminder_every: Option<String>,
    pub stale_after: Option<String>,
    pub expiry_warning: Option<String>,
    pub nudge_cooldown: Option<String>,
    #[serde(default)]
    pub fallback_approvers: Vec<String>,
    #[serde(default)]
    pub admins: Vec<String>,
    pub allow_guests: Option<bool>,
    pub requests_per_hour: Option<i64>,
    pub refused_clicks_per_minute: Option<i64>,
    pub reference: Option<RawReference>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReference {
    pub label: Option<String>,
    pub required: Option<bool>,
    pub pattern: Option<String>,
    pub link: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    pub max_duration: Option<String>,
    pub provisioner: Option<String>,
    pub stages: Option<Vec<RawStage>>,
    #[serde(default)]
    pub deny_requesters: Vec<String>,
    #[serde(default)]
    pub roles: Vec<RawRole>,
    pub reference: Option<RawReference>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRole {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub entitlement: Option<String>,
    pub max_duration: Option<String>,
    pub stages: Option<Vec<RawStage>>,
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default)]
    pub break_glass: bool,
    /// Who besides the admins may break-glass this role (emails, `group:NAME`).
    #[serde(default)]
    pub break_glass_by: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStage {
    pub approvers: Vec<String>,
    #[serde(default)]
    pub required: RawRequired,
}

/// `required = N` or `required = "all"`; the range is checked in validation,
/// where the number of approvers is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawRequired {
    Count(i64),
    All,
}

impl Default for RawRequired {
    fn default() -> Self {
        RawRequired::Count(1)
    }
}

impl<'de> Deserialize<'de> for RawRequired {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawRequired;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of approvals (1 or more) or \"all\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawRequired, E> {
                Ok(RawRequired::Count(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawRequired, E> {
                Ok(RawRequired::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRequired, E> {
                if v.eq_ignore_ascii_case("all") {
                    Ok(RawRequired::All)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerts {
    #[serde(default)]
    pub watchlist: Vec<String>,
    pub digest_at: Option<String>,
    pub mass_change_guard: Option<f64>,
    #[serde(default)]
    pub channels: RawChannels,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChannels {
    pub watchlist_signup: Option<String>,
    pub offboarded_active: Option<String>,
    pub new_app: Option<String>,
    pub findings_digest: Option<String>,
    pub provisioning_failed: Option<String>,
    pub source_failed: Option<String>,
    pub break_glass: Option<String>,
    pub privileged: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub anchor_channel: Option<String>,
    pub anchor_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReviews {
    pub reminder_every: Option<String>,
    pub closing_soon: Option<String>,
    #[serde(default)]
    pub schedules: Vec<RawReviewSchedule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReviewSchedule {
    pub name: String,
    pub apps: Vec<String>,
    pub reviewer: String,
    pub cron: String,
    pub due: String,
    pub remind_every: Option<String>,
    pub closing_soon: Option<String>,
    pub no_reminders: Option<bool>,
}

// ---- sources ---------------------------------------------------------------

const SOURCE_COMMON: &[&str] = &[
    "id",
    "kind",
    "name",
    "schedule",
    "authoritative",
    "app",
    "allow_insecure_http",
];
pub(crate) const SOURCE_KINDS: &[&str] =
    &["file", "scim", "okta", "github", "google", "c1z", "slack"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSourceCommon {
    pub id: String,
    #[allow(dead_code)] // read by `kind_of`; declared so deny_unknown_fields accepts it
    pub kind: String,
    pub name: Option<String>,
    pub schedule: Option<String>,
    pub authoritative: Option<bool>,
    pub app: Option<String>,
    pub allow_insecure_http: Option<bool>,
}

#[derive(Debug)]
pub(crate) struct RawSource {
    pub common: RawSourceCommon,
    pub kind: RawSourceKind,
}

#[derive(Debug)]
pub(crate) enum RawSourceKind {
    File(RawPathSource),
    Scim(RawScimSource),
    Okta(RawUrlTokenSource),
    Github(RawGithubSource),
    Google(RawGoogleSource),
    C1z(RawPathSource),
    Slack(RawSlackSource),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScimSource {
    pub url: String,
    pub token_file: String,
    pub filter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPathSource {
    pub path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUrlTokenSource {
    pub url: String,
    pub token_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGithubSource {
    pub org: String,
    pub token_file: String,
    pub api_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGoogleSource {
    pub credentials_file: String,
    pub customer: Option<String>,
    pub subject: String,
    pub token_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlackSource {
    pub token_file: Option<String>,
    pub scim_token_file: Option<String>,
    pub scim_url: Option<String>,
}

/// The `kind` of a `[[sources]]`/`[[provisioners]]` table, checked against `kinds`.
fn kind_of<'a>(node: &'a Node, what: &str, kinds: &[&str]) -> Result<&'a str, DeError> {
    let listed = kinds.join(", ");
    let Value::Table(_) = node.value else {
        return Err(DeError::new(
            format!("expected a table, found {}", node.type_name()),
            node.span.clone(),
        ));
    };
    let Some(kind) = node.get("kind") else {
        return Err(DeError::new(
            format!("missing field `kind`; expected one of: {listed}"),
            node.span.clone(),
        ));
    };
    let at_kind = |message: String| {
        let mut e = DeError::new(message, kind.span.clone());
        e.path = KeyPath::root().key("kind");
        e
    };
    match &kind.value {
        Value::String(k) if kinds.contains(&k.as_str()) => Ok(k),
        Value::String(k) => Err(at_kind(format!(
            "unknown {what} kind {k:?}; expected one of: {listed}"
        ))),
        _ => Err(at_kind(format!(
            "expected a string, found {}; one of: {listed}",
            kind.type_name()
        ))),
    }
}

/// Deserializes the kind-specific part of a table; an unknown key's message
/// also lists the keys every kind accepts, which serde cannot know about.
fn kind_specific<'a, T: Deserialize<'a>>(
    node: &'a Node,
    filter: Filter,
    kind: &str,
    common: &[&str],
) -> Result<T, DeError> {
    from_node(node, filter).map_err(|mut e| {
        if e.message.starts_with("unknown field") {
            e.message = format!(
                "{} for kind {kind:?} (or one of the keys every kind accepts: {})",
                e.message,
                common.join(", ")
            );
        }
        e
    })
}

pub(crate) fn source(node: &Node) -> Result<RawSource, DeError> {
    let kind = kind_of(node, "source", SOURCE_KINDS)?;
    let common: RawSourceCommon = from_node(node, Filter::Only(SOURCE_COMMON))?;
    let rest = Filter::Except(SOURCE_COMMON);
    let kind = match kind {
        "file" => RawSourceKind::File(kind_specific(node, rest, kind, SOURCE_COMMON)?),
        "scim" => RawSourceKind::Scim(kind_specific(node, rest, kind, SOURCE_COMMON)?),
        "okta" => RawSourceKind::Okta(kind_specific(node, rest, kind, SOURCE_COMMON)?),
        "github" => RawSourceKind::Github(kind_specific(node, rest, kind, SOURCE_COMMON)?),
        "google" => RawSourceKind::Google(kind_specific(node, rest, kind, SOURCE_COMMON)?),
        "slack" => RawSourceKind::Slack(kind_specific(node, rest, kind, SOURCE_COMMON)?),
        _ => RawSourceKind::C1z(kind_specific(node, rest, kind, SOURCE_COMMON)?),
    };
    Ok(RawSource { common, kind })
}

// ---- provisioners ----------------------------------------------------------

const PROVISIONER_COMMON: &[&str] = &["id", "kind", "timeout", "allow_insecure_http"];
pub(crate) const PROVISIONER_KINDS: &[&str] = &[
    "scim",
    "command",
    "webhook",
    "okta",
    "github",
    "baton",
    "slack_usergroup",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvisionerCommon {
    pub id: String,
    #[allow(dead_code)] // read by `kind_of`; declared so deny_unknown_fields accepts it
    pub kind: String,
    pub timeout: Option<String>,
    pub allow_insecure_http: Option<bool>,
}

#[derive(Debug)]
pub(crate) struct RawProvisioner {
    pub common: RawProvisionerCommon,
    pub kind: RawProvisionerKind,
}

#[derive(Debug)]
pub(crate) enum RawProvisionerKind {
    Scim(RawUrlTokenSource),
    Command(RawCommand),
    Webhook(RawWebhook),
    Okta(RawUrlTokenSource),
    Github(RawGithubProvisioner),
    Baton(RawBaton),
    SlackUsergroup(RawSlackUsergroup),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlackUsergroup {
    pub token_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommand {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub url: String,
    pub secret_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGithubProvisioner {
    pub org: String,
    pub token_file: String,
    pub api_url: Option<String>,
    /// Email → GitHub login, for people whose email the org has not verified.
    #[serde(default)]
    pub logins: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBaton {
    pub connector: Vec<String>,
    pub c1z_path: Option<String>,
    /// The connector's whole environment besides PATH and LANG (its
    /// `BATON_*` credentials).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

pub(crate) fn provisioner(node: &Node) -> Result<RawProvisioner, DeError> {
    let kind = kind_of(node, "provisioner", PROVISIONER_KINDS)?;
    let common: RawProvisionerCommon = from_node(node, Filter::Only(PROVISIONER_COMMON))?;
    let rest = Filter::Except(PROVISIONER_COMMON);
    let kind = match kind {
        "scim" => RawProvisionerKind::Scim(kind_specific(node, rest, kind, PROVISIONER_COMMON)?),
        "command" => {
            RawProvisionerKind::Command(kind_specific(node, rest, kind, PROVISIONER_COMMON)?)
        }
        "webhook" => {
            RawProvisionerKind::Webhook(kind_specific(node, rest, kind, PROVISIONER_COMMON)?)
        }
        "okta" => RawProvisionerKind::Okta(kind_specific(node, rest, kind, PROVISIONER_COMMON)?),
        "github" => {
            RawProvisionerKind::Github(kind_specific(node, rest, kind, PROVISIONER_COMMON)?)
        }
        "slack_usergroup" => {
            RawProvisionerKind::SlackUsergroup(kind_specific(node, rest, kind, PROVISIONER_COMMON)?)
        }
        _ => RawProvisionerKind::Baton(kind_specific(node, rest, kind, PROVISIONER_COMMON)?),
    };
    Ok(RawProvisioner { common, kind })
}
