//! A real SCIM 2.0 server for the SCIM tests: `scim2-server` from PyPI on
//! loopback, shared by all tests of one test binary (each test uses its own
//! users and groups), plus direct SCIM calls for setting up and checking.
//! CI starts one and sets ACCESSD_TEST_SCIM_URL; otherwise the first test
//! starts one on a free port.
//!
//! Included by path (`#[path = "support/scim_server.rs"] mod scim_server;`)
//! so a SCIM test binary does not build the whole fake Slack.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The bearer token the test server is started with (.ci/run uses the same).
pub const TOKEN: &str = "accessd-test-scim-token";
const INSTALL: &str = "pip install scim2-server==0.8.3";

pub struct ScimServer {
    pub url: String,
    child: Option<Child>,
    /// The wrapper shell stops the server when this pipe closes, which also
    /// happens when the test process exits without running drops (statics).
    _lifeline: Option<ChildStdin>,
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        self._lifeline.take();
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ScimServer {
    fn start() -> ScimServer {
        if let Ok(url) = std::env::var("ACCESSD_TEST_SCIM_URL") {
            return ScimServer {
                url: url.trim_end_matches('/').to_string(),
                child: None,
                _lifeline: None,
            };
        }
        match Command::new("scim2-server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(status) if status.success() => {}
            _ => panic!(
                "the SCIM tests need scim2-server on PATH: {INSTALL} \
                 (or set ACCESSD_TEST_SCIM_URL to a running one)"
            ),
        }
        let port = free_port();
        let script =
            "scim2-server --hostname 127.0.0.1 --port \"$1\" --bearer-token \"$2\" </dev/null & \
                      server=$!; cat >/dev/null; kill $server";
        let mut child = Command::new("sh")
            .args(["-c", script, "scim2-server", &port.to_string(), TOKEN])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sh");
        let lifeline = child.stdin.take();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                panic!("scim2-server exited ({status}) before listening: {stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "scim2-server did not listen on {addr} within 20s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ScimServer {
            url: format!("http://{addr}"),
            child: Some(child),
            _lifeline: lifeline,
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

pub fn server() -> &'static ScimServer {
    static SERVER: OnceLock<ScimServer> = OnceLock::new();
    SERVER.get_or_init(ScimServer::start)
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Direct SCIM calls for setting up and checking, beside the code under test.
pub struct Admin {
    pub url: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn new() -> Admin {
        accessd::install_crypto_provider();
        Admin {
            url: server().url.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// POSTs a resource and answers its id.
    pub async fn post(&self, kind: &str, body: Value) -> String {
        let response = self
            .http
            .post(format!("{}/{kind}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST to scim2-server");
        assert_eq!(response.status(), 201, "POST /{kind} {body}");
        let created: Value = response.json().await.expect("JSON");
        created["id"].as_str().expect("an id").to_string()
    }

    pub async fn user(&self, user_name: &str, email: &str) -> String {
        self.post(
            "Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "emails": [{ "value": email, "primary": true }],
            }),
        )
        .await
    }

    pub async fn group(&self, name: &str) -> String {
        self.post(
            "Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
            }),
        )
        .await
    }

    /// Gives the user a new `userName` and email (a PUT, as an IdP's
    /// rename does): the id stays.
    pub async fn rename(&self, user: &str, user_name: &str, email: &str) {
        let response = self
            .http
            .put(format!("{}/Users/{user}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "id": user,
                    "userName": user_name,
                    "emails": [{ "value": email, "primary": true }],
                })
                .to_string(),
            )
            .send()
            .await
            .expect("PUT user");
        assert!(
            response.status().is_success(),
            "PUT /Users/{user}: {}",
            response.status()
        );
    }

    /// Deletes a user or group.
    pub async fn delete(&self, kind: &str, id: &str) {
        let response = self
            .http
            .delete(format!("{}/{kind}/{id}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("DELETE");
        assert!(
            response.status().is_success(),
            "DELETE /{kind}/{id}: {}",
            response.status()
        );
    }

    /// Whether the user is `active` (SCIM's default when unset is active).
    pub async fn active(&self, user: &str) -> bool {
        let user: Value = self
            .http
            .get(format!("{}/Users/{user}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET user")
            .json()
            .await
            .expect("JSON");
        user["active"].as_bool().unwrap_or(true)
    }

    pub async fn members(&self, group: &str) -> Vec<String> {
        let group: Value = self
            .http
            .get(format!("{}/Groups/{group}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET group")
            .json()
            .await
            .expect("JSON");
        group["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}
