//! The relay side of the switchboard: rings the callee on its own switchboard connection and,
//! if it accepts, splices the caller's stream and the callee's both ways, chunk by chunk
//! (QUIC flow control carries back-pressure end to end; nothing is buffered beyond a chunk).
//! Datagrams tagged with a pipe's id are passed to the other end, or dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iroh::EndpointId;
use iroh::endpoint::{Connection, RecvStream, SendStream, VarInt};

use crate::members::Members;
use crate::switch::{ACCEPT, CALL, CallStatus, HELLO, VERSION};

/// Close code for a switchboard connection replaced by a newer one of the same node.
pub const SUPERSEDED: u32 = 409;
/// How long the callee may take to answer a ring.
const RING: Duration = Duration::from_secs(30);
/// How long a caller may take to say whom it calls.
const DIAL: Duration = Duration::from_secs(10);

/// Who is reachable, and the pipes in use.
pub(crate) struct Switchboard {
    online: Mutex<HashMap<EndpointId, Connection>>,
    /// Pipe id → the connections at its two ends.
    pipes: Mutex<HashMap<u64, (Connection, Connection)>>,
    open: Mutex<HashMap<EndpointId, usize>>,
    next_pipe: AtomicU64,
    max_pipes_per_member: usize,
}

impl Switchboard {
    pub fn new(max_pipes_per_member: usize) -> Arc<Self> {
        Arc::new(Self {
            online: Mutex::default(),
            pipes: Mutex::default(),
            open: Mutex::default(),
            next_pipe: AtomicU64::new(1),
            max_pipes_per_member,
        })
    }

    /// Counts a pipe against both ends' limits, or says it would exceed one.
    fn take_pipe(&self, a: EndpointId, b: EndpointId) -> bool {
        let mut open = self.open.lock().expect("switch lock");
        if [a, b]
            .iter()
            .any(|m| open.get(m).copied().unwrap_or(0) >= self.max_pipes_per_member)
        {
            return false;
        }
        *open.entry(a).or_default() += 1;
        *open.entry(b).or_default() += 1;
        true
    }

    fn give_back(&self, a: EndpointId, b: EndpointId) {
        let mut open = self.open.lock().expect("switch lock");
        for m in [a, b] {
            if let Some(n) = open.get_mut(&m) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&m);
                }
            }
        }
    }
}

/// Serves one member's switchboard connection until it ends.
pub(crate) async fn serve(conn: Connection, board: Arc<Switchboard>, members: Members) {
    let peer = conn.remote_id();
    // The newest connection of a node wins; the older one is told and closed.
    let older = board.online.lock().expect("switch lock").insert(peer, conn.clone());
    if let Some(older) = older.filter(|c| c.stable_id() != conn.stable_id()) {
        older.close(
            VarInt::from_u32(SUPERSEDED),
            b"a newer connection of this node took over",
        );
    }
    tokio::spawn(forward_datagrams(conn.clone(), board.clone()));
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "switchboard connection ended");
                break;
            }
        };
        let (board, members) = (board.clone(), members.clone());
        tokio::spawn(async move { call(peer, send, recv, board, members).await });
    }
    let mut online = board.online.lock().expect("switch lock");
    if online.get(&peer).is_some_and(|c| c.stable_id() == conn.stable_id()) {
        online.remove(&peer);
    }
}

async fn call(
    caller: EndpointId,
    mut send: SendStream,
    mut recv: RecvStream,
    board: Arc<Switchboard>,
    members: Members,
) {
    let mut kind = [0u8; 2];
    let status = match tokio::time::timeout(DIAL, recv.read_exact(&mut kind)).await {
        // "Am I reachable yet?": this connection was registered before its first stream.
        Ok(Ok(())) if kind == [HELLO, VERSION] => {
            let _ = send.write_all(&[0]).await;
            let _ = send.finish();
            return;
        }
        Ok(Ok(())) if kind == [CALL, VERSION] => {
            let mut callee = [0u8; 32];
            match tokio::time::timeout(DIAL, recv.read_exact(&mut callee)).await {
                Ok(Ok(())) => match EndpointId::from_bytes(&callee) {
                    Ok(callee) => ring(caller, callee, &board, &members).await,
                    Err(_) => Err(CallStatus::NotAMember),
                },
                _ => Err(CallStatus::Malformed),
            }
        }
        _ => Err(CallStatus::Malformed),
    };
    let (callee, pipe_id, mut b_send, mut b_recv, b_conn) = match status {
        Ok(rung) => rung,
        Err(status) => {
            let mut answer = [0u8; 9];
            answer[0] = status as u8;
            let _ = send.write_all(&answer).await;
            let _ = send.finish();
            return;
        }
    };
    let mut answer = [0u8; 9];
    answer[0] = CallStatus::Connected as u8;
    answer[1..].copy_from_slice(&pipe_id.to_be_bytes());
    if send.write_all(&answer).await.is_ok() {
        let a_conn = board.online.lock().expect("switch lock").get(&caller).cloned();
        if let Some(a_conn) = a_conn {
            board
                .pipes
                .lock()
                .expect("switch lock")
                .insert(pipe_id, (a_conn, b_conn));
        }
        tracing::debug!(pipe = pipe_id, "pipe open");
        let (up, down) = tokio::join!(splice(&mut recv, &mut b_send), splice(&mut b_recv, &mut send));
        tracing::debug!(pipe = pipe_id, up, down, "pipe closed");
        board.pipes.lock().expect("switch lock").remove(&pipe_id);
    }
    board.give_back(caller, callee);
}

/// Checks the call and rings the callee; on acceptance, the callee's end of the pipe.
async fn ring(
    caller: EndpointId,
    callee: EndpointId,
    board: &Switchboard,
    members: &Members,
) -> Result<(EndpointId, u64, SendStream, RecvStream, Connection), CallStatus> {
    if !members.contains(&callee) {
        return Err(CallStatus::NotAMember);
    }
    let b_conn = board
        .online
        .lock()
        .expect("switch lock")
        .get(&callee)
        .cloned()
        .ok_or(CallStatus::Offline)?;
    if !board.take_pipe(caller, callee) {
        return Err(CallStatus::TooManyPipes);
    }
    let pipe_id = board.next_pipe.fetch_add(1, Ordering::Relaxed);
    let rung = async {
        let (mut b_send, mut b_recv) = b_conn.open_bi().await.map_err(|_| CallStatus::Offline)?;
        let mut ring = Vec::with_capacity(40);
        ring.extend_from_slice(caller.as_bytes());
        ring.extend_from_slice(&pipe_id.to_be_bytes());
        b_send.write_all(&ring).await.map_err(|_| CallStatus::Offline)?;
        let mut reply = [0u8; 1];
        match tokio::time::timeout(RING, b_recv.read_exact(&mut reply)).await {
            Ok(Ok(())) if reply[0] == ACCEPT => Ok((b_send, b_recv)),
            Ok(Ok(())) => Err(CallStatus::Refused),
            Ok(Err(_)) => Err(CallStatus::Refused),
            Err(_) => Err(CallStatus::NoAnswer),
        }
    };
    match rung.await {
        Ok((b_send, b_recv)) => Ok((callee, pipe_id, b_send, b_recv, b_conn)),
        Err(status) => {
            board.give_back(caller, callee);
            Err(status)
        }
    }
}

/// Copies one direction chunk by chunk until its end, then passes the end on (half-close);
/// a reset or a lost connection resets the other side. Returns the bytes moved.
async fn splice(from: &mut RecvStream, to: &mut SendStream) -> u64 {
    let mut moved = 0;
    loop {
        match from.read_chunk(64 * 1024).await {
            Ok(Some(chunk)) => {
                moved += chunk.len() as u64;
                if to.write_chunk(chunk).await.is_err() {
                    let _ = from.stop(VarInt::from_u32(0));
                    return moved;
                }
            }
            Ok(None) => {
                let _ = to.finish();
                return moved;
            }
            Err(_) => {
                let _ = to.reset(VarInt::from_u32(0));
                return moved;
            }
        }
    }
}

/// Passes each datagram tagged with a pipe id to that pipe's other end.
async fn forward_datagrams(conn: Connection, board: Arc<Switchboard>) {
    while let Ok(datagram) = conn.read_datagram().await {
        if datagram.len() < 8 {
            continue;
        }
        let id = u64::from_be_bytes(datagram[..8].try_into().expect("8 bytes"));
        let other = board.pipes.lock().expect("switch lock").get(&id).and_then(|(a, b)| {
            if a.stable_id() == conn.stable_id() {
                Some(b.clone())
            } else if b.stable_id() == conn.stable_id() {
                Some(a.clone())
            } else {
                None // not this member's pipe
            }
        });
        if let Some(other) = other {
            let _ = other.send_datagram(datagram);
        }
    }
}
