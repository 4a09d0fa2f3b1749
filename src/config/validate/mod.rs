//! Turns the file's text into a validated `Config`: secret checks, defaults, cross-references, every problem named by key.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

mod integrations;
mod notify;
mod policy;

use policy::{undefined_group, Groups, USERGROUP};

use super::error::line_col;
use super::raw::{self, RawConfig};
use super::schedule::{parse_duration, parse_schedule};
use super::tree::{from_node, DeError, Filter, KeyPath, Node, Seg, Value};
use super::{
    Config, ConfigError, DatabaseConfig, IdentityConfig, Principal, Schedule, ServerConfig,
    SlackConfig,
};

const DEFAULT_SLACK_API: &str = "https://slack.com/api";
const DEFAULT_GITHUB_API: &str = "https://api.github.com";
const DEFAULT_GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let tree: Node = toml::from_str(text).map_err(|e| {
        // toml's messages span lines ("invalid string\nexpected ..."); keep
        // one problem per line.
        let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
        let mut err = ConfigError::new(path, None, message);
        err.line_col = e.span().map(|s| line_col(text, &s));
        err
    })?;
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut cx = Cx {
        text,
        file: path,
        base,
        tree: &tree,
        problems: Vec::new(),
    };

    // Before anything that might quote a value back: a token pasted into the
    // file must be refused without ever being echoed.
    cx.check_secrets();
    cx.bail()?;

    let raw: RawConfig =
        from_node(&tree, Filter::All).map_err(|e| cx.de_error(e, &KeyPath::root()))?;
    let mut sources = Vec::new();
    for (i, node) in tree
        .get("sources")
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match raw::source(node) {
            Ok(s) => sources.push((i, s)),
            Err(e) => {
                let e = cx.de_error(e, &KeyPath::root().key("sources").index(i));
                cx.problems.push(e);
            }
        }
    }
    let mut provisioners = Vec::new();
    for (i, node) in tree
        .get("provisioners")
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match raw::provisioner(node) {
            Ok(p) => provisioners.push((i, p)),
            Err(e) => {
                let e = cx.de_error(e, &KeyPath::root().key("provisioners").index(i));
                cx.problems.push(e);
            }
        }
    }
    cx.bail()?;

    let config = cx.build(raw, sources, provisioners);
    cx.bail()?;
    Ok(config)
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
    base: PathBuf,
    tree: &'a Node,
    problems: Vec<ConfigError>,
}

impl Cx<'_> {
    fn bail(&mut self) -> Result<(), ConfigError> {
        match ConfigError::from_list(std::mem::take(&mut self.problems)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn error_at(
        &self,
        path: &KeyPath,
        span: Option<std::ops::Range<usize>>,
        message: String,
    ) -> ConfigError {
        let mut e = ConfigError::new(
            self.file,
            (!path.is_root()).then(|| path.to_string()),
            message,
        );
        e.line_col = span
            .or_else(|| self.tree.locate(path))
            .map(|s| line_col(self.text, &s));
        e
    }

    fn at(&mut self, path: &KeyPath, message: impl Into<String>) {
        let e = self.error_at(path, None, message.into());
        self.problems.push(e);
    }

    fn de_error(&self, e: DeError, prefix: &KeyPath) -> ConfigError {
        let e = e.under(prefix);
        self.error_at(&e.path, e.span, e.message)
    }

    fn check_secrets(&mut self) {
        // Point at the key rather than the value: the value is the secret.
        let mut found: Vec<(KeyPath, Option<std::ops::Range<usize>>, String)> = Vec::new();
        self.tree.walk(&KeyPath::root(), &mut |path, entry, node| {
            let key = entry.map(|e| e.key.as_str());
            let span = entry.and_then(|e| e.key_span.clone()).or(node.span.clone());
            let in_slack = path.0.len() == 2 && path.0[0] == Seg::Key("slack".into());
            let text = match &node.value {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            };
            if in_slack {
                if let Some(k @ ("app_token" | "bot_token" | "token" | "user_token")) = key {
                    found.push((path.clone(), span, slack_token_hint(k)));
                    return;
                }
            }
            if let (Some(k), Some(_)) = (key, text) {
                if matches!(
                    k,
                    "token" | "secret" | "password" | "api_key" | "client_secret" | "private_key"
                ) {
                    let instead = match k {
                        "token" => "set `token_file` to a file that holds it".to_string(),
                        "secret" => "set `secret_file` to a file that holds it".to_string(),
                        _ => "put it in a file and name the file with the matching `*_file` key"
                            .to_string(),
                    };
                    found.push((
                        path.clone(),
                        span,
                        format!("secrets are never written in the config file; {instead}"),
                    ));
                    return;
                }
            }
            if let Some(t) = text {
                let hint = if t.starts_with("xapp-") {
                    Some(slack_token_hint("app_token"))
                } else if t.starts_with("xoxb-") {
                    Some(slack_token_hint("bot_token"))
                } else if ["xoxp-", "xoxa-", "xoxe-", "xoxr-", "xoxs-"]
                    .iter()
                    .any(|p| t.starts_with(p))
                {
                    Some(slack_token_hint("token"))
                } else {
                    None
                };
                if let Some(h) = hint {
                    found.push((
                        path.clone(),
                        span,
                        format!("this value looks like a Slack token; {h}"),
                    ));
                }
            }
        });
        for (path, span, message) in found {
            let e = self.error_at(&path, span, message);
            self.problems.push(e);
        }
    }

    // ---- small checkers: push a problem and return None / a fallback -------

    fn duration(&mut self, path: &KeyPath, raw: Option<&str>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(text) => parse_duration(text).unwrap_or_else(|m| {
                self.at(path, m);
                default
            }),
        }
    }

    fn schedule(&mut self, path: &KeyPath, text: &str) -> Schedule {
        parse_schedule(text).unwrap_or_else(|m| {
            self.at(path, m);
            Schedule::Every(secs(15 * 60))
        })
    }

    fn ident(&mut self, path: &KeyPath, text: &str, what: &str) -> bool {
        if is_ident(text) {
            return true;
        }
        self.at(
            path,
            format!("invalid {what} {text:?}: expected lowercase letters, digits, `-` and `_`, starting with a letter or digit"),
        );
        false
    }

    fn email(&mut self, path: &KeyPath, text: &str) -> Option<String> {
        if is_email(text) {
            return Some(text.trim().to_lowercase());
        }
        self.at(
            path,
            format!("invalid email {text:?}: expected one `@` with text on both sides"),
        );
        None
    }

    fn principal(&mut self, path: &KeyPath, text: &str, groups: &Groups) -> Option<Principal> {
        if let Some(h) = text.trim().strip_prefix(USERGROUP) {
            return self.usergroup(path, h).map(Principal::UserGroup);
        }
        if let Some(g) = text.strip_prefix("group:") {
            if groups.defined(g) {
                return Some(Principal::Group(g.to_string()));
            }
            self.at(path, undefined_group(g, groups));
            return None;
        }
        if is_email(text) {
            return Some(Principal::Email(text.trim().to_lowercase()));
        }
        self.at(
            path,
            format!("expected an email, \"group:NAME\" or \"usergroup:HANDLE\", found {text:?}"),
        );
        None
    }

    /// A Slack user group's handle as Slack allows it (lowercase letters,
    /// digits, `.`, `-`, `_`; a leading `@` is dropped), lowercased.
    fn usergroup(&mut self, path: &KeyPath, handle: &str) -> Option<String> {
        let h = handle.trim().trim_start_matches('@').to_lowercase();
        let valid = !h.is_empty()
            && h.len() <= 80
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if valid {
            return Some(h);
        }
        self.at(
            path,
            format!(
                "invalid Slack user group handle {handle:?}: expected e.g. \"usergroup:sre-leads\""
            ),
        );
        None
    }

    fn principals(&mut self, path: &KeyPath, list: &[String], groups: &Groups) -> Vec<Principal> {
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            if let Some(p) = self.principal(&path.index(i), text, groups) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// An http(s) URL without credentials; plain `http://` only to a
    /// loopback host or with the entry's `allow_insecure_http = true`
    /// (`insecure`), since tokens and identity data travel on it.
    fn http_url(&mut self, path: &KeyPath, text: &str, insecure: bool) -> Option<String> {
        let trimmed = text.trim().trim_end_matches('/');
        let problem = match url::Url::parse(trimmed) {
            Err(e) => Some(format!("invalid URL {text:?}: {e}; expected an http(s) URL")),
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => {
                Some(format!("invalid URL {text:?}: expected an http:// or https:// URL"))
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => Some(format!("invalid URL {text:?}: no host")),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => Some(
                "credentials in a URL are never written in the config file; use the matching `*_file` key".into(),
            ),
            Ok(u) if plain_remote(&u) && !insecure => Some(format!(
                "plain http:// to {:?} would send tokens and identity data unencrypted: use https://, or set allow_insecure_http = true on this entry (a loopback host such as 127.0.0.1 is allowed as is)",
                u.host_str().unwrap_or_default()
            )),
            Ok(_) => None,
        };
        match problem {
            Some(m) => {
                self.at(path, m);
                None
            }
            None => Some(trimmed.to_string()),
        }
    }

    /// `allow_insecure_http = true` on an entry none of whose `urls` needs
    /// it would look like a choice the code acts on: refused.
    fn insecure_flag(&mut self, path: &KeyPath, flag: Option<bool>, urls: &[&str]) {
        let needed = urls
            .iter()
            .any(|u| url::Url::parse(u).is_ok_and(|u| plain_remote(&u)));
        if flag == Some(true) && !needed {
            self.at(
                &path.key("allow_insecure_http"),
                "has no effect: no URL of this entry is plain http:// to a host other than loopback; remove it",
            );
        }
    }

    /// Resolves a relative path against the config file's folder; the file
    /// need not exist (it is read when used, with its own error).
    fn path(&mut self, path: &KeyPath, text: &str) -> PathBuf {
        if text.trim().is_empty() {
            self.at(path, "expected a file path, found an empty string");
            return PathBuf::new();
        }
        let p = Path::new(text);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        };
        // Drop `.` components so `./people.json` reads cleanly in logs.
        joined
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect()
    }

    fn non_empty(&mut self, path: &KeyPath, text: &str) -> String {
        let t = text.trim();
        if t.is_empty() {
            self.at(path, "expected a non-empty string");
        }
        t.to_string()
    }

    /// A command line whose program, when it is a relative path, is resolved
    /// against the config folder (a bare name is left for `PATH`).
    fn command(&mut self, path: &KeyPath, argv: &[String]) -> Vec<String> {
        let Some(program) = argv.first() else {
            self.at(
                path,
                "expected a non-empty array: the program, then its arguments",
            );
            return Vec::new();
        };
        if program.trim().is_empty() {
            self.at(
                &path.index(0),
                "expected the program to run, found an empty string",
            );
            return argv.to_vec();
        }
        let mut out = argv.to_vec();
        if program.contains('/') && Path::new(program).is_relative() {
            out[0] = self
                .path(&path.index(0), program)
                .to_string_lossy()
                .into_owned();
        }
        out
    }

    // ---- sections ------------------------------------------------------------

    fn build(
        &mut self,
        raw: RawConfig,
        sources: Vec<(usize, raw::RawSource)>,
        provisioners: Vec<(usize, raw::RawProvisioner)>,
    ) -> Config {
        let root = KeyPath::root();
        let slack = self.slack(&root.key("slack"), &raw.slack);
        let database = DatabaseConfig {
            path: self.path(
                &root.key("database").key("path"),
                raw.database.path.as_deref().unwrap_or("accessd.db"),
            ),
        };
        let server = self.server(
            &root.key("server").key("listen"),
            raw.server.listen.as_deref(),
        );
        let identity = IdentityConfig {
            require_known_email: raw.identity.require_known_email.unwrap_or(false),
            link_refresh: self.duration(
                &root.key("identity").key("link_refresh"),
                raw.identity.link_refresh.as_deref(),
                secs(DAY),
            ),
        };
        let groups = self.groups(&root.key("groups"), &raw.groups);
        let requests = self.requests(&root.key("requests"), &raw.requests, &groups);
        let provisioners =
            self.provisioners(&root.key("provisioners"), provisioners, &slack.api_url);
        let sources = self.sources(&root.key("sources"), sources, &slack.api_url);
        let provisioner_ids: BTreeSet<&str> = provisioners.iter().map(|p| p.id.as_str()).collect();
        let apps = self.apps(
            &root.key("apps"),
            &raw.apps,
            &groups,
            &requests,
            &provisioner_ids,
        );
        let alerts = self.alerts(&root.key("alerts"), &raw.alerts);
        let reviews = self.reviews(&root.key("reviews"), &raw.reviews, &apps);
        let audit = self.audit(&root.key("audit"), &raw.audit);
        Config {
            path: self.file.to_path_buf(),
            slack,
            database,
            server,
            identity,
            requests,
            groups: groups.members,
            apps,
            sources,
            provisioners,
            alerts,
            reviews,
            audit,
            usergroups: Default::default(),
        }
    }

    fn slack(&mut self, path: &KeyPath, raw: &raw::RawSlack) -> SlackConfig {
        let api_url = match &raw.api_url {
            None => DEFAULT_SLACK_API.to_string(),
            Some(u) => self
                .http_url(
                    &path.key("api_url"),
                    u,
                    raw.allow_insecure_http == Some(true),
                )
                .unwrap_or_else(|| DEFAULT_SLACK_API.to_string()),
        };
        self.insecure_flag(path, raw.allow_insecure_http, &[&api_url]);
        let connections = match raw.connections {
            None => 2,
            Some(n @ 1..=10) => n as usize,
            Some(n) => {
                self.at(
                    &path.key("connections"),
                    format!("expected 1 to 10 Socket Mode connections, found {n}"),
                );
                2
            }
        };
        let app_token_file = raw
            .app_token_file
            .as_deref()
            .map(|p| self.path(&path.key("app_token_file"), p));
        let bot_token_file = raw
            .bot_token_file
            .as_deref()
            .map(|p| self.path(&path.key("bot_token_file"), p));
        SlackConfig {
            api_url,
            connections,
            app_token_file,
            bot_token_file,
        }
    }

    fn server(&mut self, path: &KeyPath, listen: Option<&str>) -> ServerConfig {
        let text = listen.unwrap_or(DEFAULT_LISTEN).trim();
        if text.is_empty() {
            return ServerConfig { listen: None };
        }
        match text.parse::<SocketAddr>() {
            Ok(addr) => ServerConfig { listen: Some(addr) },
            Err(_) => {
                self.at(
                    path,
                    format!("invalid address {text:?}: expected IP:port such as \"127.0.0.1:9464\", or \"\" to disable"),
                );
                ServerConfig { listen: None }
            }
        }
    }

    fn unique_id(
        &mut self,
        path: &KeyPath,
        id: &str,
        seen: &mut BTreeMap<String, KeyPath>,
        what: &str,
    ) {
        if !self.ident(path, id, &format!("{what} id")) {
            return;
        }
        if let Some(first) = seen.get(id) {
            self.at(
                path,
                format!("duplicate {what} id {id:?} (first defined at {first})"),
            );
        } else {
            seen.insert(id.to_string(), path.clone());
        }
    }
}

fn slack_token_hint(key: &str) -> String {
    let (var, file) = match key {
        "app_token" => ("SLACK_APP_TOKEN", "slack.app_token_file"),
        "bot_token" => ("SLACK_BOT_TOKEN", "slack.bot_token_file"),
        _ => {
            return "tokens are never written in the config file; accessd uses an app-level token \
                    (SLACK_APP_TOKEN or slack.app_token_file) and a bot token (SLACK_BOT_TOKEN or \
                    slack.bot_token_file, e.g. systemd LoadCredential=)"
                .to_string()
        }
    };
    format!(
        "tokens are never written in the config file; set {var} in the environment or {file} (e.g. systemd LoadCredential=)"
    )
}

fn is_ident(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Loose on purpose: the identity sources are the authority on addresses; this
/// only catches names and typos that can never match one.
fn is_email(text: &str) -> bool {
    let t = text.trim();
    let mut parts = t.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && !d.is_empty())
        && !t.contains(char::is_whitespace)
}

/// `http://` to a host that is not this machine: readable on the wire.
fn plain_remote(u: &url::Url) -> bool {
    if u.scheme() != "http" {
        return false;
    }
    match u.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        Some(url::Host::Domain(d)) => !d.eq_ignore_ascii_case("localhost"),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_checks() {
        assert!(is_email("a@b"));
        assert!(!is_email("a@b@c") && !is_email("@b") && !is_email("a@") && !is_email("a b@c"));
        assert!(is_ident("eng-leads") && is_ident("0x_1") && !is_ident("-x") && !is_ident("Eng"));
        assert!(
            notify::is_channel("C0123ABC")
                && notify::is_channel("#sec-alerts")
                && !notify::is_channel("sec")
                && !notify::is_channel("#")
        );
        assert_eq!(
            notify::parse_hhmm("9:05"),
            chrono::NaiveTime::from_hms_opt(9, 5, 0)
        );
        assert!(notify::parse_hhmm("24:00").is_none() && notify::parse_hhmm("09:5").is_none());
        assert_eq!(
            notify::parse_hhmm("09:30:00"),
            chrono::NaiveTime::from_hms_opt(9, 30, 0)
        );
    }
}
