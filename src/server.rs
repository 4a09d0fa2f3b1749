//! The health and metrics listener on `server.listen`: `GET /healthz` for
//! supervisors and load balancers, `GET /metrics` (Prometheus text) for
//! monitoring. Nothing else is served.
//!
//! hyper's HTTP/1 server rather than a hand-written parser: it is already in
//! the dependency tree (slack-morphism's client), and request parsing is where
//! hand-written servers go wrong. Each connection answers one request (no
//! keep-alive), headers are bounded in size and time, and connections are
//! capped, so a stuck or hostile client cannot pin memory or tasks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::metrics;
use crate::metrics::Gauges;
use crate::slack::transport::TransportStatus;
use crate::store::Store;

/// `/healthz` fails when the database does not answer `SELECT 1` within this.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on the database gauges of one scrape; past it the counters still go out.
const GAUGES_TIMEOUT: Duration = Duration::from_secs(2);
/// A client must send its request headers within this.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-connection bound: one request, one answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// hyper's minimum read buffer; a health or metrics request is a few hundred bytes.
const MAX_REQUEST_BYTES: usize = 8192;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;

/// What the endpoints read: the store, and the transport's status once the
/// transport exists (the listener is up before Slack is reached).
pub struct ServerState {
    store: Store,
    transport: OnceLock<Arc<TransportStatus>>,
    /// Configured identity source ids, the only `source` label values;
    /// replaced on reload.
    sources: std::sync::RwLock<Vec<String>>,
}

impl ServerState {
    pub fn new(store: Store, sources: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            store,
            transport: OnceLock::new(),
            sources: std::sync::RwLock::new(sources),
        })
    }

    pub fn set_sources(&self, sources: Vec<String>) {
        *self.sources.write().unwrap_or_else(|p| p.into_inner()) = sources;
    }

    fn sources(&self) -> Vec<String> {
        self.sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Called once the transport is built; before that health is "starting".
    pub fn set_transport(&self, status: Arc<TransportStatus>) {
        let _ = self.transport.set(status);
    }

    fn connections(&self) -> usize {
        self.transport
            .get()
            .map_or(0, |status| status.live_connections())
    }
}

/// The bound listener. Its task ends when the daemon's stop signal turns
/// true or its sender is dropped (every way out of `run_on_store`).
pub struct Server {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn bind(
        addr: SocketAddr,
        state: Arc<ServerState>,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(accept(listener, state, stop));
        Ok(Server { local_addr, task })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the listener to close (after the stop signal).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

async fn accept(listener: TcpListener, state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    // Dropping the set at the end aborts answers still in flight.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            // Err: the sender is gone, i.e. the daemon has returned.
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %err, "health/metrics listener could not accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(respond(&state, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(READ_TIMEOUT)
            .max_buf_size(MAX_REQUEST_BYTES)
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), service);
        connections.spawn(async move {
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(err)) => tracing::debug!(error = %err, "health/metrics connection failed"),
                Err(_) => tracing::debug!("health/metrics connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

async fn respond(state: &ServerState, req: Request<Incoming>) -> Response<String> {
    let healthz = match req.uri().path() {
        "/healthz" => true,
        "/metrics" => false,
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    if req.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    if healthz {
        health(state).await
    } else {
        metrics(state).await
    }
}

async fn health(state: &ServerState) -> Response<String> {
    let connections = state.connections();
    let problem = if state.transport.get().is_none() {
        Some("not connected to Slack yet")
    } else if connections == 0 {
        Some("no Socket Mode connection to Slack")
    } else {
        match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "health check: database ping failed");
                Some("database not answering")
            }
            Err(_) => Some("database not answering"),
        }
    };
    let (status, body) = match problem {
        None => (
            StatusCode::OK,
            serde_json::json!({ "status": "ok", "connections": connections }),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "unavailable", "reason": reason }),
        ),
    };
    let mut response = Response::new(format!("{body}\n"));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn metrics(state: &ServerState) -> Response<String> {
    let gauges =
        match tokio::time::timeout(GAUGES_TIMEOUT, state.store.metrics_gauges(state.sources()))
            .await
        {
            Ok(Ok(gauges)) => Some(gauges),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "metrics: could not read the database gauges");
                None
            }
            Err(_) => {
                tracing::warn!(after = ?GAUGES_TIMEOUT, "metrics: database gauges timed out");
                None
            }
        };
    let gauges = gauges.as_ref().map(|g| g as &dyn Gauges);
    let text = metrics::global().render(state.connections(), gauges, chrono::Utc::now());
    let mut response = Response::new(text);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn plain(status: StatusCode, text: &str) -> Response<String> {
    let mut response = Response::new(text.to_string());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
