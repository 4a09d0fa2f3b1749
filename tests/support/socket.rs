//! The fake's Socket Mode server: tickets, connections, `hello` / `disconnect`, envelope
//! delivery, ack recording, and link faults (abrupt drop, silent connection).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::web_api::store_view;
use super::*;

/// Id of one Socket Mode connection (1, 2, … in opening order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client sent a close frame or dropped the TCP stream.
    Client,
    /// The fake closed it with a close frame (end of disconnect grace, `close_all`).
    Server,
    /// `drop_abruptly`: TCP closed without a close frame.
    Abrupt,
    /// The fake was shut down.
    Shutdown,
}

/// Snapshot of one connection's life.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub id: ConnId,
    pub ticket: String,
    pub opened_at: Instant,
    pub closed_at: Option<Instant>,
    pub closed_by: Option<ClosedBy>,
    /// `disconnect` frame sent: reason and when.
    pub disconnect_sent: Option<(String, Instant)>,
    /// False after `stop_responding`.
    pub responding: bool,
}

impl ConnInfo {
    pub fn is_live(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// A client's acknowledgement of an envelope.
#[derive(Debug, Clone)]
pub struct Ack {
    pub envelope_id: String,
    pub payload: Option<Value>,
    pub conn: ConnId,
    /// From the moment the fake queued the envelope to the ack's arrival (zero when the
    /// envelope id was never sent).
    pub latency: Duration,
    pub at: Instant,
}

pub(crate) enum Cmd {
    Send(Message),
    Disconnect(String),
    Drop,
    Close,
    StopResponding,
}

pub(crate) struct Conn {
    pub(crate) info: ConnInfo,
    pub(crate) tx: mpsc::UnboundedSender<Cmd>,
}

pub(crate) fn spawn(inner: Arc<Inner>, listener: tokio::net::TcpListener) {
    let shutdown = inner.shutdown.clone();
    tokio::spawn(async move {
        let stop = until_shutdown(shutdown);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((tcp, _)) = accepted {
                        tokio::spawn(serve(inner.clone(), tcp));
                    }
                }
                _ = &mut stop => break,
            }
        }
    });
}

fn reject(status: u16, why: &str) -> ErrorResponse {
    http::Response::builder()
        .status(status)
        .body(Some(why.to_string()))
        .unwrap()
}

async fn serve(inner: Arc<Inner>, tcp: TcpStream) {
    let mut ticket_out = None;
    #[allow(clippy::result_large_err)] // the signature tungstenite's handshake callback demands
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if !req.uri().path().starts_with("/link") {
            return Err(reject(404, "not found"));
        }
        let ticket = req
            .uri()
            .query()
            .and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "ticket")
                    .map(|(_, v)| v.into_owned())
            })
            .ok_or_else(|| reject(401, "missing ticket"))?;
        let mut st = inner.lock();
        match st.tickets.get_mut(&ticket) {
            Some(used) if !*used => {
                *used = true;
                ticket_out = Some(ticket);
                Ok(resp)
            }
            _ => Err(reject(401, "invalid or used ticket")),
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
        return;
    };
    let ticket = ticket_out.unwrap_or_default();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, live) = {
        let mut st = inner.lock();
        st.next_conn += 1;
        let id = ConnId(st.next_conn);
        st.conns.insert(
            id.0,
            Conn {
                info: ConnInfo {
                    id,
                    ticket,
                    opened_at: Instant::now(),
                    closed_at: None,
                    closed_by: None,
                    disconnect_sent: None,
                    responding: true,
                },
                tx,
            },
        );
        let live = st.conns.values().filter(|c| c.info.is_live()).count();
        (id, live)
    };

    let (mut sink, mut stream) = ws.split();
    let hello = json!({
        "type": "hello",
        "num_connections": live,
        "debug_info": {
            "host": host(id),
            "build_number": 10,
            "approximate_connection_time": 18060
        },
        "connection_info": {"app_id": APP_ID}
    });
    let mut closed_by = None;
    if sink.send(Message::text(hello.to_string())).await.is_err() {
        closed_by = Some(ClosedBy::Client);
    }

    let stop = until_shutdown(inner.shutdown.clone());
    tokio::pin!(stop);
    let mut responding = true;
    let mut grace_deadline: Option<tokio::time::Instant> = None;
    while closed_by.is_none() {
        let grace = async {
            match grace_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Send(m)) => {
                    // A silent link swallows what is sent on it, as a dead TCP path would.
                    if responding && sink.send(m).await.is_err() {
                        closed_by = Some(ClosedBy::Client);
                    }
                }
                Some(Cmd::Disconnect(frame)) => {
                    if responding && sink.send(Message::text(frame)).await.is_err() {
                        closed_by = Some(ClosedBy::Client);
                    }
                    grace_deadline =
                        Some(tokio::time::Instant::now() + inner.cfg.disconnect_grace);
                }
                Some(Cmd::Drop) => closed_by = Some(ClosedBy::Abrupt),
                Some(Cmd::Close) => {
                    close_politely(&mut sink, &mut stream).await;
                    closed_by = Some(ClosedBy::Server);
                }
                Some(Cmd::StopResponding) => responding = false,
                None => closed_by = Some(ClosedBy::Shutdown),
            },
            frame = stream.next(), if responding => match frame {
                Some(Ok(Message::Text(t))) => on_client_text(&inner, id, t.as_str()),
                Some(Ok(Message::Binary(b))) => inner
                    .lock()
                    .stray_frames
                    .push(format!("<binary {} bytes>", b.len())),
                // tungstenite queues the pong / close reply; flushing sends it now.
                Some(Ok(Message::Ping(_))) => {
                    let _ = sink.flush().await;
                }
                Some(Ok(Message::Close(_))) => {
                    let _ = sink.flush().await;
                    closed_by = Some(ClosedBy::Client);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => closed_by = Some(ClosedBy::Client),
            },
            _ = grace => {
                close_politely(&mut sink, &mut stream).await;
                closed_by = Some(ClosedBy::Server);
            }
            _ = &mut stop => closed_by = Some(ClosedBy::Shutdown),
        }
    }
    drop(sink);
    drop(stream);
    let mut st = inner.lock();
    if let Some(c) = st.conns.get_mut(&id.0) {
        c.info.closed_at = Some(Instant::now());
        c.info.closed_by = closed_by;
    }
}

type Sink = futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<TcpStream>, Message>;
type Stream = futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<TcpStream>>;

/// Sends a close frame and waits briefly for the client's reply (clean handshake).
async fn close_politely(sink: &mut Sink, stream: &mut Stream) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(m)) = stream.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

fn host(id: ConnId) -> String {
    format!("applink-fake-{}", id.0)
}

fn on_client_text(inner: &Inner, conn: ConnId, text: &str) {
    let mut st = inner.lock();
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let Some(eid) = parsed
        .as_ref()
        .and_then(|v| v["envelope_id"].as_str())
        .map(str::to_string)
    else {
        st.stray_frames.push(text.to_string());
        return;
    };
    let payload = parsed.as_ref().and_then(|v| v.get("payload")).cloned();
    let latency = st
        .sent
        .get(&eid)
        .map(|(t, _)| t.elapsed())
        .unwrap_or_default();
    st.acks.push(Ack {
        envelope_id: eid.clone(),
        payload: payload.clone(),
        conn,
        latency,
        at: Instant::now(),
    });
    if let Some((user, view_id)) = st.pending_submissions.remove(&eid) {
        apply_submission_ack(&mut st, &user, &view_id, payload.as_ref());
    }
}

/// What Slack does to the modal stack after a `view_submission` ack.
fn apply_submission_ack(st: &mut State, user: &str, view_id: &str, payload: Option<&Value>) {
    let action = payload.and_then(|p| p["response_action"].as_str());
    let stack = st.modal_stacks.entry(user.to_string()).or_default();
    let pos = stack.iter().position(|v| v == view_id);
    match action {
        // Plain ack: the submitted view closes, revealing the one below.
        None => {
            if let Some(pos) = pos {
                stack.truncate(pos);
            }
        }
        Some("clear") => stack.clear(),
        Some("update") => {
            let new = payload.map(|p| p["view"].clone()).unwrap_or(Value::Null);
            let old = st.views.get(view_id).cloned().unwrap_or(Value::Null);
            store_view(
                st,
                &new,
                Some(view_id.to_string()),
                old["previous_view_id"].as_str().map(str::to_string),
                old["root_view_id"].as_str().map(str::to_string),
            );
        }
        Some("push") => {
            if stack.len() < 3 {
                let root = stack.first().cloned();
                let new = payload.map(|p| p["view"].clone()).unwrap_or(Value::Null);
                let stored = store_view(st, &new, None, Some(view_id.to_string()), root);
                let id = stored["id"].as_str().unwrap().to_string();
                st.modal_stacks
                    .entry(user.to_string())
                    .or_default()
                    .push(id);
            }
        }
        // `errors`: the modal stays open showing them.
        Some(_) => {}
    }
}

impl FakeSlack {
    fn conn_tx(&self, conn: Option<ConnId>) -> (ConnId, mpsc::UnboundedSender<Cmd>) {
        let mut st = self.inner.lock();
        let live: Vec<&Conn> = st.conns.values().filter(|c| c.info.is_live()).collect();
        let pick = match conn {
            Some(id) => live.iter().find(|c| c.info.id == id).copied(),
            None => {
                // Prefer healthy links; fall back to ones being refreshed.
                let healthy: Vec<&Conn> = live
                    .iter()
                    .copied()
                    .filter(|c| c.info.responding && c.info.disconnect_sent.is_none())
                    .collect();
                let pool = if healthy.is_empty() {
                    live.iter().copied().filter(|c| c.info.responding).collect()
                } else {
                    healthy
                };
                (!pool.is_empty()).then(|| pool[(st.rr as usize) % pool.len()])
            }
        };
        let Some(c) = pick else {
            panic!("fake Slack: no live Socket Mode connection matching {conn:?}");
        };
        let out = (c.info.id, c.tx.clone());
        st.rr += 1;
        out
    }

    /// Sends an envelope (adds an `envelope_id` if it has none) on `conn`, or on any live
    /// connection (round robin, healthy links first). Returns the envelope id.
    pub fn send_envelope(&self, conn: Option<ConnId>, mut envelope: Value) -> String {
        let eid = match envelope["envelope_id"].as_str() {
            Some(e) => e.to_string(),
            None => {
                let e = uuid();
                envelope["envelope_id"] = e.clone().into();
                e
            }
        };
        let (id, tx) = self.conn_tx(conn);
        self.inner
            .lock()
            .sent
            .insert(eid.clone(), (Instant::now(), id));
        let _ = tx.send(Cmd::Send(Message::text(envelope.to_string())));
        eid
    }

    /// Sends a raw text frame (garbage, truncated JSON, …).
    pub fn send_raw(&self, conn: Option<ConnId>, text: &str) {
        let (_, tx) = self.conn_tx(conn);
        let _ = tx.send(Cmd::Send(Message::text(text.to_string())));
    }

    /// Sends a binary frame.
    pub fn send_binary(&self, conn: Option<ConnId>, bytes: Vec<u8>) {
        let (_, tx) = self.conn_tx(conn);
        let _ = tx.send(Cmd::Send(Message::binary(bytes)));
    }

    /// Sends `{"type":"disconnect","reason":…}`; the socket keeps delivering for the
    /// configured grace period, then the fake closes it (unless the client did first).
    pub fn disconnect(&self, conn: ConnId, reason: &str) {
        let (id, tx) = self.conn_tx(Some(conn));
        let mut st = self.inner.lock();
        let live = st.conns.values().filter(|c| c.info.is_live()).count();
        let frame = json!({
            "type": "disconnect",
            "reason": reason,
            "num_connections": live,
            "debug_info": {"host": host(id)},
            "connection_info": {"app_id": APP_ID}
        });
        if let Some(c) = st.conns.get_mut(&id.0) {
            c.info.disconnect_sent = Some((reason.to_string(), Instant::now()));
        }
        let _ = tx.send(Cmd::Disconnect(frame.to_string()));
    }

    /// Closes the TCP stream with no close frame.
    pub fn drop_abruptly(&self, conn: ConnId) {
        if let Some(c) = self.inner.lock().conns.get(&conn.0) {
            let _ = c.tx.send(Cmd::Drop);
        }
    }

    /// Closes every live connection with a close frame.
    pub fn close_all(&self) {
        for c in self.inner.lock().conns.values() {
            let _ = c.tx.send(Cmd::Close);
        }
    }

    /// The link goes silent: no pongs, no deliveries, client frames unread.
    pub fn stop_responding(&self, conn: ConnId) {
        let mut st = self.inner.lock();
        if let Some(c) = st.conns.get_mut(&conn.0) {
            c.info.responding = false;
            let _ = c.tx.send(Cmd::StopResponding);
        }
    }

    pub fn live_connections(&self) -> Vec<ConnId> {
        self.inner
            .lock()
            .conns
            .values()
            .filter(|c| c.info.is_live())
            .map(|c| c.info.id)
            .collect()
    }

    pub fn total_connections_opened(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Every connection ever opened, oldest first.
    pub fn connections(&self) -> Vec<ConnInfo> {
        self.inner
            .lock()
            .conns
            .values()
            .map(|c| c.info.clone())
            .collect()
    }

    pub fn connection(&self, id: ConnId) -> Option<ConnInfo> {
        self.inner.lock().conns.get(&id.0).map(|c| c.info.clone())
    }

    /// Waits until at least `n` connections are live; panics after `timeout`.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> Vec<ConnId> {
        self.wait_until(timeout, |f| {
            let live = f.live_connections();
            (live.len() >= n).then_some(live)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "fake Slack: wanted {n} live connections within {timeout:?}, have {:?}",
                self.live_connections()
            )
        })
    }

    /// Waits until `conn` is closed; returns who closed it, `None` on timeout.
    pub async fn wait_closed(&self, conn: ConnId, timeout: Duration) -> Option<ClosedBy> {
        self.wait_until(timeout, |f| f.connection(conn).and_then(|c| c.closed_by))
            .await
    }

    /// The first ack of `envelope_id`, waiting up to `timeout`.
    pub async fn wait_ack(&self, envelope_id: &str, timeout: Duration) -> Option<Ack> {
        self.wait_until(timeout, |f| {
            f.inner
                .lock()
                .acks
                .iter()
                .find(|a| a.envelope_id == envelope_id)
                .cloned()
        })
        .await
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.inner.lock().acks.clone()
    }

    /// Client frames that were not acks.
    pub fn stray_frames(&self) -> Vec<String> {
        self.inner.lock().stray_frames.clone()
    }
}
