//! Sources and provisioners: kind-specific settings, URLs, paths, commands.

use std::collections::BTreeMap;

use super::{secs, Cx, DEFAULT_GITHUB_API, DEFAULT_GOOGLE_TOKEN_URI};
use crate::config::raw::{self, RawSourceKind};
use crate::config::tree::KeyPath;
use crate::config::{ProvisionerConfig, ProvisionerKind, Schedule, SourceConfig, SourceKind};

impl Cx<'_> {
    pub(super) fn sources(
        &mut self,
        path: &KeyPath,
        raw: Vec<(usize, raw::RawSource)>,
        slack_api: &str,
    ) -> Vec<SourceConfig> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for (i, s) in raw {
            let sp = path.index(i);
            let c = &s.common;
            let insecure = c.allow_insecure_http == Some(true);
            self.unique_id(&sp.key("id"), &c.id, &mut seen, "source");
            let schedule = match &c.schedule {
                Some(t) => self.schedule(&sp.key("schedule"), t),
                None => Schedule::Every(secs(15 * 60)),
            };
            let kind = match s.kind {
                RawSourceKind::File(f) => SourceKind::File {
                    path: self.path(&sp.key("path"), &f.path),
                },
                RawSourceKind::C1z(f) => SourceKind::C1z {
                    path: self.path(&sp.key("path"), &f.path),
                },
                RawSourceKind::Scim(f) => SourceKind::Scim {
                    url: self
                        .http_url(&sp.key("url"), &f.url, insecure)
                        .unwrap_or_default(),
                    token_file: self.path(&sp.key("token_file"), &f.token_file),
                    filter: f
                        .filter
                        .as_ref()
                        .map(|t| self.non_empty(&sp.key("filter"), t)),
                },
                RawSourceKind::Okta(f) => SourceKind::Okta {
                    url: self
                        .http_url(&sp.key("url"), &f.url, insecure)
                        .unwrap_or_default(),
                    token_file: self.path(&sp.key("token_file"), &f.token_file),
                },
                RawSourceKind::Github(f) => SourceKind::Github {
                    org: self.github_org(&sp.key("org"), &f.org),
                    token_file: self.path(&sp.key("token_file"), &f.token_file),
                    api_url: self.url_or(
                        &sp.key("api_url"),
                        f.api_url.as_deref(),
                        DEFAULT_GITHUB_API,
                        insecure,
                    ),
                },
                RawSourceKind::Slack(f) => SourceKind::Slack {
                    api_url: slack_api.to_string(),
                    token_file: f
                        .token_file
                        .as_deref()
                        .map(|t| self.path(&sp.key("token_file"), t)),
                    scim_token_file: f
                        .scim_token_file
                        .as_deref()
                        .map(|t| self.path(&sp.key("scim_token_file"), t)),
                    scim_url: self.url_or(
                        &sp.key("scim_url"),
                        f.scim_url.as_deref(),
                        slack_scim_url(slack_api),
                        insecure,
                    ),
                },
                RawSourceKind::Google(f) => SourceKind::Google {
                    credentials_file: self.path(&sp.key("credentials_file"), &f.credentials_file),
                    customer: match &f.customer {
                        Some(c) => self.non_empty(&sp.key("customer"), c),
                        None => "my_customer".to_string(),
                    },
                    subject: self
                        .email(&sp.key("subject"), &f.subject)
                        .unwrap_or_default(),
                    token_uri: self.url_or(
                        &sp.key("token_uri"),
                        f.token_uri.as_deref(),
                        DEFAULT_GOOGLE_TOKEN_URI,
                        insecure,
                    ),
                },
            };
            self.insecure_flag(&sp, c.allow_insecure_http, &kind.urls());
            let app = match &c.app {
                Some(a) => {
                    let a = a.trim().to_lowercase();
                    self.ident(&sp.key("app"), &a, "app id");
                    a
                }
                // The workspace is the app `slack` whatever the source is called.
                None if matches!(kind, SourceKind::Slack { .. }) => "slack".to_string(),
                None => c.id.trim().to_lowercase(),
            };
            out.push(SourceConfig {
                id: c.id.clone(),
                app,
                name: c
                    .name
                    .as_ref()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty()),
                schedule,
                authoritative: c.authoritative.unwrap_or(false),
                kind,
            });
        }
        out
    }
}

/// Slack's SCIM base for a Web API base: GovSlack serves SCIM 1.1 on its own
/// host, slack.com SCIM 2.0.
fn slack_scim_url(api_url: &str) -> &'static str {
    let gov = url::Url::parse(api_url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h == "slack-gov.com" || h.ends_with(".slack-gov.com"))
        })
        .unwrap_or(false);
    if gov {
        "https://api.slack-gov.com/scim/v1"
    } else {
        "https://api.slack.com/scim/v2"
    }
}

impl Cx<'_> {
    pub(super) fn url_or(
        &mut self,
        path: &KeyPath,
        raw: Option<&str>,
        default: &str,
        insecure: bool,
    ) -> String {
        match raw {
            None => default.to_string(),
            Some(u) => self.http_url(path, u, insecure).unwrap_or_default(),
        }
    }

    /// Names in an `env` table a process can be given.
    fn env_names(&mut self, pp: &KeyPath, env: &BTreeMap<String, String>) {
        for name in env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.at(
                    &pp.key("env").key(name),
                    "invalid environment variable name: expected no `=` and no NUL",
                );
            }
        }
    }

    pub(super) fn github_org(&mut self, path: &KeyPath, org: &str) -> String {
        let org = org.trim();
        if org.is_empty() || org.contains('/') || org.contains(char::is_whitespace) {
            self.at(
                path,
                format!(
                    "invalid GitHub organization {org:?}: expected its login, e.g. \"example-inc\""
                ),
            );
        }
        org.to_string()
    }

    pub(super) fn provisioners(
        &mut self,
        path: &KeyPath,
        raw: Vec<(usize, raw::RawProvisioner)>,
        slack_api: &str,
    ) -> Vec<ProvisionerConfig> {
        use raw::RawProvisionerKind as K;
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for (i, p) in raw {
            let pp = path.index(i);
            let insecure = p.common.allow_insecure_http == Some(true);
            self.unique_id(&pp.key("id"), &p.common.id, &mut seen, "provisioner");
            let default_timeout = match p.kind {
                K::Command(_) => secs(60),
                K::Baton(_) => secs(120),
                _ => secs(30),
            };
            let timeout = self.duration(
                &pp.key("timeout"),
                p.common.timeout.as_deref(),
                default_timeout,
            );
            let kind = match p.kind {
                K::Scim(f) => ProvisionerKind::Scim {
                    url: self
                        .http_url(&pp.key("url"), &f.url, insecure)
                        .unwrap_or_default(),
                    token_file: self.path(&pp.key("token_file"), &f.token_file),
                },
                K::Okta(f) => ProvisionerKind::Okta {
                    url: self
                        .http_url(&pp.key("url"), &f.url, insecure)
                        .unwrap_or_default(),
                    token_file: self.path(&pp.key("token_file"), &f.token_file),
                },
                K::Github(f) => {
                    let mut logins = BTreeMap::new();
                    for (email, login) in f.logins {
                        let key = pp.key("logins").key(&email);
                        let email = email.trim().to_lowercase();
                        let login = login.trim().to_string();
                        if !super::is_email(&email) {
                            self.at(
                                &key,
                                "expected an email as the key (the person's Slack email)",
                            );
                        } else if login.is_empty()
                            || !login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        {
                            self.at(
                                &key,
                                format!(
                                    "invalid GitHub login {login:?}: letters, digits and `-` only"
                                ),
                            );
                        } else {
                            logins.insert(email, login);
                        }
                    }
                    ProvisionerKind::Github {
                        org: self.github_org(&pp.key("org"), &f.org),
                        token_file: self.path(&pp.key("token_file"), &f.token_file),
                        api_url: self.url_or(
                            &pp.key("api_url"),
                            f.api_url.as_deref(),
                            DEFAULT_GITHUB_API,
                            insecure,
                        ),
                        logins,
                    }
                }
                K::Webhook(f) => ProvisionerKind::Webhook {
                    url: self
                        .http_url(&pp.key("url"), &f.url, insecure)
                        .unwrap_or_default(),
                    secret_file: self.path(&pp.key("secret_file"), &f.secret_file),
                },
                K::Command(f) => {
                    self.env_names(&pp, &f.env);
                    ProvisionerKind::Command {
                        command: self.command(&pp.key("command"), &f.command),
                        env: f.env,
                    }
                }
                K::SlackUsergroup(f) => ProvisionerKind::SlackUsergroup {
                    api_url: slack_api.to_string(),
                    token_file: f
                        .token_file
                        .as_deref()
                        .map(|t| self.path(&pp.key("token_file"), t)),
                },
                K::Baton(f) => {
                    self.env_names(&pp, &f.env);
                    ProvisionerKind::Baton {
                        connector: self.command(&pp.key("connector"), &f.connector),
                        c1z_path: f
                            .c1z_path
                            .as_deref()
                            .map(|c| self.path(&pp.key("c1z_path"), c)),
                        env: f.env,
                    }
                }
            };
            self.insecure_flag(&pp, p.common.allow_insecure_http, &kind.urls());
            out.push(ProvisionerConfig {
                id: p.common.id,
                timeout,
                kind,
            });
        }
        out
    }
}
