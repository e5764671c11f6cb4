//! The switchboard, as an app embeds it: a pipe to another member through the relay, for
//! two members that cannot reach each other directly (ALPN `haven-relay/switch/1`).
//!
//! A member that wants to be reachable keeps a [`SwitchClient`] connected and takes calls
//! with [`SwitchClient::next_call`]; a caller asks for a pipe with [`SwitchClient::call`].
//! The relay splices the two streams; the apps seal what they send, the relay cannot read it.
//! Wire format and state machine: docs/ARCHITECTURE.md ("The switchboard").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iroh::endpoint::{Connection, ConnectionError, RecvStream, SendStream, VarInt};
use iroh::{Endpoint, EndpointAddr, EndpointId};
use tokio::sync::mpsc;

use crate::TunnelError;
use crate::dial::stream_error;

/// The first byte of a caller's stream.
pub(crate) const CALL: u8 = 1;
/// The first byte of the stream a member opens to learn it is reachable.
pub(crate) const HELLO: u8 = 2;
pub(crate) const VERSION: u8 = 1;
/// A callee's answer to a ring.
pub(crate) const ACCEPT: u8 = 0;
pub(crate) const REFUSE: u8 = 1;

/// The relay's answer to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CallStatus {
    Connected = 0,
    /// The callee has no switchboard connection open.
    Offline = 1,
    Refused = 2,
    /// The callee is not a member of this circle.
    NotAMember = 3,
    /// The caller or callee has as many pipes open as the relay allows.
    TooManyPipes = 4,
    Malformed = 5,
    /// The callee did not answer in time.
    NoAnswer = 6,
}

impl CallStatus {
    pub fn from_byte(b: u8) -> Option<Self> {
        use CallStatus::*;
        [
            Connected,
            Offline,
            Refused,
            NotAMember,
            TooManyPipes,
            Malformed,
            NoAnswer,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
    }
}

impl std::fmt::Display for CallStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallStatus::Connected => "connected",
            CallStatus::Offline => "the member is not online at this relay",
            CallStatus::Refused => "the member refused the call",
            CallStatus::NotAMember => "not a member of this circle",
            CallStatus::TooManyPipes => "too many pipes open",
            CallStatus::Malformed => "malformed call",
            CallStatus::NoAnswer => "the member did not answer",
        })
    }
}

type Routes = Arc<Mutex<HashMap<u64, mpsc::Sender<Bytes>>>>;

/// Datagrams queued per pipe before the oldest are dropped: live media, never queued long.
const DATAGRAM_QUEUE: usize = 64;

pub struct SwitchClient {
    endpoint: Endpoint,
    relay: EndpointAddr,
    /// The connection calls arrive on; replaced when it breaks (relay restarted, address
    /// changed, a long outage), never when the relay closed it on purpose.
    conn: tokio::sync::Mutex<Connection>,
    routes: Routes,
    /// Whether this client takes calls (said hello), or only places them.
    reachable: bool,
}

/// How long a broken switchboard connection is dialled again before giving up.
const REGAIN_FOR: Duration = Duration::from_secs(30);
/// The longest pause between two of those dials.
const REGAIN_BACKOFF: Duration = Duration::from_secs(2);

impl SwitchClient {
    /// Connects to the relay's switchboard; from now on this node can be called (and a
    /// previous connection of the same node that took calls is closed).
    pub async fn connect(endpoint: Endpoint, relay: EndpointAddr) -> Result<Self, TunnelError> {
        Self::open(endpoint, relay, true).await
    }

    /// Connects only to place calls: the node's connection that takes calls, if any (another
    /// process with the same identity), stays where it is.
    pub async fn caller(endpoint: Endpoint, relay: EndpointAddr) -> Result<Self, TunnelError> {
        Self::open(endpoint, relay, false).await
    }

    async fn open(endpoint: Endpoint, relay: EndpointAddr, reachable: bool) -> Result<Self, TunnelError> {
        let routes: Routes = Arc::default();
        let conn = dial(&endpoint, &relay, &routes, reachable).await?;
        Ok(Self {
            endpoint,
            relay,
            conn: tokio::sync::Mutex::new(conn),
            routes,
            reachable,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Asks the relay for a pipe to `to`; an error names why there is none.
    pub async fn call(&self, to: EndpointId) -> Result<Pipe, TunnelError> {
        let conn = self.connection().await;
        // Nothing has been asked yet if the stream cannot open: one more try on a new connection.
        let (conn, (mut send, mut recv)) = match conn.open_bi().await {
            Ok(pair) => (conn, pair),
            Err(_) => {
                let conn = self.redial(&conn).await?;
                let pair = conn.open_bi().await.map_err(|e| stream_error(&conn, e))?;
                (conn, pair)
            }
        };
        let mut hello = vec![CALL, VERSION];
        hello.extend_from_slice(to.as_bytes());
        send.write_all(&hello).await.map_err(|e| stream_error(&conn, e))?;
        let mut answer = [0u8; 9];
        recv.read_exact(&mut answer).await.map_err(|e| stream_error(&conn, e))?;
        match CallStatus::from_byte(answer[0]) {
            Some(CallStatus::Connected) => {
                let id = u64::from_be_bytes(answer[1..].try_into().expect("8 bytes"));
                Ok(make_pipe(id, send, recv, conn, &self.routes))
            }
            Some(status) => Err(TunnelError::CallFailed(status)),
            None => Err(TunnelError::Stream(format!("unknown call status {}", answer[0]))),
        }
    }

    /// Waits for the next member to call this node. A connection that breaks meanwhile is
    /// dialled again for up to 30 s, so the node stays reachable across a relay restart or an
    /// address change; one the relay closed on purpose (a newer connection of this node, or
    /// no longer a member) ends the wait with that reason.
    pub async fn next_call(&self) -> Result<IncomingCall, TunnelError> {
        loop {
            let conn = self.connection().await;
            let (send, mut recv) = match conn.accept_bi().await {
                Ok(pair) => pair,
                Err(_) => {
                    self.regain(&conn).await?;
                    continue;
                }
            };
            let mut ring = [0u8; 40];
            if recv.read_exact(&mut ring).await.is_err() {
                continue;
            }
            let Ok(caller) = EndpointId::from_bytes(ring[..32].try_into().expect("32 bytes")) else {
                continue;
            };
            let pipe_id = u64::from_be_bytes(ring[32..].try_into().expect("8 bytes"));
            return Ok(IncomingCall {
                caller,
                pipe_id,
                send,
                recv,
                conn,
                routes: self.routes.clone(),
            });
        }
    }

    async fn connection(&self) -> Connection {
        self.conn.lock().await.clone()
    }

    /// Dials again until it works, the relay refuses, or [`REGAIN_FOR`] has passed.
    async fn regain(&self, broken: &Connection) -> Result<Connection, TunnelError> {
        let deadline = tokio::time::Instant::now() + REGAIN_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.redial(broken).await {
                Ok(conn) => return Ok(conn),
                Err(e @ (TunnelError::Refused(_) | TunnelError::Superseded)) => return Err(e),
                Err(e) if tokio::time::Instant::now() + pause > deadline => return Err(e),
                Err(e) => tracing::debug!(error = %e, "switchboard connection not back yet"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REGAIN_BACKOFF);
        }
    }

    /// A new connection in place of `broken`, unless another task has already made one or the
    /// relay closed it on purpose.
    async fn redial(&self, broken: &Connection) -> Result<Connection, TunnelError> {
        let mut slot = self.conn.lock().await;
        if slot.stable_id() != broken.stable_id() {
            return Ok(slot.clone());
        }
        if let Some(reason) = broken.close_reason() {
            closed_on_purpose(&reason)?;
        }
        let conn = dial(&self.endpoint, &self.relay, &self.routes, self.reachable).await?;
        *slot = conn.clone();
        Ok(conn)
    }
}

/// Opens a switchboard connection and, for a node that takes calls, says hello: calls can
/// reach it once the relay has registered it, which it confirms by answering. A caller says
/// nothing until it calls.
async fn dial(
    endpoint: &Endpoint,
    relay: &EndpointAddr,
    routes: &Routes,
    reachable: bool,
) -> Result<Connection, TunnelError> {
    let id = relay.id.fmt_short().to_string();
    let conn = endpoint
        .connect(relay.clone(), crate::SWITCH_ALPN)
        .await
        .map_err(|e| TunnelError::Connect {
            relay: id,
            reason: e.to_string(),
        })?;
    if reachable {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| stream_error(&conn, e))?;
        send.write_all(&[HELLO, VERSION])
            .await
            .map_err(|e| stream_error(&conn, e))?;
        let mut ok = [0u8; 1];
        recv.read_exact(&mut ok).await.map_err(|e| stream_error(&conn, e))?;
    }
    tokio::spawn(route_datagrams(conn.clone(), routes.clone()));
    Ok(conn)
}

/// The relay closes a connection on purpose when a newer one of the same node took its place
/// or the node left the circle: dialling again would only fight that.
fn closed_on_purpose(reason: &ConnectionError) -> Result<(), TunnelError> {
    let ConnectionError::ApplicationClosed(close) = reason else {
        return Ok(());
    };
    if close.error_code == VarInt::from_u32(crate::switch_server::SUPERSEDED) {
        Err(TunnelError::Superseded)
    } else if close.error_code == VarInt::from_u32(crate::server::NOT_A_MEMBER) {
        Err(TunnelError::Refused(
            String::from_utf8_lossy(&close.reason).into_owned(),
        ))
    } else {
        Ok(())
    }
}

fn make_pipe(id: u64, send: SendStream, recv: RecvStream, conn: Connection, routes: &Routes) -> Pipe {
    let (tx, datagrams) = mpsc::channel(DATAGRAM_QUEUE);
    routes.lock().expect("routes lock").insert(id, tx);
    Pipe {
        id,
        send,
        recv,
        conn,
        datagrams,
        routes: routes.clone(),
    }
}

/// Hands each datagram to its pipe; one for a pipe that is gone or full is dropped.
async fn route_datagrams(conn: Connection, routes: Routes) {
    while let Ok(datagram) = conn.read_datagram().await {
        if datagram.len() < 8 {
            continue;
        }
        let id = u64::from_be_bytes(datagram[..8].try_into().expect("8 bytes"));
        let route = routes.lock().expect("routes lock").get(&id).cloned();
        if let Some(route) = route {
            let _ = route.try_send(datagram.slice(8..));
        }
    }
}

/// A member calling this node.
pub struct IncomingCall {
    pub caller: EndpointId,
    pipe_id: u64,
    send: SendStream,
    recv: RecvStream,
    conn: Connection,
    routes: Routes,
}

impl IncomingCall {
    pub async fn accept(mut self) -> Result<Pipe, TunnelError> {
        self.send
            .write_all(&[ACCEPT])
            .await
            .map_err(|e| TunnelError::Stream(e.to_string()))?;
        Ok(make_pipe(self.pipe_id, self.send, self.recv, self.conn, &self.routes))
    }

    pub async fn refuse(mut self) {
        let _ = self.send.write_all(&[REFUSE]).await;
        let _ = self.send.finish();
        // Delivered before the caller's endpoint may be dropped.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.send.stopped()).await;
    }
}

/// A pipe to another member: a reliable stream each way (`send`, `recv`; finishing `send`
/// half-closes it at the other end), and unreliable datagrams for live media.
pub struct Pipe {
    pub id: u64,
    pub send: SendStream,
    pub recv: RecvStream,
    conn: Connection,
    datagrams: mpsc::Receiver<Bytes>,
    routes: Routes,
}

impl Pipe {
    /// Sends a datagram to the other end: it may be lost, is never retransmitted or queued.
    pub fn send_datagram(&self, data: &[u8]) -> Result<(), TunnelError> {
        let mut framed = BytesMut::with_capacity(8 + data.len());
        framed.extend_from_slice(&self.id.to_be_bytes());
        framed.extend_from_slice(data);
        self.conn
            .send_datagram(framed.freeze())
            .map_err(|e| TunnelError::Stream(e.to_string()))
    }

    /// The next datagram from the other end.
    pub async fn recv_datagram(&mut self) -> Option<Bytes> {
        self.datagrams.recv().await
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.routes.lock().expect("routes lock").remove(&self.id);
    }
}
