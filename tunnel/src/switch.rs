//! The switchboard, as an app embeds it: a pipe to another member through the relay, for
//! two members that cannot reach each other directly (ALPN `haven-relay/switch/1`).
//!
//! A member that wants to be reachable keeps a [`SwitchClient`] connected and takes calls
//! with [`SwitchClient::next_call`]; a caller asks for a pipe with [`SwitchClient::call`].
//! The relay splices the two streams; the apps seal what they send, the relay cannot read it.
//! Wire format and state machine: docs/ARCHITECTURE.md ("The switchboard").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use iroh::endpoint::{Connection, RecvStream, SendStream};
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
    conn: Connection,
    routes: Routes,
}

impl SwitchClient {
    /// Connects to the relay's switchboard; from now on this node can be called.
    pub async fn connect(endpoint: Endpoint, relay: EndpointAddr) -> Result<Self, TunnelError> {
        let id = relay.id.fmt_short().to_string();
        let conn = endpoint
            .connect(relay, crate::SWITCH_ALPN)
            .await
            .map_err(|e| TunnelError::Connect {
                relay: id,
                reason: e.to_string(),
            })?;
        // Calls can reach this node once the relay has registered the connection: it answers
        // a hello only after that.
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| stream_error(&conn, e))?;
        send.write_all(&[HELLO, VERSION])
            .await
            .map_err(|e| stream_error(&conn, e))?;
        let mut ok = [0u8; 1];
        recv.read_exact(&mut ok).await.map_err(|e| stream_error(&conn, e))?;
        let routes: Routes = Arc::default();
        tokio::spawn(route_datagrams(conn.clone(), routes.clone()));
        Ok(Self { endpoint, conn, routes })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Asks the relay for a pipe to `to`; an error names why there is none.
    pub async fn call(&self, to: EndpointId) -> Result<Pipe, TunnelError> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| stream_error(&self.conn, e))?;
        let mut hello = vec![CALL, VERSION];
        hello.extend_from_slice(to.as_bytes());
        send.write_all(&hello).await.map_err(|e| stream_error(&self.conn, e))?;
        let mut answer = [0u8; 9];
        recv.read_exact(&mut answer)
            .await
            .map_err(|e| stream_error(&self.conn, e))?;
        match CallStatus::from_byte(answer[0]) {
            Some(CallStatus::Connected) => {
                let id = u64::from_be_bytes(answer[1..].try_into().expect("8 bytes"));
                Ok(self.pipe(id, send, recv))
            }
            Some(status) => Err(TunnelError::CallFailed(status)),
            None => Err(TunnelError::Stream(format!("unknown call status {}", answer[0]))),
        }
    }

    /// Waits for the next member to call this node.
    pub async fn next_call(&self) -> Result<IncomingCall, TunnelError> {
        loop {
            let (send, mut recv) = self.conn.accept_bi().await.map_err(|e| stream_error(&self.conn, e))?;
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
                conn: self.conn.clone(),
                routes: self.routes.clone(),
            });
        }
    }

    fn pipe(&self, id: u64, send: SendStream, recv: RecvStream) -> Pipe {
        make_pipe(id, send, recv, self.conn.clone(), &self.routes)
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
