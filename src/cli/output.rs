//! What the store-backed subcommands share: their error type (which carries
//! the exit code), running one async block against the store on a
//! current-thread runtime, and the one place output is printed — pretty JSON
//! or a human table/text — and the RFC 4180 CSV field.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{EXIT_FAILURE, EXIT_USAGE};
use crate::config;
use crate::store::{Store, StoreError};

/// A failed subcommand: the message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Exit 1: the command was fine, what it met was not.
    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    /// Exit 2: the command line or the config is wrong.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::runtime(format!("accessd: {err}"))
    }
}

pub(crate) type Outcome = Result<(), Failure>;

/// Turns a subcommand's outcome into the process exit code.
pub(crate) fn finish(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Loads the config (no Slack tokens needed), opens the store and runs `work`
/// on a current-thread runtime, closing the store afterwards whatever happened.
pub(crate) fn with_store<F, Fut>(config_path: &Path, work: F) -> Outcome
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let config = config::load(config_path).map_err(|err| Failure::usage(err.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            Failure::runtime(format!("accessd: cannot start the async runtime: {err}"))
        })?;
    let path = config.database.path;
    runtime.block_on(async move {
        let store = Store::open(&path)
            .map_err(|err| Failure::runtime(format!("accessd: {}: {err}", path.display())))?;
        let outcome = work(store.clone()).await;
        store.close().await;
        outcome
    })
}

/// Prints `value` as pretty JSON, or the human rendering.
pub(crate) fn emit<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> Outcome {
    let text = if json {
        serde_json::to_string_pretty(value)
            .map_err(|err| Failure::runtime(format!("accessd: {err}")))?
    } else {
        human()
    };
    print_out(&text)
}

/// Writes `text` and a newline to stdout. A closed pipe (`| head`) is not an
/// error: the reader has what it wanted.
pub(crate) fn print_out(text: &str) -> Outcome {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{}", text.trim_end_matches('\n')).and_then(|()| stdout.flush());
    match written {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::runtime(format!("accessd: writing output: {err}")))
        }
        _ => Ok(()),
    }
}

/// Columns separated by two spaces, each as wide as its widest cell.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Text from Slack users (reasons, comments) must not move the terminal's
/// cursor or break a table row: control characters become spaces.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// RFC 3339 in UTC to the second: for tables.
pub(crate) fn rfc3339_short(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `-` for a missing value in human output.
pub(crate) fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// One RFC 4180 field. Text from sources and reviewers must not run as a
/// spreadsheet formula when the auditor opens the file: a leading `=`, `+`,
/// `-`, `@` (and tab or CR, which some spreadsheets skip before one) gets a
/// `'` in front. Then a field with a comma, quote or line break is quoted,
/// its quotes doubled.
pub(crate) fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_neutralise_control_characters() {
        let mut table = Table::new(&["ID", "NAME", "NOTE"]);
        table.row(vec!["T-1".into(), "ann".into(), "x".into()]);
        table.row(vec!["T-10".into(), "bob\x1b[2J\nevil".into(), "".into()]);
        assert_eq!(
            table.render(),
            "ID    NAME          NOTE\n\
             T-1   ann           x\n\
             T-10  bob [2J evil\n"
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("Lee, Ann"), "\"Lee, Ann\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("=a,b"), "\"'=a,b\"");
        assert_eq!(csv_field("a=b"), "a=b");
    }
}
