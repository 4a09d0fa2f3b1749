//! The `accessd` binary run as an operator runs the CLI: a clean environment
//! (no Slack tokens, no `ACCESSD_CONFIG`, a fixed `USER`), the test's config
//! file, and checks of the exit code that print both streams when it is off.

// Included by path in tests that use only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The CLI pointed at one config file (run from that file's folder).
pub struct Cli {
    config: PathBuf,
}

impl Cli {
    pub fn new(config: &Path) -> Self {
        Self {
            config: config.to_path_buf(),
        }
    }

    /// `accessd --config FILE` in a clean environment, to add arguments to.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_accessd"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SLACK_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env_remove("ACCESSD_CONFIG")
            .env_remove("SUDO_USER")
            // Set to show it is not believed: the actor is the OS user.
            .env("USER", "tester")
            .env("RUST_LOG", "warn")
            .current_dir(self.config.parent().expect("config in a folder"))
            .arg("--config")
            .arg(&self.config);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run accessd")
    }

    /// Runs, expects exit `code` and returns (stdout, stderr).
    pub fn expect_both(&self, args: &[&str], code: i32) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = (utf8(&out.stdout), utf8(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        (stdout, stderr)
    }

    /// Runs, expects exit `code` and returns stdout.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        self.expect_both(args, code).0
    }

    /// Runs, expects exit `code` and parses stdout as JSON.
    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let out = self.expect(args, code);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

pub fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An RFC 4180 reader (CRLF records, quoted fields), to check CSV output as a
/// spreadsheet would read it.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
            (false, '\n') => panic!("records end with CRLF"),
            (false, c) => field.push(c),
        }
        if !quoted && c == '\r' {
            row.push(std::mem::take(&mut field));
            rows.push(std::mem::take(&mut row));
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "last record unterminated"
    );
    rows
}

/// The audit actor the CLI must record in these tests: the OS user running
/// them, as `id` names it (the `USER=tester` the commands get is ignored).
pub fn os_actor() -> String {
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).output().expect("id runs");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    };
    format!("cli:{} (uid {})", id("-un"), id("-u"))
}
