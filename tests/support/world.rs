//! A small Slack organisation acting on a running daemon: people by Slack id,
//! the daemon with a given catalog, and the steps a person takes (request
//! through `/access`, open a DM, click a button by its text, fill a modal).
//! Checks read the database as the CLI would.

use std::time::Duration;

use accessd::domain::ticket::Status;
use accessd::store::Store;
use serde_json::{json, Value};

use super::daemon::{config_listening, fast_options, Daemon};
use super::{payloads, FakeSlack};

pub const WAIT: Duration = Duration::from_secs(5);

pub const ANN: &str = "UANN";
pub const BOB: &str = "UBOB";
pub const CAROL: &str = "UCAROL";
pub const DANA: &str = "UDANA";
pub const IVAN: &str = "UIVAN";
pub const EVE: &str = "UEVE";
pub const ZED: &str = "UZED";
pub const SEC: &str = "USEC";

/// Channels every world's workspace has (id, name), for alert routing by `#name`.
pub const SEC_ALERTS: (&str, &str) = ("CSECALERTS", "sec-alerts");
pub const IT_OPS: (&str, &str) = ("CITOPS", "it-ops");
pub const DIGESTS: (&str, &str) = ("GDIGESTS", "security-digest");

/// Changes a test makes to the daemon's run options (shorter timers).
pub type AdjustOptions = Box<dyn Fn(&mut accessd::RunOptions) + Send + Sync>;

pub struct World {
    pub catalog: String,
    pub options: Option<AdjustOptions>,
    pub fake: FakeSlack,
    /// `server.listen` of the daemon; `""` (off) unless a test asks.
    pub listen: String,
    pub dir: tempfile::TempDir,
    pub daemon: Option<Daemon>,
}

impl World {
    pub async fn start_with(catalog: &str) -> World {
        Self::start_adjusted(catalog, None).await
    }

    /// As [`World::start_with`], with the daemon's run options adjusted.
    pub async fn start_adjusted(catalog: &str, options: Option<AdjustOptions>) -> World {
        Self::start_listening(catalog, "", options).await
    }

    /// As [`World::start_adjusted`], with the health and metrics listener on `listen`.
    pub async fn start_listening(
        catalog: &str,
        listen: &str,
        options: Option<AdjustOptions>,
    ) -> World {
        let mut world = Self::unbooted(catalog, listen, options).await;
        world.boot().await;
        world
    }

    /// The workspace and its people, the daemon not started yet (a test
    /// sets up more of Slack first, then calls [`World::boot`]).
    pub async fn unbooted(catalog: &str, listen: &str, options: Option<AdjustOptions>) -> World {
        let fake = FakeSlack::start().await;
        for (id, email, name) in [
            (ANN, "ann@example.com", "Ann Lee"),
            (BOB, "bob@example.com", "Bob Ray"),
            (CAROL, "carol@example.com", "Carol Diaz"),
            (DANA, "dana@example.com", "Dana Kim"),
            (IVAN, "ivan@example.com", "Ivan Petrov"),
            (EVE, "eve@example.com", "Eve Outsider"),
            (ZED, "zed@contractor.example", "Zed Contractor"),
            (SEC, "secops@example.com", "Sec Ops"),
        ] {
            fake.add_user(id, email, name);
        }
        for (id, name) in [SEC_ALERTS, IT_OPS, DIGESTS] {
            fake.add_channel(id, name);
        }
        let dir = tempfile::tempdir().unwrap();
        World {
            catalog: catalog.to_string(),
            options,
            fake,
            listen: listen.to_string(),
            dir,
            daemon: None,
        }
    }

    pub async fn boot(&mut self) {
        let config = config_listening(&self.fake, self.dir.path(), 2, &self.listen, &self.catalog);
        let mut options = fast_options(&config);
        if let Some(adjust) = &self.options {
            adjust(&mut options);
        }
        let daemon = Daemon::start(config.clone(), options);
        self.fake
            .wait_until(Duration::from_secs(10), |f| {
                (f.live_connections().len() >= 2).then_some(())
            })
            .await
            .expect("connected");
        self.daemon = Some(daemon);
    }

    pub async fn restart(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop().await.expect("clean stop");
        }
        self.fake
            .wait_until(WAIT, |f| f.live_connections().is_empty().then_some(()))
            .await
            .expect("old sockets closed");
        self.boot().await;
    }

    pub async fn stop(mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop().await.expect("clean stop");
        }
    }

    /// Waits until `source` has had a good sync after `after`.
    pub async fn wait_synced(&self, source: &str, after: chrono::DateTime<chrono::Utc>) {
        let db = Store::open(&self.dir.path().join("accessd.db")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let states = db.source_states().await.unwrap();
            if states
                .iter()
                .any(|s| s.id == source && s.last_success_at.is_some_and(|t| t > after))
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{source} did not sync: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        db.close().await;
    }

    /// A read-only look at the database, as `accessd tickets` would take.
    pub async fn ticket_status(&self, reference: &str) -> Status {
        let store = Store::open(&self.dir.path().join("accessd.db")).unwrap();
        let id = accessd::domain::ticket::parse_ticket_ref(reference).unwrap();
        let status = store
            .ticket(id)
            .await
            .unwrap()
            .expect("ticket exists")
            .status;
        store.close().await;
        status
    }

    pub async fn audit_actions(&self, reference: &str) -> Vec<String> {
        let store = Store::open(&self.dir.path().join("accessd.db")).unwrap();
        let rows = store.audit_rows(None).await.unwrap();
        assert!(store.verify_audit().await.unwrap().is_intact());
        store.close().await;
        rows.into_iter()
            .filter(|r| r.subject == reference)
            .map(|r| r.action)
            .collect()
    }

    /// Sends an envelope and returns the ack payload.
    pub async fn ack(&self, envelope_id: &str) -> Option<Value> {
        self.fake
            .wait_ack(envelope_id, WAIT)
            .await
            .expect("acked")
            .payload
    }

    /// Types `/access text` and waits for the modal.
    pub async fn open_request(&self, user: &str, text: &str) -> Value {
        let before = self
            .fake
            .last_modal(user)
            .and_then(|m| m["id"].as_str().map(str::to_string));
        let id = self.fake.run_command(user, "/access", text);
        assert_eq!(
            self.ack(&id).await,
            None,
            "the command opens a modal, nothing in the channel"
        );
        self.fake
            .wait_until(WAIT, |f| {
                f.last_modal(user)
                    .filter(|m| m["id"].as_str().map(str::to_string) != before)
            })
            .await
            .expect("request modal opened")
    }

    /// Submits the top modal of `user` with `values`; returns the ack payload.
    pub async fn submit(&self, user: &str, values: Value) -> Option<Value> {
        let modal = self.fake.last_modal(user).expect("a modal is open");
        let id = self.fake.submit(user, &modal, values);
        self.ack(&id).await
    }

    /// The whole request flow from `/access text`; returns `T-n`.
    pub async fn request(
        &self,
        user: &str,
        text: &str,
        roles: &[&str],
        reason: &str,
        duration: &str,
    ) -> String {
        let modal = self.open_request(user, text).await;
        assert!(
            has_block(&modal, "roles") || roles.is_empty(),
            "app preselected: roles step first"
        );
        let ack = self
            .submit(user, roles_values(roles, reason))
            .await
            .expect("step answered");
        assert_eq!(ack["response_action"], "update", "{ack}");
        let ack = self
            .submit(
                user,
                json!({ "duration": { "duration_input": payloads::plain_text_value(duration) } }),
            )
            .await
            .expect("step answered");
        assert_eq!(ack["response_action"], "update", "{ack}");
        let ack = self.submit(user, json!({})).await.expect("submitted");
        assert_eq!(ack["response_action"], "update", "{ack}");
        let text = ack["view"]["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        text.split('*')
            .nth(1)
            .filter(|t| t.starts_with("T-"))
            .unwrap_or_else(|| panic!("no ticket in {text}"))
            .to_string()
    }

    /// The latest DM to `user` that mentions `reference`.
    pub async fn dm_about(&self, user: &str, reference: &str) -> Value {
        self.fake
            .wait_until(WAIT, |f| {
                f.messages_to(user)
                    .into_iter()
                    .rev()
                    .find(|m| m.to_string().contains(reference))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no DM to {user} about {reference}: {:?}",
                    self.fake.messages_to(user)
                )
            })
    }

    /// Clicks `button` on the DM and submits the modal it opens.
    pub async fn decide(
        &self,
        user: &str,
        reference: &str,
        button: &str,
        comment: &str,
        duration: Option<&str>,
    ) -> Option<Value> {
        let dm = self.dm_about(user, reference).await;
        let before = self
            .fake
            .last_modal(user)
            .and_then(|m| m["id"].as_str().map(str::to_string));
        let click = self.fake.click(user, &dm, button);
        self.ack(&click).await;
        self.fake
            .wait_until(WAIT, |f| {
                f.last_modal(user)
                    .filter(|m| m["id"].as_str().map(str::to_string) != before)
            })
            .await
            .unwrap_or_else(|| panic!("{button} opened no modal for {user}"));
        let mut values =
            json!({ "comment": { "comment_input": payloads::plain_text_value(comment) } });
        if let Some(d) = duration {
            values["duration"] = json!({ "duration_input": payloads::plain_text_value(d) });
        }
        self.submit(user, values).await
    }
}

impl World {
    /// The ephemeral answer `user` got where they clicked that mentions `needle`.
    pub async fn told(&self, user: &str, needle: &str) -> Value {
        self.fake
            .wait_until(WAIT, |f| {
                f.ephemerals_to(user)
                    .into_iter()
                    .find(|m| text_of(m).contains(needle))
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{user} was not told {needle:?}: {:?}",
                    self.fake.ephemerals_to(user)
                )
            })
    }
}

pub fn has_block(view: &Value, block_id: &str) -> bool {
    view["blocks"]
        .as_array()
        .is_some_and(|b| b.iter().any(|b| b["block_id"] == block_id))
}

pub fn roles_values(roles: &[&str], reason: &str) -> Value {
    let options: Vec<Value> = roles
        .iter()
        .map(|r| json!({ "text": { "type": "plain_text", "text": r, "emoji": true }, "value": r }))
        .collect();
    json!({
        "roles": { "roles_select": { "type": "checkboxes", "selected_options": options } },
        "reason": { "reason_input": payloads::plain_text_value(reason) },
    })
}

pub fn text_of(message: &Value) -> String {
    message.to_string()
}

pub fn buttons_of(message: &Value) -> Vec<String> {
    super::buttons(message)
        .into_iter()
        .map(|b| b.text)
        .collect()
}
