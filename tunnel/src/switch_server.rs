//! The relay side of the switchboard: rings the callee on its own switchboard connection and,
//! if it accepts, splices the caller's stream and the callee's both ways, chunk by chunk
//! (QUIC flow control carries back-pressure end to end; nothing is buffered beyond a chunk).
//! Datagrams tagged with a pipe's id are passed to the other end, or dropped.

use std::collections::HashMap;
use std::num::NonZeroU32;
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
/// Rings one caller may have going at once.
const RINGS_PER_CALLER: usize = 16;
/// How long a caller may take to say whom it calls.
const DIAL: Duration = Duration::from_secs(10);

/// The largest piece of a pipe copied at once.
const CHUNK: usize = 64 * 1024;

/// What one member may use of the switchboard (`--switch-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchLimits {
    /// Pipes open at once, counting those it called and those it accepted.
    pub pipes_per_member: usize,
    /// Bytes per second it may send through all its pipes together; `None`: no limit.
    /// Datagrams count too, and are dropped rather than delayed when over it.
    pub bytes_per_second: Option<NonZeroU32>,
}

impl Default for SwitchLimits {
    fn default() -> Self {
        Self {
            pipes_per_member: 16,
            bytes_per_second: None,
        }
    }
}

/// A member's byte allowance, shared by all its pipes: a bucket that refills at the rate and
/// holds one second of it.
#[derive(Clone)]
struct Allowance {
    bucket: Arc<governor::DefaultDirectRateLimiter>,
    per_second: NonZeroU32,
}

impl Allowance {
    /// Waits until `n` bytes may pass; `n` is at most one second's worth.
    async fn take(&self, n: usize) {
        if let Some(n) = NonZeroU32::new(n as u32) {
            // Only fails for more than the bucket holds, which callers never ask for.
            let _ = self.bucket.until_n_ready(n).await;
        }
    }

    /// Whether `n` bytes may pass now, for what is dropped rather than delayed.
    fn try_take(&self, n: usize) -> bool {
        NonZeroU32::new(n as u32).is_none_or(|n| matches!(self.bucket.check_n(n), Ok(Ok(()))))
    }
}

/// Who is reachable, and the pipes in use.
pub(crate) struct Switchboard {
    online: Mutex<HashMap<EndpointId, Connection>>,
    /// Pipe id → the connections at its two ends.
    pipes: Mutex<HashMap<u64, (Connection, Connection)>>,
    open: Mutex<HashMap<EndpointId, usize>>,
    /// Rings in progress per caller.
    ringing: Mutex<HashMap<EndpointId, usize>>,
    next_pipe: AtomicU64,
    max_pipes_per_member: usize,
    /// Each member's byte allowance, shared by all its pipes, when there is a limit.
    allowances: Mutex<HashMap<EndpointId, Allowance>>,
    bytes_per_second: Option<NonZeroU32>,
}

impl Switchboard {
    pub fn new(limits: SwitchLimits) -> Arc<Self> {
        Arc::new(Self {
            online: Mutex::default(),
            pipes: Mutex::default(),
            open: Mutex::default(),
            ringing: Mutex::default(),
            next_pipe: AtomicU64::new(1),
            max_pipes_per_member: limits.pipes_per_member,
            allowances: Mutex::default(),
            bytes_per_second: limits.bytes_per_second,
        })
    }

    /// `member`'s byte allowance, when there is a byte rate.
    fn allowance(&self, member: EndpointId) -> Option<Allowance> {
        let per_second = self.bytes_per_second?;
        let mut allowances = self.allowances.lock().expect("switch lock");
        let allowance = allowances.entry(member).or_insert_with(|| Allowance {
            bucket: Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(per_second))),
            per_second,
        });
        Some(allowance.clone())
    }

    /// The members a pipe between `a` and `b` counts against (once, for a call to oneself).
    fn ends(a: EndpointId, b: EndpointId) -> Vec<EndpointId> {
        if a == b { vec![a] } else { vec![a, b] }
    }

    fn has_room(&self, a: EndpointId, b: EndpointId) -> bool {
        let open = self.open.lock().expect("switch lock");
        Self::ends(a, b)
            .iter()
            .all(|m| open.get(m).copied().unwrap_or(0) < self.max_pipes_per_member)
    }

    /// Counts a pipe against both ends' limits, or says it would exceed one.
    fn take_pipe(&self, a: EndpointId, b: EndpointId) -> bool {
        let mut open = self.open.lock().expect("switch lock");
        let ends = Self::ends(a, b);
        if ends
            .iter()
            .any(|m| open.get(m).copied().unwrap_or(0) >= self.max_pipes_per_member)
        {
            return false;
        }
        for m in ends {
            *open.entry(m).or_default() += 1;
        }
        true
    }

    /// A place among `caller`'s rings in progress, freed when dropped.
    fn start_ring(self: &Switchboard, caller: EndpointId) -> Option<RingGuard<'_>> {
        let mut ringing = self.ringing.lock().expect("switch lock");
        let n = ringing.entry(caller).or_default();
        if *n >= RINGS_PER_CALLER {
            return None;
        }
        *n += 1;
        Some(RingGuard { board: self, caller })
    }

    fn give_back(&self, a: EndpointId, b: EndpointId) {
        let mut open = self.open.lock().expect("switch lock");
        for m in Self::ends(a, b) {
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
    tokio::spawn(forward_datagrams(conn.clone(), board.clone()));
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "switchboard connection ended");
                break;
            }
        };
        let (board, members, conn) = (board.clone(), members.clone(), conn.clone());
        tokio::spawn(async move { call(conn, send, recv, board, members).await });
    }
    let mut online = board.online.lock().expect("switch lock");
    if online.get(&peer).is_some_and(|c| c.stable_id() == conn.stable_id()) {
        online.remove(&peer);
    }
}

/// One stream a member opened: a hello, or a call.
async fn call(
    a_conn: Connection,
    mut send: SendStream,
    mut recv: RecvStream,
    board: Arc<Switchboard>,
    members: Members,
) {
    let caller = a_conn.remote_id();
    let mut kind = [0u8; 2];
    let callee = match tokio::time::timeout(DIAL, recv.read_exact(&mut kind)).await {
        // "Make me reachable here." A connection that never says hello only places calls,
        // so a process that just calls does not take the place of one taking calls.
        Ok(Ok(())) if kind == [HELLO, VERSION] => {
            // The newest connection of a node to say hello wins; the older one is closed.
            let older = board.online.lock().expect("switch lock").insert(caller, a_conn.clone());
            if let Some(older) = older.filter(|c| c.stable_id() != a_conn.stable_id()) {
                older.close(
                    VarInt::from_u32(SUPERSEDED),
                    b"a newer connection of this node took over",
                );
            }
            let _ = send.write_all(&[0]).await;
            let _ = send.finish();
            return;
        }
        Ok(Ok(())) if kind == [CALL, VERSION] => {
            let mut callee = [0u8; 32];
            match tokio::time::timeout(DIAL, recv.read_exact(&mut callee)).await {
                Ok(Ok(())) => EndpointId::from_bytes(&callee).map_err(|_| CallStatus::NotAMember),
                _ => Err(CallStatus::Malformed),
            }
        }
        _ => Err(CallStatus::Malformed),
    };
    let rung = match callee {
        // The ring is abandoned the moment the caller leaves.
        Ok(callee) => tokio::select! {
            rung = ring(caller, callee, &board, &members) => rung,
            _ = a_conn.closed() => return,
        },
        Err(status) => Err(status),
    };
    let Rung {
        callee,
        pipe_id,
        mut b_send,
        mut b_recv,
        b_conn,
    } = match rung {
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
    if send.write_all(&answer).await.is_err() {
        // The caller left after all: the callee's pipe is cut, not cleanly ended.
        let _ = b_send.reset(VarInt::from_u32(0));
        let _ = b_recv.stop(VarInt::from_u32(0));
        board.give_back(caller, callee);
        return;
    }
    board
        .pipes
        .lock()
        .expect("switch lock")
        .insert(pipe_id, (a_conn.clone(), b_conn.clone()));
    tracing::debug!(pipe = pipe_id, "pipe open");
    let broken = {
        let up = splice(&mut recv, &mut b_send, board.allowance(caller));
        let down = splice(&mut b_recv, &mut send, board.allowance(callee));
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        let (mut a_gone, mut b_gone) = (false, false);
        // Both directions to their end; a reset tears the whole pipe down at once (its places
        // are freed with it). An end whose connection goes away breaks the pipe only if
        // something is still to be written to it: what it sent before leaving is still
        // passed on.
        loop {
            let clean = tokio::select! {
                clean = &mut up, if !up_done => { up_done = true; clean }
                clean = &mut down, if !down_done => { down_done = true; clean }
                _ = a_conn.closed(), if !a_gone => { a_gone = true; down_done }
                _ = b_conn.closed(), if !b_gone => { b_gone = true; up_done }
            };
            if !clean {
                break true;
            }
            if up_done && down_done {
                break false;
            }
        }
    };
    if broken {
        for stream in [&mut send, &mut b_send] {
            let _ = stream.reset(VarInt::from_u32(0));
        }
        for stream in [&mut recv, &mut b_recv] {
            let _ = stream.stop(VarInt::from_u32(0));
        }
    }
    tracing::debug!(pipe = pipe_id, broken, "pipe closed");
    board.pipes.lock().expect("switch lock").remove(&pipe_id);
    board.give_back(caller, callee);
}

/// The callee's end of an accepted call.
struct Rung {
    callee: EndpointId,
    pipe_id: u64,
    b_send: SendStream,
    b_recv: RecvStream,
    b_conn: Connection,
}

/// Checks the call and rings the callee. A ring takes no pipe places (a member that does not
/// answer cannot be locked out by it); the places are taken when the callee accepts. Each
/// caller may have [`RINGS_PER_CALLER`] rings going at once.
async fn ring(
    caller: EndpointId,
    callee: EndpointId,
    board: &Switchboard,
    members: &Members,
) -> Result<Rung, CallStatus> {
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
    if !board.has_room(caller, callee) {
        return Err(CallStatus::TooManyPipes);
    }
    let _ringing = board.start_ring(caller).ok_or(CallStatus::TooManyPipes)?;
    let pipe_id = board.next_pipe.fetch_add(1, Ordering::Relaxed);
    // The whole ring, opening the stream included, is bounded: a callee that never takes
    // rings (a full stream window) gets `no answer`, never a caller waiting forever.
    let rung = tokio::time::timeout(RING, async {
        let (mut b_send, mut b_recv) = b_conn.open_bi().await?;
        let mut ring = Vec::with_capacity(40);
        ring.extend_from_slice(caller.as_bytes());
        ring.extend_from_slice(&pipe_id.to_be_bytes());
        b_send.write_all(&ring).await?;
        let mut reply = [0u8; 1];
        b_recv.read_exact(&mut reply).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((reply[0], b_send, b_recv))
    })
    .await;
    let (reply, b_send, b_recv) = match rung {
        Err(_) => return Err(CallStatus::NoAnswer),
        // A callee that crashed is offline, not refusing.
        Ok(Err(_)) if b_conn.close_reason().is_some() => return Err(CallStatus::Offline),
        Ok(Err(_)) => return Err(CallStatus::Refused),
        Ok(Ok(answered)) => answered,
    };
    if reply != ACCEPT {
        return Err(CallStatus::Refused);
    }
    if !board.take_pipe(caller, callee) {
        let (mut b_send, mut b_recv) = (b_send, b_recv);
        let _ = b_send.reset(VarInt::from_u32(0));
        let _ = b_recv.stop(VarInt::from_u32(0));
        return Err(CallStatus::TooManyPipes);
    }
    Ok(Rung {
        callee,
        pipe_id,
        b_send,
        b_recv,
        b_conn,
    })
}

/// Copies one direction chunk by chunk until its end, then passes the end on (half-close).
/// `false` if it broke (a reset, a lost connection, the reader stopping).
/// With a byte rate, each chunk waits for its bytes from the sender's allowance first: the
/// sender's QUIC window then fills up and its writes slow down, so nothing queues here.
async fn splice(from: &mut RecvStream, to: &mut SendStream, allowance: Option<Allowance>) -> bool {
    // A chunk never asks for more than the bucket holds.
    let most = allowance
        .as_ref()
        .map_or(CHUNK, |a| CHUNK.min(a.per_second.get() as usize));
    loop {
        match from.read_chunk(most).await {
            Ok(Some(chunk)) => {
                if let Some(allowance) = &allowance {
                    allowance.take(chunk.len()).await;
                }
                if to.write_chunk(chunk).await.is_err() {
                    return false;
                }
            }
            Ok(None) => return to.finish().is_ok(),
            Err(_) => return false,
        }
    }
}

struct RingGuard<'a> {
    board: &'a Switchboard,
    caller: EndpointId,
}

impl Drop for RingGuard<'_> {
    fn drop(&mut self) {
        let mut ringing = self.board.ringing.lock().expect("switch lock");
        if let Some(n) = ringing.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                ringing.remove(&self.caller);
            }
        }
    }
}

/// Passes each datagram tagged with a pipe id to that pipe's other end.
/// Over the sender's byte rate, a datagram is dropped: live media would rather lose a frame
/// than have it late.
async fn forward_datagrams(conn: Connection, board: Arc<Switchboard>) {
    let allowance = board.allowance(conn.remote_id());
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
        if let Some(other) = other
            && allowance.as_ref().is_none_or(|a| a.try_take(datagram.len() - 8))
        {
            let _ = other.send_datagram(datagram);
        }
    }
}
