//! The `baton` provisioner running a stand-in connector: a script that takes
//! Baton's documented one-shot flags (`--file`, `--grant-entitlement`,
//! `--grant-principal`, `--grant-principal-type`, `--revoke-grant`), logs its
//! arguments and environment, and exits as steered (0, a failure with a
//! message on stderr, or hanging past the timeout).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use accessd::provision::baton::BatonProvisioner;
use accessd::provision::{Action, Outcome, Person, Provisioner, Request, Target};

const CONNECTOR: &str = r#"#!/bin/sh
dir=$(dirname "$0")
printf '%s\n' "$@" > "$dir/args.log"
env > "$dir/env.log"
if [ -f "$dir/hang" ]; then sleep 30; fi
if [ -f "$dir/fail" ]; then echo "rpc error: code = NotFound desc = entitlement not found" >&2; exit 1; fi
exit 0
"#;

struct Stand {
    dir: tempfile::TempDir,
}

impl Stand {
    fn new() -> Stand {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton-demo");
        std::fs::write(&path, CONNECTOR).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Stand { dir }
    }

    fn provisioner(&self, timeout: Duration) -> BatonProvisioner {
        let env = BTreeMap::from([("BATON_API_KEY".to_string(), "demo-key".to_string())]);
        BatonProvisioner::new(
            &[
                self.path("baton-demo").display().to_string(),
                "--log-level".into(),
                "error".into(),
            ],
            Some(self.path("sync.c1z")),
            &env,
            timeout,
        )
        .expect("a connector")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self) -> Vec<String> {
        read_lines(&self.path("args.log"))
    }

    fn steer(&self, file: &str) {
        std::fs::write(self.path(file), "").unwrap();
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn request(action: Action, account: Option<&str>, target: Option<Target>) -> Request {
    Request {
        action,
        idempotency_key: "k".into(),
        ticket: "T-1".into(),
        app: "salesforce".into(),
        role: "admin".into(),
        entitlement: "group:00g-admins:member".into(),
        user: Person {
            email: "ann@example.com".into(),
            slack_id: "U1".into(),
        },
        expires_at: None,
        target,
        account: account.map(String::from),
    }
}

#[tokio::test]
async fn a_grant_runs_the_connector_with_the_principal_and_the_revoke_with_the_grant_id() {
    let stand = Stand::new();
    let p = stand.provisioner(Duration::from_secs(10));
    let (outcome, target) = p
        .provision_for_record(&request(Action::Grant, Some("005-ann"), None))
        .await;
    assert_eq!(outcome, Outcome::Applied);
    let c1z = stand.path("sync.c1z").display().to_string();
    assert_eq!(
        stand.args(),
        [
            "--log-level",
            "error",
            "--file",
            &c1z,
            "--grant-entitlement",
            "group:00g-admins:member",
            "--grant-principal",
            "005-ann",
            "--grant-principal-type",
            "user"
        ]
    );
    let target = target.expect("the principal and entitlement to record");
    let env = read_lines(&stand.path("env.log"));
    assert!(
        env.contains(&"BATON_API_KEY=demo-key".to_string()),
        "{env:?}"
    );
    assert!(
        !env.iter()
            .any(|l| l.starts_with("SLACK_") || l.starts_with("CARGO")),
        "the daemon's environment leaked: {env:?}"
    );

    let outcome = p
        .provision(&request(Action::Revoke, None, Some(target)))
        .await;
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(
        stand.args()[2..],
        [
            "--file".to_string(),
            c1z,
            "--revoke-grant".into(),
            "group:00g-admins:member:user:005-ann".into()
        ]
    );
}

#[tokio::test]
async fn no_known_account_failures_and_timeouts() {
    let stand = Stand::new();
    let p = stand.provisioner(Duration::from_millis(500));
    // Nobody is guessed from an email.
    let outcome = p.provision(&request(Action::Grant, None, None)).await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("no account of ann@example.com")),
        "{outcome:?}"
    );
    assert!(
        stand.args().is_empty(),
        "the connector ran without a principal"
    );
    let outcome = p.provision(&request(Action::Revoke, None, None)).await;
    assert!(matches!(outcome, Outcome::Permanent { .. }), "{outcome:?}");

    stand.steer("fail");
    let outcome = p
        .provision(&request(Action::Grant, Some("005-ann"), None))
        .await;
    assert!(
        matches!(&outcome, Outcome::Permanent { message } if message.contains("exit 1") && message.contains("entitlement not found")),
        "{outcome:?}"
    );
    std::fs::remove_file(stand.path("fail")).unwrap();
    stand.steer("hang");
    let outcome = p
        .provision(&request(Action::Grant, Some("005-ann"), None))
        .await;
    assert!(
        matches!(&outcome, Outcome::Transient { message, .. } if message.contains("did not finish")),
        "{outcome:?}"
    );
}
