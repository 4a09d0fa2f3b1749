//! In-process fake Slack for integration tests: shared state, handle, ids and waiting helpers.
//!
//! `FakeSlack::start()` binds a real HTTP server (Web API, `http://127.0.0.1:PORT/api`) and a
//! real WebSocket server (Socket Mode, `ws://127.0.0.1:WSPORT/link/?ticket=…`) on ephemeral
//! loopback ports. The handle is a cheap `Clone`; dropping the last clone (or calling
//! `shutdown()`) stops both servers.
#![allow(dead_code, unused_imports)]

pub mod cli;
pub mod daemon;
pub mod payloads;
pub mod socket;
pub mod user;
pub mod web_api;
pub mod world;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngExt;
use serde_json::{json, Value};
use tokio::sync::watch;

pub use payloads::{
    multi_users_value, plain_text_value, redelivery, state_values, static_select_value,
};
pub use socket::{Ack, ClosedBy, ConnId, ConnInfo};
pub use user::{buttons, find_button, Button};
pub use web_api::{Failure, RecordedCall};

/// App-level token (`xapp-`): the only token `apps.connections.open` accepts.
pub const APP_TOKEN: &str = "xapp-1-A111-fake-app-token";
/// Bot token (`xoxb-`): required by every other Web API method.
pub const BOT_TOKEN: &str = "xoxb-fake-bot-token";
pub const TEAM_ID: &str = "T111";
pub const TEAM_DOMAIN: &str = "fake-workspace";
pub const TEAM_NAME: &str = "Fake Workspace";
pub const APP_ID: &str = "A111";
pub const BOT_ID: &str = "B111";
pub const BOT_USER_ID: &str = "UBOT";
pub const BOT_NAME: &str = "accessd";
/// Verification token Slack still puts in every payload's `token` field.
pub const VERIFICATION_TOKEN: &str = "fake-verification-token";
/// A public channel that exists from the start (slash commands default to it).
pub const GENERAL_CHANNEL: &str = "C0GENERAL";

/// Knobs for `FakeSlack::start_with`.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// How long a socket stays open and delivering after a `disconnect` frame (Slack: ~10 s).
    pub disconnect_grace: Duration,
    /// How long an issued `trigger_id` is accepted (Slack: 3 s).
    pub trigger_ttl: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            disconnect_grace: Duration::from_secs(10),
            trigger_ttl: Duration::from_secs(3),
        }
    }
}

/// Cheap, cloneable handle on a running fake Slack.
#[derive(Clone)]
pub struct FakeSlack {
    pub(crate) inner: Arc<Inner>,
    _guard: Arc<Guard>,
}

/// Stops the servers when the last `FakeSlack` handle goes away.
struct Guard {
    shutdown: watch::Sender<bool>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// What the server tasks share. They hold `Arc<Inner>` (never the `Guard`), so the
/// servers do not keep themselves alive.
pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) api_port: u16,
    pub(crate) ws_port: u16,
    pub(crate) cfg: FakeConfig,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not make every later assertion a poison error.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A message the bot posted (and its later edits).
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub(crate) channel: String,
    pub(crate) ts: String,
    /// The message as Slack would return it (plus `channel`).
    pub(crate) message: Value,
    pub(crate) deleted: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub(crate) user: String,
    pub(crate) issued: Instant,
    pub(crate) used: bool,
}

/// Everything the fake knows. Locked briefly; never held across `.await`.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) calls: Vec<RecordedCall>,
    pub(crate) failures: HashMap<String, VecDeque<Failure>>,
    /// Directory: user id → user object (shape of `users.info`'s `user`), in insertion order.
    pub(crate) users: Vec<Value>,
    /// channel id → name.
    pub(crate) channels: BTreeMap<String, String>,
    /// User groups (`usergroups.*`), shaped like Slack's usergroup object
    /// with `users` always kept (answers add or drop it as Slack would).
    pub(crate) usergroups: Vec<Value>,
    /// user id → IM channel id with the bot.
    pub(crate) dms: HashMap<String, String>,
    /// sorted user list joined by "," → MPIM id.
    pub(crate) mpims: HashMap<String, String>,
    pub(crate) messages: Vec<StoredMessage>,
    pub(crate) ephemerals: Vec<Value>,
    /// view id → stored view (the shape `views.*` return).
    pub(crate) views: HashMap<String, Value>,
    /// user → view id of the latest published Home tab.
    pub(crate) home: HashMap<String, String>,
    /// user → modal stack (view ids, bottom first).
    pub(crate) modal_stacks: HashMap<String, Vec<String>>,
    pub(crate) triggers: HashMap<String, Trigger>,
    /// ticket → used?
    pub(crate) tickets: HashMap<String, bool>,
    pub(crate) conns: BTreeMap<u64, socket::Conn>,
    pub(crate) next_conn: u64,
    pub(crate) rr: u64,
    /// envelope id → (sent at, connection).
    pub(crate) sent: HashMap<String, (Instant, ConnId)>,
    pub(crate) acks: Vec<Ack>,
    /// envelope id → (user, view id) of a `view_submission` awaiting its ack.
    pub(crate) pending_submissions: HashMap<String, (String, String)>,
    /// Frames from the client that were not acks (kept for debugging).
    pub(crate) stray_frames: Vec<String>,
    pub(crate) last_ts_micros: u128,
    pub(crate) hook_seq: u64,
    /// `response_url` path (after `/hooks/`) → who it was issued to.
    pub(crate) hooks: HashMap<String, Hook>,
    /// Set by `expire_response_urls`: new ones are born expired.
    pub(crate) hooks_expired: bool,
}

/// A `response_url` the fake issued: Slack's are good for 5 uses in 30 minutes
/// and show an ephemeral answer only to the person who acted.
#[derive(Debug, Clone)]
pub(crate) struct Hook {
    pub(crate) user: String,
    pub(crate) channel: String,
    pub(crate) uses: u32,
    pub(crate) expired: bool,
}

impl State {
    /// A fresh message timestamp, strictly increasing, in Slack's `secs.micros` form.
    pub(crate) fn next_ts(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let micros = now.max(self.last_ts_micros + 1);
        self.last_ts_micros = micros;
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }

    pub(crate) fn user(&self, id: &str) -> Option<&Value> {
        self.users.iter().find(|u| u["id"] == id)
    }

    /// The IM channel between `user` and the bot (stable per user).
    pub(crate) fn dm_for(&mut self, user: &str) -> String {
        self.dms
            .entry(user.to_string())
            .or_insert_with(|| format!("D{}", rand_alnum(10)))
            .clone()
    }

    pub(crate) fn is_dm(&self, channel: &str) -> bool {
        self.dms.values().any(|d| d == channel) || self.mpims.values().any(|d| d == channel)
    }

    pub(crate) fn dm_user(&self, channel: &str) -> Option<String> {
        self.dms
            .iter()
            .find(|(_, d)| d.as_str() == channel)
            .map(|(u, _)| u.clone())
    }

    /// Resolves what a client may pass as `channel`: a user id means the IM with that user.
    pub(crate) fn resolve_channel(&mut self, channel: &str) -> Option<String> {
        if channel.starts_with('U') || channel.starts_with('W') {
            return self.user(channel).is_some().then(|| self.dm_for(channel));
        }
        (self.channels.contains_key(channel) || self.is_dm(channel)).then(|| channel.to_string())
    }

    pub(crate) fn issue_trigger(&mut self, user: &str) -> String {
        let mut rng = rand::rng();
        let id = format!(
            "{}.{}.{}",
            rng.random_range(1_000_000_000_000u64..10_000_000_000_000),
            rng.random_range(1_000_000_000u64..10_000_000_000),
            rand_hex(32)
        );
        self.triggers.insert(
            id.clone(),
            Trigger {
                user: user.to_string(),
                issued: Instant::now(),
                used: false,
            },
        );
        id
    }

    pub(crate) fn username(&self, user: &str) -> String {
        self.user(user)
            .and_then(|u| u["name"].as_str())
            .unwrap_or(user)
            .to_lowercase()
    }
}

impl FakeSlack {
    /// Starts both servers with the default configuration.
    pub async fn start() -> FakeSlack {
        Self::start_with(FakeConfig::default()).await
    }

    pub async fn start_with(cfg: FakeConfig) -> FakeSlack {
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Web API");
        let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Socket Mode");
        let (tx, rx) = watch::channel(false);
        let mut state = State::default();
        state
            .channels
            .insert(GENERAL_CHANNEL.to_string(), "general".to_string());
        state.users.push(bot_user_json());
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            shutdown: rx,
            api_port: api_listener.local_addr().unwrap().port(),
            ws_port: ws_listener.local_addr().unwrap().port(),
            cfg,
        });
        web_api::spawn(inner.clone(), api_listener);
        socket::spawn(inner.clone(), ws_listener);
        FakeSlack {
            inner,
            _guard: Arc::new(Guard { shutdown: tx }),
        }
    }

    /// `http://127.0.0.1:PORT/api` (no trailing slash), for `slack.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.inner.api_port)
    }

    /// Base of the Socket Mode server, `ws://127.0.0.1:WSPORT`.
    pub fn ws_base(&self) -> String {
        format!("ws://127.0.0.1:{}", self.inner.ws_port)
    }

    /// Where `response_url`s issued by this fake point (POSTs to them are recorded
    /// as calls with method `"response_url"`).
    pub fn hooks_base(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.inner.api_port)
    }

    /// Stops both servers now (open sockets are dropped without a close frame).
    pub fn shutdown(&self) {
        self._guard.shutdown.send_replace(true);
    }

    /// Adds a person to the directory (`users.info`, `users.lookupByEmail`, `users.list`).
    pub fn add_user(&self, id: &str, email: &str, name: &str) {
        let user = user_json(id, email, name);
        let mut st = self.inner.lock();
        st.users.retain(|u| u["id"] != id);
        st.users.push(user);
    }

    /// Adds many people at once (benchmarks): ids must be new, entries are
    /// built with `f` on top of the usual directory shape.
    pub fn add_users(
        &self,
        people: &[(String, String, String)],
        mut f: impl FnMut(usize, &mut Value),
    ) {
        let mut st = self.inner.lock();
        for (i, (id, email, name)) in people.iter().enumerate() {
            let mut user = user_json(id, email, name);
            f(i, &mut user);
            st.users.push(user);
        }
    }

    /// Edits every directory entry in one pass (benchmarks).
    pub fn update_users(&self, mut f: impl FnMut(usize, &mut Value)) {
        let mut st = self.inner.lock();
        for (i, user) in st.users.iter_mut().enumerate() {
            f(i, user);
        }
    }

    /// Edits a directory entry in place (e.g. `u["deleted"] = true.into()`).
    pub fn update_user(&self, id: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.inner.lock();
        let user = st
            .users
            .iter_mut()
            .find(|u| u["id"] == id)
            .unwrap_or_else(|| panic!("fake Slack: no user {id}"));
        f(user);
    }

    /// Makes a user group exist with these members (`usergroups.*`);
    /// replaces one with the same id.
    pub fn add_usergroup(&self, id: &str, handle: &str, members: &[&str]) {
        let group = web_api::usergroup_json(id, handle, members);
        let mut st = self.inner.lock();
        st.usergroups.retain(|g| g["id"] != id);
        st.usergroups.push(group);
    }

    /// The member ids of the user group with this handle, as Slack holds them.
    pub fn usergroup_members(&self, handle: &str) -> Vec<String> {
        let st = self.inner.lock();
        st.usergroups
            .iter()
            .find(|g| g["handle"] == handle)
            .and_then(|g| g["users"].as_array())
            .map(|u| {
                u.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes a channel exist (posting to an unknown `C…` id fails with `channel_not_found`).
    pub fn add_channel(&self, id: &str, name: &str) {
        self.inner
            .lock()
            .channels
            .insert(id.to_string(), name.to_string());
    }

    /// The IM channel id between `user` and the bot (same as `conversations.open` returns).
    pub fn dm_channel(&self, user: &str) -> String {
        self.inner.lock().dm_for(user)
    }

    /// Issues a `trigger_id` for `user` (valid `trigger_ttl`, once), as Slack does with
    /// every interaction.
    pub fn issue_trigger(&self, user: &str) -> String {
        self.inner.lock().issue_trigger(user)
    }

    /// Polls `f` until it returns `Some` or `timeout` passes.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&FakeSlack) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn bot_user_json() -> Value {
    let mut u = user_json(BOT_USER_ID, "", BOT_NAME);
    u["is_bot"] = true.into();
    u["profile"]["bot_id"] = BOT_ID.into();
    u["profile"]["api_app_id"] = APP_ID.into();
    if let Some(p) = u["profile"].as_object_mut() {
        p.remove("email");
    }
    u
}

/// A directory entry shaped like `spec_users.info.json`.
pub(crate) fn user_json(id: &str, email: &str, name: &str) -> Value {
    let handle = name.to_lowercase().replace(' ', ".");
    json!({
        "id": id,
        "team_id": TEAM_ID,
        "name": handle,
        "deleted": false,
        "color": "9f69e7",
        "real_name": name,
        "tz": "Europe/Berlin",
        "tz_label": "Central European Time",
        "tz_offset": 3600,
        "profile": {
            "avatar_hash": "ge3b51ca72de",
            "status_text": "",
            "status_emoji": "",
            "real_name": name,
            "display_name": name,
            "real_name_normalized": name,
            "display_name_normalized": name,
            "email": email,
            "image_24": "https://avatars.example.invalid/24.png",
            "image_48": "https://avatars.example.invalid/48.png",
            "image_72": "https://avatars.example.invalid/72.png",
            "team": TEAM_ID
        },
        "is_admin": false,
        "is_owner": false,
        "is_primary_owner": false,
        "is_restricted": false,
        "is_ultra_restricted": false,
        "is_bot": false,
        "is_app_user": false,
        "has_2fa": false,
        "updated": 1_700_000_000
    })
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

pub(crate) fn rand_alnum(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
        .collect()
}

pub(crate) fn rand_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap())
        .collect()
}

/// A v4-shaped UUID string, as Slack uses for envelope ids.
pub(crate) fn uuid() -> String {
    let h = rand_hex(32);
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        ["8", "9", "a", "b"][rand::rng().random_range(0..4usize)],
        &h[17..20],
        &h[20..32]
    )
}

/// Resolves once the fake is shut down (or its handle is gone).
pub(crate) async fn until_shutdown(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
