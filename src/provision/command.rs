//! The `command` provisioner: runs a program without a shell, one JSON
//! document on stdin (DESIGN.md §4). Exit 0 = done, 3 = already in that
//! state, 75 (EX_TEMPFAIL) or a timeout = try again later, anything else =
//! failed; the last 2 KB of stderr explain a failure.
//!
//! The program gets a cleared environment (its `env` table, `PATH` and
//! `LANG`, nothing of the daemon's, Slack tokens least of all) and its own
//! process group, killed whole at the timeout so no grandchild lingers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Outcome, Provisioner, Request};

/// How much of stderr a failure message keeps.
const STDERR_TAIL: usize = 2048;
/// Exit status meaning "already granted / already revoked".
pub const EXIT_ALREADY: i32 = 3;
/// sysexits' EX_TEMPFAIL: the program asks to be retried.
pub const EXIT_TEMPFAIL: i32 = 75;
/// `PATH` when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The only variables passed on from the daemon (the `env` table wins).
const PASSED_ON: [&str; 2] = ["PATH", "LANG"];

#[derive(Clone)]
pub struct CommandProvisioner {
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    timeout: Duration,
}

/// `env` often carries the target app's API token: only its names are shown.
impl std::fmt::Debug for CommandProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandProvisioner")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl CommandProvisioner {
    /// `command[0]` is the program, the rest its arguments; validation
    /// guarantees a non-empty command.
    pub fn new(
        command: &[String],
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Option<Self> {
        let (program, args) = command.split_first()?;
        Some(Self {
            program: PathBuf::from(program),
            args: args.to_vec(),
            env: env.clone(),
            timeout,
        })
    }

    /// The same program with `extra` arguments after its own (Baton's
    /// grant and revoke flags).
    pub(super) fn with_args(&self, extra: &[String]) -> Self {
        let mut with = self.clone();
        with.args.extend_from_slice(extra);
        with
    }

    pub(super) async fn run(&self, stdin: Vec<u8>) -> Outcome {
        let mut command = tokio::process::Command::new(&self.program);
        command.env_clear();
        for name in PASSED_ON {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            } else if name == "PATH" {
                command.env(name, DEFAULT_PATH);
            }
        }
        let mut child = match command
            .envs(&self.env)
            .args(&self.args)
            // Its own group, led by the child, so the timeout can end the
            // whole tree it started.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(err) => {
                return Outcome::Permanent {
                    message: format!("cannot run {}: {err}", self.program.display()),
                }
            }
        };
        let group = child.id();
        let mut input = child.stdin.take();
        let mut errors = child.stderr.take();
        let work = async {
            if let Some(input) = input.as_mut() {
                // A program that exits without reading stdin is not an error here.
                let _ = input.write_all(&stdin).await;
                let _ = input.shutdown().await;
            }
            drop(input);
            let mut stderr = Vec::new();
            if let Some(errors) = errors.as_mut() {
                let _ = errors.read_to_end(&mut stderr).await;
            }
            let status = child.wait().await;
            (status, stderr)
        };
        let (status, stderr) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                // kill_on_drop ends the child when `work` (holding it) is
                // dropped; what it started in its group goes with it here.
                if let Some(group) = group {
                    kill_group(group);
                }
                return Outcome::Transient {
                    message: format!(
                        "{} did not finish within {:?}",
                        self.program.display(),
                        self.timeout
                    ),
                    retry_after: None,
                };
            }
        };
        let tail = stderr_tail(&stderr);
        match status.map(|s| s.code()) {
            Ok(Some(0)) => Outcome::Applied,
            Ok(Some(EXIT_ALREADY)) => Outcome::AlreadyInState,
            Ok(Some(EXIT_TEMPFAIL)) => Outcome::Transient {
                message: failure(&self.program, "exit 75", &tail),
                retry_after: None,
            },
            Ok(Some(code)) => Outcome::Permanent {
                message: failure(&self.program, &format!("exit {code}"), &tail),
            },
            Ok(None) => Outcome::Transient {
                message: failure(&self.program, "killed by a signal", &tail),
                retry_after: None,
            },
            Err(err) => Outcome::Transient {
                message: format!("waiting for {}: {err}", self.program.display()),
                retry_after: None,
            },
        }
    }
}

/// SIGKILL to every process of the group `leader` leads.
fn kill_group(leader: u32) {
    let Ok(pgid) = libc::pid_t::try_from(leader) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // group that already ended only makes it return ESRCH.
    let result = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if result != 0 {
        tracing::debug!(pgid, error = %std::io::Error::last_os_error(), "killing a provisioner's group");
    }
}

fn failure(program: &std::path::Path, how: &str, tail: &str) -> String {
    if tail.is_empty() {
        format!("{} failed ({how})", program.display())
    } else {
        format!("{} failed ({how}): {tail}", program.display())
    }
}

/// The last 2 KB of stderr, cut on a character boundary, trimmed.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let mut start = text.len().saturating_sub(STDERR_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

impl Provisioner for CommandProvisioner {
    async fn provision(&self, request: &Request) -> Outcome {
        match serde_json::to_vec(request) {
            Ok(stdin) => self.run(stdin).await,
            Err(err) => Outcome::Permanent {
                message: format!("cannot encode the request: {err}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::{Action, Person};

    #[test]
    fn debug_names_env_variables_without_their_values() {
        let env = BTreeMap::from([("GH_TOKEN".to_string(), "ghp_secret_value".to_string())]);
        let p = CommandProvisioner::new(&["/bin/cat".into()], &env, Duration::from_secs(1))
            .expect("command");
        let shown = format!("{p:?}");
        assert!(
            shown.contains("GH_TOKEN") && !shown.contains("ghp_secret_value"),
            "{shown}"
        );
    }

    fn request() -> Request {
        Request {
            action: Action::Grant,
            idempotency_key: "grant-T-42-1".into(),
            ticket: "T-42".into(),
            app: "github".into(),
            role: "maintainer".into(),
            entitlement: "gh-maintainers".into(),
            user: Person {
                email: "ann@example.com".into(),
                slack_id: "UANN".into(),
            },
            expires_at: None,
            target: None,
            account: None,
        }
    }

    /// A script in a temp folder; `$1..` are the provisioner's arguments.
    fn script(dir: &tempfile::TempDir, body: &str) -> String {
        let path = dir.path().join("provision.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn provisioner(command: Vec<String>, timeout: Duration) -> CommandProvisioner {
        let env = BTreeMap::from([("PROVISION_MODE".to_string(), "test".to_string())]);
        CommandProvisioner::new(&command, &env, timeout).unwrap()
    }

    #[tokio::test]
    async fn passes_the_request_on_stdin_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stdin.json");
        let args_out = dir.path().join("args.txt");
        let program = script(
            &dir,
            &format!(
                "cat > {}\nprintf '%s|' \"$@\" \"$PROVISION_MODE\" > {}",
                out.display(),
                args_out.display()
            ),
        );
        let p = provisioner(
            vec![program, "$(touch /tmp/pwned)".into(), "a b".into()],
            Duration::from_secs(10),
        );
        assert_eq!(p.provision(&request()).await, Outcome::Applied);
        let stdin: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(stdin["action"], "grant");
        assert_eq!(stdin["idempotency_key"], "grant-T-42-1");
        assert_eq!(stdin["user"]["email"], "ann@example.com");
        assert_eq!(stdin["entitlement"], "gh-maintainers");
        // Arguments arrive verbatim: no shell expanded them.
        assert_eq!(
            std::fs::read_to_string(&args_out).unwrap(),
            "$(touch /tmp/pwned)|a b|test|"
        );
    }

    #[tokio::test]
    async fn exit_codes_map_to_outcomes_with_the_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        type Check = fn(&Outcome) -> bool;
        let cases: [(&str, Check); 4] = [
            ("exit 3", |o| *o == Outcome::AlreadyInState),
            (
                "echo busy >&2; exit 75",
                |o| matches!(o, Outcome::Transient { message, .. } if message.contains("busy")),
            ),
            (
                "echo 'no such group' >&2; exit 1",
                |o| matches!(o, Outcome::Permanent { message } if message.contains("no such group") && message.contains("exit 1")),
            ),
            ("kill -9 $$", |o| matches!(o, Outcome::Transient { .. })),
        ];
        for (body, expected) in cases {
            let p = provisioner(vec![script(&dir, body)], Duration::from_secs(10));
            let outcome = p.provision(&request()).await;
            assert!(expected(&outcome), "{body}: {outcome:?}");
        }
    }

    #[tokio::test]
    async fn a_slow_program_is_killed_at_the_timeout_and_retried_later() {
        let dir = tempfile::tempdir().unwrap();
        let p = provisioner(vec![script(&dir, "sleep 30")], Duration::from_millis(200));
        let started = std::time::Instant::now();
        let outcome = p.provision(&request()).await;
        assert!(
            matches!(outcome, Outcome::Transient { ref message, .. } if message.contains("did not finish")),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn keeps_only_the_last_2kb_of_stderr_and_reports_a_missing_program() {
        let dir = tempfile::tempdir().unwrap();
        let p = provisioner(
            vec![script(
                &dir,
                "i=0; while [ $i -lt 500 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 2",
            )],
            Duration::from_secs(10),
        );
        let Outcome::Permanent { message } = p.provision(&request()).await else {
            panic!("expected a permanent failure");
        };
        assert!(message.contains("line 499") && !message.contains("line 1\n"));
        assert!(message.len() < STDERR_TAIL + 200);

        let missing = provisioner(
            vec!["/nonexistent/provision".into()],
            Duration::from_secs(1),
        );
        assert!(
            matches!(missing.provision(&request()).await, Outcome::Permanent { message } if message.contains("cannot run"))
        );
        assert_eq!(
            stderr_tail("é".repeat(1500).as_bytes()).chars().count(),
            1024
        );
    }

    #[tokio::test]
    async fn the_program_sees_only_its_env_table_path_and_lang() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("env.txt");
        let p = provisioner(
            vec![script(&dir, &format!("env > {}", seen.display()))],
            Duration::from_secs(10),
        );
        // The test process has HOME, CARGO_* and more; the daemon has its
        // Slack tokens: none of it may reach the program.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        assert!(matches!(p.provision(&request()).await, Outcome::Applied));
        let env = std::fs::read_to_string(&seen).unwrap();
        let mut names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            // sh itself sets these for any script.
            .filter(|k| !["PWD", "SHLVL", "_", "OLDPWD"].contains(k))
            .collect();
        names.sort_unstable();
        let mut expected = vec!["PATH", "PROVISION_MODE"];
        if std::env::var_os("LANG").is_some() {
            expected.insert(0, "LANG");
        }
        assert_eq!(names, expected, "{env}");
    }

    #[tokio::test]
    async fn the_timeout_kills_what_the_program_started_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let p = provisioner(
            vec![script(
                &dir,
                &format!("sleep 30 &\necho $! > {}\nwait", pid_file.display()),
            )],
            Duration::from_millis(500),
        );
        let outcome = p.provision(&request()).await;
        assert!(matches!(outcome, Outcome::Transient { .. }), "{outcome:?}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid = pid.trim();
        // Give the kernel a moment to deliver the signal.
        let mut alive = true;
        for _ in 0..50 {
            let status = std::process::Command::new("kill")
                .args(["-0", pid])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            // A zombie still answers kill -0; /proc says whether it ran on.
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            alive = status.success() && !state.contains(") Z ");
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive, "the grandchild {pid} outlived the timeout");
    }
}
