//! Secrets: the redacting `Secret` wrapper, Slack token checks, loading
//! tokens from files or the environment, and the check that every secret
//! file the config names can be read.

use std::fmt;
use std::path::Path;

use super::{Config, ConfigError, ProvisionerKind, SourceKind};

/// A secret value. `Debug` and `Display` print `[redacted]` so it can sit in
/// structs that get logged; only [`Secret::expose`] gives the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret kept in a file (surrounding whitespace trimmed). The error
    /// names the file and never the content.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value = text.trim();
        if value.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        Ok(Secret(value.to_string()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The two Slack tokens Socket Mode needs.
#[derive(Debug, Clone)]
pub struct SlackTokens {
    /// App-level token (`xapp-…`, scope `connections:write`).
    pub app: Secret,
    /// Bot token (`xoxb-…`).
    pub bot: Secret,
}

const APP_VAR: &str = "SLACK_APP_TOKEN";
const BOT_VAR: &str = "SLACK_BOT_TOKEN";

impl SlackTokens {
    /// Checks each token's prefix. Errors name the variable and the expected
    /// prefix and never contain the token.
    pub fn new(app: String, bot: String) -> Result<Self, ConfigError> {
        let problems: Vec<ConfigError> = [
            check_prefix(&app, "xapp-", "an app-level token")
                .err()
                .map(|m| ConfigError::new(Path::new(""), Some(APP_VAR.into()), m)),
            check_prefix(&bot, "xoxb-", "a bot token")
                .err()
                .map(|m| ConfigError::new(Path::new(""), Some(BOT_VAR.into()), m)),
        ]
        .into_iter()
        .flatten()
        .collect();
        match ConfigError::from_list(problems) {
            Some(e) => Err(e),
            None => Ok(SlackTokens {
                app: Secret(app),
                bot: Secret(bot),
            }),
        }
    }
}

fn check_prefix(token: &str, prefix: &str, what: &str) -> Result<(), String> {
    if token.starts_with(prefix) && token.len() > prefix.len() {
        return Ok(());
    }
    // Say which kind of token it looks like (by its prefix only) so a swapped
    // app/bot pair is obvious without printing any of the token.
    let seen = ["xapp-", "xoxb-", "xoxp-", "xoxa-", "xoxe-"]
        .iter()
        .find(|p| token.starts_with(**p))
        .map_or_else(
            || "it does not".to_string(),
            |p| format!("it starts with `{p}`"),
        );
    Err(format!(
        "expected {what} starting with `{prefix}`, but {seen}"
    ))
}

/// Where one token comes from, for messages.
struct TokenSpec {
    var: &'static str,
    file_key: &'static str,
}

const APP: TokenSpec = TokenSpec {
    var: APP_VAR,
    file_key: "slack.app_token_file",
};
const BOT: TokenSpec = TokenSpec {
    var: BOT_VAR,
    file_key: "slack.bot_token_file",
};

impl Config {
    /// Reads the Slack tokens from `slack.*_token_file` when set, else from
    /// `SLACK_APP_TOKEN` / `SLACK_BOT_TOKEN`.
    pub fn slack_tokens(&self) -> Result<SlackTokens, ConfigError> {
        self.slack_tokens_with(|name| std::env::var(name).ok())
    }

    /// As [`Config::slack_tokens`] with the environment supplied by `env`,
    /// so tests never touch the process environment.
    pub fn slack_tokens_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<SlackTokens, ConfigError> {
        let app = self.read_token(&APP, self.slack.app_token_file.as_deref(), &env);
        let bot = self.read_token(&BOT, self.slack.bot_token_file.as_deref(), &env);
        let (app, bot) = match (app, bot) {
            (Ok(app), Ok(bot)) => (app, bot),
            (app, bot) => {
                let list = [app.err(), bot.err()].into_iter().flatten().collect();
                return Err(ConfigError::from_list(list).unwrap_or_else(|| {
                    ConfigError::new(&self.path, None, "cannot read the Slack tokens")
                }));
            }
        };
        let problems: Vec<ConfigError> = [
            (&APP, &app, "xapp-", "an app-level token"),
            (&BOT, &bot, "xoxb-", "a bot token"),
        ]
        .into_iter()
        .filter_map(|(spec, (value, from_file), prefix, what)| {
            check_prefix(value, prefix, what).err().map(|m| {
                if let Some(file) = from_file {
                    self.err(spec.file_key, format!("{}: {m}", file.display()))
                } else {
                    ConfigError::new(Path::new(""), Some(spec.var.into()), m)
                }
            })
        })
        .collect();
        if let Some(e) = ConfigError::from_list(problems) {
            return Err(e);
        }
        Ok(SlackTokens {
            app: Secret(app.0),
            bot: Secret(bot.0),
        })
    }

    /// The bot token, when a `slack` source or `slack_usergroup` provisioner
    /// without its own `token_file` borrows it; `None` when nothing does.
    pub fn borrowed_bot_token(&self) -> Result<Option<Secret>, String> {
        let borrows = self.sources.iter().any(|s| {
            matches!(
                &s.kind,
                SourceKind::Slack {
                    token_file: None,
                    ..
                }
            )
        }) || self.provisioners.iter().any(|p| {
            matches!(
                &p.kind,
                ProvisionerKind::SlackUsergroup {
                    token_file: None,
                    ..
                }
            )
        });
        if !borrows {
            return Ok(None);
        }
        let env = |name: &str| std::env::var(name).ok();
        let (token, _) = self
            .read_token(&BOT, self.slack.bot_token_file.as_deref(), &env)
            .map_err(|e| e.to_string())?;
        Ok(Some(Secret(token)))
    }

    /// Every secret file the config names, with its key (`sources[2].token_file`).
    pub fn secret_files(&self) -> Vec<(String, &Path)> {
        let mut files = Vec::new();
        let slack = [
            (APP.file_key, self.slack.app_token_file.as_deref()),
            (BOT.file_key, self.slack.bot_token_file.as_deref()),
        ];
        files.extend(
            slack
                .into_iter()
                .filter_map(|(key, file)| file.map(|f| (key.to_string(), f))),
        );
        for (i, source) in self.sources.iter().enumerate() {
            let named: Vec<(&str, &Path)> = match &source.kind {
                SourceKind::Scim { token_file, .. }
                | SourceKind::Okta { token_file, .. }
                | SourceKind::Github { token_file, .. } => vec![("token_file", token_file)],
                SourceKind::Google {
                    credentials_file, ..
                } => vec![("credentials_file", credentials_file)],
                SourceKind::Slack {
                    token_file,
                    scim_token_file,
                    ..
                } => [
                    ("token_file", token_file),
                    ("scim_token_file", scim_token_file),
                ]
                .into_iter()
                .filter_map(|(key, file)| file.as_deref().map(|f| (key, f)))
                .collect(),
                SourceKind::File { .. } | SourceKind::C1z { .. } => continue,
            };
            for (key, file) in named {
                files.push((format!("sources[{i}].{key}"), file));
            }
        }
        for (i, provisioner) in self.provisioners.iter().enumerate() {
            let (key, file) = match &provisioner.kind {
                ProvisionerKind::Scim { token_file, .. }
                | ProvisionerKind::Okta { token_file, .. }
                | ProvisionerKind::Github { token_file, .. } => {
                    ("token_file", token_file.as_path())
                }
                ProvisionerKind::Webhook { secret_file, .. } => {
                    ("secret_file", secret_file.as_path())
                }
                ProvisionerKind::SlackUsergroup {
                    token_file: Some(token_file),
                    ..
                } => ("token_file", token_file.as_path()),
                ProvisionerKind::Command { .. }
                | ProvisionerKind::Baton { .. }
                | ProvisionerKind::SlackUsergroup { .. } => continue,
            };
            files.push((format!("provisioners[{i}].{key}"), file));
        }
        files
    }

    /// Reads every secret file (and drops what it read): each one missing,
    /// unreadable or empty is reported, by key and path, in one error, so
    /// nothing is created before the operator has fixed them all.
    pub fn check_secret_files(&self) -> Result<(), ConfigError> {
        let problems = self
            .secret_files()
            .into_iter()
            .filter_map(|(key, file)| Secret::from_file(file).err().map(|why| self.err(&key, why)))
            .collect();
        match ConfigError::from_list(problems) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The Slack tokens, after every secret file checked: all problems of
    /// both at once.
    pub fn check_secrets(&self) -> Result<SlackTokens, ConfigError> {
        let files = self.check_secret_files();
        let tokens = self.slack_tokens();
        match (tokens, files) {
            (Ok(tokens), Ok(())) => Ok(tokens),
            (tokens, files) => {
                let mut list: Vec<ConfigError> = Vec::new();
                for err in [files.err(), tokens.err()].into_iter().flatten() {
                    list.extend(err.problems().map(|p| ConfigError {
                        more: Vec::new(),
                        ..p.clone()
                    }));
                }
                // A token file that fails is in both lists; say it once.
                let mut seen = std::collections::HashSet::new();
                list.retain(|p| seen.insert((p.key.clone(), p.message.clone())));
                Err(ConfigError::from_list(list).unwrap_or_else(|| {
                    ConfigError::new(&self.path, None, "cannot read the secrets")
                }))
            }
        }
    }

    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError::new(&self.path, Some(key.into()), message)
    }

    /// The token, and the file it came from (`None`: the environment).
    fn read_token<'p>(
        &self,
        spec: &TokenSpec,
        file: Option<&'p Path>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(String, Option<&'p Path>), ConfigError> {
        if let Some(file) = file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                self.err(
                    spec.file_key,
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(self.err(spec.file_key, format!("{} is empty", file.display())));
            }
            return Ok((token.to_string(), Some(file)));
        }
        match env(spec.var).map(|v| v.trim().to_string()) {
            Some(v) if !v.is_empty() => Ok((v, None)),
            _ => Err(ConfigError::new(
                Path::new(""),
                Some(spec.var.into()),
                format!(
                    "not set; set {} in the environment or {} in {}",
                    spec.var,
                    spec.file_key,
                    self.path.display()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("xoxb-very-secret".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.to_string(), "[redacted]");
        assert_eq!(s.expose(), "xoxb-very-secret");
        let t = SlackTokens::new("xapp-1-abc".into(), "xoxb-2-def".into()).expect("valid");
        let shown = format!("{t:?}");
        assert!(!shown.contains("abc") && !shown.contains("def"), "{shown}");
    }

    #[test]
    fn wrong_prefixes_are_named_not_echoed() {
        let e = SlackTokens::new("xoxb-swapped-1".into(), "xapp-swapped-2".into())
            .expect_err("swapped");
        let text = e.to_string();
        assert!(
            text.contains("SLACK_APP_TOKEN") && text.contains("`xapp-`"),
            "{text}"
        );
        assert!(
            text.contains("SLACK_BOT_TOKEN") && text.contains("`xoxb-`"),
            "{text}"
        );
        assert!(!text.contains("swapped"), "{text}");
    }
}
