//! The `baton` provisioner: runs a ConductorOne Baton connector with its
//! one-shot flags, `--grant-entitlement ENT --grant-principal ID
//! --grant-principal-type user` and `--revoke-grant ENT:user:ID`, on the
//! connector's own `.c1z` (`--file`, when `c1z_path` is set). The principal
//! is the person's account id in the app as the app's identity sources list
//! it (a `c1z` source reading this connector's sync), never a guess from the
//! email. It runs like a `command` (cleared environment but its `env` table,
//! own process group, killed at the timeout); exit 0 is done, any other exit
//! a failure with the stderr tail, the timeout a retry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::command::CommandProvisioner;
use super::{Action, Outcome, Provisioner, Request, Target};

/// Baton's principal type for people.
const USER_TYPE: &str = "user";

#[derive(Debug)]
pub struct BatonProvisioner {
    connector: CommandProvisioner,
    c1z: Option<PathBuf>,
}

impl BatonProvisioner {
    pub fn new(
        connector: &[String],
        c1z: Option<PathBuf>,
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Option<Self> {
        Some(Self {
            connector: CommandProvisioner::new(connector, env, timeout)?,
            c1z,
        })
    }

    async fn run(&self, flags: Vec<String>) -> Outcome {
        let mut args = Vec::new();
        if let Some(c1z) = &self.c1z {
            args.push("--file".to_string());
            args.push(c1z.display().to_string());
        }
        args.extend(flags);
        match self.connector.with_args(&args).run(Vec::new()).await {
            // The connector has no "already" exit code; 3 is just a failure.
            Outcome::AlreadyInState => Outcome::Permanent {
                message: "the Baton connector failed (exit 3)".into(),
            },
            other => other,
        }
    }

    async fn grant(&self, request: &Request) -> (Outcome, Option<Target>) {
        let Some(principal) = &request.account else {
            return (
                Outcome::Permanent {
                    message: format!(
                        "no account of {} in app {} is known from its identity sources: add a c1z source reading this connector's sync, and let it sync",
                        request.user.email, request.app
                    ),
                },
                None,
            );
        };
        let outcome = self
            .run(vec![
                "--grant-entitlement".into(),
                request.entitlement.clone(),
                "--grant-principal".into(),
                principal.clone(),
                "--grant-principal-type".into(),
                USER_TYPE.into(),
            ])
            .await;
        let target = matches!(outcome, Outcome::Applied).then(|| Target {
            account: principal.clone(),
            group: Some(request.entitlement.clone()),
        });
        (outcome, target)
    }

    async fn revoke(&self, request: &Request) -> Outcome {
        let Some(Target {
            account,
            group: Some(entitlement),
        }) = &request.target
        else {
            return Outcome::Permanent {
                message: "this grant recorded no Baton principal; remove it by hand in the app"
                    .into(),
            };
        };
        // Baton's grant id: entitlement, principal type, principal.
        let grant = format!("{entitlement}:{USER_TYPE}:{account}");
        self.run(vec!["--revoke-grant".into(), grant]).await
    }
}

impl Provisioner for BatonProvisioner {
    async fn provision(&self, request: &Request) -> Outcome {
        self.provision_for_record(request).await.0
    }

    async fn provision_for_record(&self, request: &Request) -> (Outcome, Option<Target>) {
        match request.action {
            Action::Grant => self.grant(request).await,
            Action::Revoke => (self.revoke(request).await, None),
        }
    }
}
