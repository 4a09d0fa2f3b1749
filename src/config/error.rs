//! `ConfigError`: every configuration problem, located by file, dotted key path and line:column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One configuration problem, plus any further problems found in the same pass.
///
/// Display prints one problem per line as `<file>:<line>:<col>: <key>: <message>`;
/// the location is left out when it is unknown (a default value, a missing
/// environment variable) and the file when the error has none (token checks
/// made outside a config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path, e.g. `apps[1].roles[0].stages[0].required`.
    pub key: Option<String>,
    /// 1-based line and column.
    pub line_col: Option<(usize, usize)>,
    pub message: String,
    /// Other problems from the same validation pass; empty for a single error.
    pub more: Vec<ConfigError>,
}

impl ConfigError {
    pub fn new(file: &Path, key: Option<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key,
            line_col: None,
            message: message.into(),
            more: Vec::new(),
        }
    }

    /// This problem followed by the others reported with it.
    pub fn problems(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(self.more.iter())
    }

    /// Folds a non-empty list into one error; `None` when the list is empty.
    pub(crate) fn from_list(mut list: Vec<ConfigError>) -> Option<ConfigError> {
        if list.is_empty() {
            return None;
        }
        let mut first = list.remove(0);
        first.more.extend(list);
        Some(first)
    }

    fn fmt_one(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        let mut wrote_prefix = false;
        if !file.is_empty() {
            write!(f, "{file}")?;
            if let Some((line, col)) = self.line_col {
                write!(f, ":{line}:{col}")?;
            }
            wrote_prefix = true;
        }
        if let Some(key) = &self.key {
            if wrote_prefix {
                write!(f, ": ")?;
            }
            write!(f, "{key}")?;
            wrote_prefix = true;
        }
        if wrote_prefix {
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_one(f)?;
        for other in &self.more {
            writeln!(f)?;
            other.fmt_one(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of a byte offset into `text`.
pub(crate) fn line_col(text: &str, span: &Range<usize>) -> (usize, usize) {
    let mut offset = span.start.min(text.len());
    // toml reports some parse errors in characters rather than bytes; never
    // slice inside a UTF-8 sequence whichever it was.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, &(0..1)), (1, 1));
        assert_eq!(line_col(text, &(6..7)), (2, 1));
        assert_eq!(line_col(text, &(10..11)), (2, 4));
        assert_eq!(line_col(text, &(999..1000)), (3, 1));
    }

    #[test]
    fn display_one_line_per_problem() {
        let mut e = ConfigError::new(Path::new("a.toml"), Some("slack.x".into()), "bad");
        e.line_col = Some((2, 1));
        e.more
            .push(ConfigError::new(Path::new("a.toml"), None, "worse"));
        assert_eq!(e.to_string(), "a.toml:2:1: slack.x: bad\na.toml: worse");
        let bare = ConfigError::new(Path::new(""), Some("SLACK_BOT_TOKEN".into()), "m");
        assert_eq!(bare.to_string(), "SLACK_BOT_TOKEN: m");
    }
}
