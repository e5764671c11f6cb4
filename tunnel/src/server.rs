//! The relay side: admits circle members and serves the S3 frontend on their QUIC streams.
//!
//! A connection's peer is proven by the QUIC/TLS handshake (its node id is its public key),
//! so a non-member is closed right after the handshake, before any stream is accepted or
//! any request read. Every accepted bi-stream carries HTTP/1.1 with keep-alive, served by
//! the same `gateway::Frontend` as the TCP listener.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::Frontend;
use hyper_util::server::graceful::GracefulShutdown;
use iroh::endpoint::{Connection, VarInt};
use iroh::{Endpoint, EndpointId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use mailbox::Mailbox;

use crate::members::{self, Members};
use crate::switch_server::{SwitchLimits, Switchboard};

/// Close code sent to a node that is not (or no longer) a member.
pub const NOT_A_MEMBER: u32 = 403;
/// Close code sent on a member's oldest connection when it opens one too many.
pub const TOO_MANY_CONNECTIONS: u32 = 429;
/// How often the running relay re-reads the members file.
const MEMBERS_POLL: Duration = Duration::from_millis(500);

/// The default of `--max-connections-per-member`: an app holds one connection per protocol,
/// and `connect`, `send` or `pipe` one each; a member restarting may briefly hold two of each.
pub const DEFAULT_CONNECTIONS_PER_MEMBER: usize = 16;

/// Live connections by peer, so that removing a member cuts them off at once.
#[derive(Clone)]
struct Connections {
    live: Arc<Mutex<HashMap<EndpointId, Vec<Connection>>>>,
    per_member: usize,
}

impl Connections {
    fn new(per_member: usize) -> Self {
        Self {
            live: Arc::default(),
            per_member: per_member.max(1),
        }
    }

    /// Past the member's allowance the oldest of its connections is closed: the newest is
    /// the one a member that restarted, or changed networks, is using now.
    fn add(&self, peer: EndpointId, conn: Connection) {
        let mut map = self.live.lock().expect("connections lock");
        let list = map.entry(peer).or_default();
        list.retain(|c| c.close_reason().is_none());
        list.push(conn);
        while list.len() > self.per_member {
            let oldest = list.remove(0);
            tracing::debug!(peer = %peer.fmt_short(), "closed a member's oldest connection: over its allowance");
            oldest.close(
                VarInt::from_u32(TOO_MANY_CONNECTIONS),
                b"too many connections from this member",
            );
        }
    }

    fn close_all_of(&self, peer: &EndpointId) {
        let removed = self.live.lock().expect("connections lock").remove(peer);
        for conn in removed.into_iter().flatten() {
            conn.close(VarInt::from_u32(NOT_A_MEMBER), b"no longer a member of this circle");
        }
    }
}

/// How many member connections the tunnel took and holds, per protocol, and how many
/// strangers it refused: counts only, for `/metrics`.
#[derive(Debug, Default)]
pub struct TunnelStats {
    accepted: [AtomicU64; 3],
    open: [AtomicU64; 3],
    refused: AtomicU64,
}

impl TunnelStats {
    /// The protocols, in the order [`TunnelStats::per_service`] reports them.
    pub const SERVICES: [&'static str; 3] = ["s3", "mailbox", "switchboard"];

    /// Per protocol: (name, connections accepted since start, connections open now).
    pub fn per_service(&self) -> [(&'static str, u64, u64); 3] {
        std::array::from_fn(|i| {
            (
                Self::SERVICES[i],
                self.accepted[i].load(Ordering::Relaxed),
                self.open[i].load(Ordering::Relaxed),
            )
        })
    }

    /// Connections refused because the node was not a member.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a connection to service `i` as open until the guard drops.
    fn opened(self: &Arc<Self>, i: usize) -> OpenConnection {
        self.accepted[i].fetch_add(1, Ordering::Relaxed);
        self.open[i].fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone(), i)
    }
}

struct OpenConnection(Arc<TunnelStats>, usize);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running tunnel listener.
pub struct TunnelServer {
    stats: Arc<TunnelStats>,
    endpoint: Endpoint,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl TunnelServer {
    /// Serves `frontend` ([`crate::ALPN`]) and `mailbox` ([`crate::MAILBOX_ALPN`]; `None`
    /// on a relay that stores nothing) to `members` on `endpoint` (bound with
    /// [`crate::alpns`]). When `members_dir` is given, the allow-list follows
    /// `<members_dir>/members.json`.
    pub fn start(
        endpoint: Endpoint,
        frontend: Frontend,
        mailbox: Option<Arc<Mailbox>>,
        members: Members,
        members_dir: Option<PathBuf>,
        switch: SwitchLimits,
        connections_per_member: usize,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let connections = Connections::new(connections_per_member);
        let stats = Arc::new(TunnelStats::default());
        let services = Services {
            frontend,
            mailbox,
            switchboard: Switchboard::new(switch),
        };
        let mut tasks = vec![tokio::spawn(accept_loop(
            endpoint.clone(),
            services,
            members.clone(),
            connections.clone(),
            stats.clone(),
            stopped.clone(),
        ))];
        if let Some(dir) = members_dir {
            tasks.push(tokio::spawn(watch_members(dir, members, connections, stopped)));
        }
        Self {
            stats,
            endpoint,
            stop,
            tasks,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn stats(&self) -> Arc<TunnelStats> {
        self.stats.clone()
    }

    /// Stops accepting, gives in-flight requests up to `grace`, then closes the endpoint.
    /// `false` if some were still running when the grace period ended.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        let mut finished = true;
        for task in self.tasks {
            finished &= tokio::time::timeout_at(deadline, task).await.is_ok();
        }
        self.endpoint.close().await;
        finished
    }
}

/// What the relay serves, one per ALPN.
#[derive(Clone)]
struct Services {
    frontend: Frontend,
    mailbox: Option<Arc<Mailbox>>,
    switchboard: Arc<Switchboard>,
}

async fn accept_loop(
    endpoint: Endpoint,
    services: Services,
    members: Members,
    connections: Connections,
    stats: Arc<TunnelStats>,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = Graceful::default();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            _ = stopped.wait_for(|s| *s) => break,
        };
        let (services, members, connections, graceful, stats) = (
            services.clone(),
            members.clone(),
            connections.clone(),
            graceful.clone(),
            stats.clone(),
        );
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel handshake failed");
                    return;
                }
            };
            let peer = conn.remote_id();
            if !members.contains(&peer) {
                // One admission for every protocol, before any stream is accepted.
                // Node ids identify people: only at debug level, like keys and addresses.
                tracing::info!(
                    "refused a tunnel from a node outside the circle (its id is logged at debug level; \
                     `haven-relay members add NODE_ID` admits a node)"
                );
                tracing::debug!(peer = %peer.fmt_short(), "refused node");
                stats.refused.fetch_add(1, Ordering::Relaxed);
                conn.close(VarInt::from_u32(NOT_A_MEMBER), b"not a member of this circle");
                return;
            }
            tracing::debug!(peer = %peer.fmt_short(), "member connected");
            connections.add(peer, conn.clone());
            match conn.alpn() {
                alpn if alpn == crate::MAILBOX_ALPN => {
                    let _open = stats.opened(1);
                    crate::mailbox_server::serve(conn, services.mailbox, members).await
                }
                alpn if alpn == crate::SWITCH_ALPN => {
                    let _open = stats.opened(2);
                    crate::switch_server::serve(conn, services.switchboard, members).await
                }
                _ => {
                    let _open = stats.opened(0);
                    serve_streams(conn, services.frontend, &graceful).await
                }
            }
        });
    }
    // Wait for requests in flight on streams already accepted; the caller bounds this.
    let pending = graceful.0.lock().expect("graceful lock").take();
    if let Some(pending) = pending {
        pending.shutdown().await;
    }
}

/// hyper's graceful shutdown, shared by every connection's stream loop; `None` once stopping.
#[derive(Clone)]
struct Graceful(Arc<Mutex<Option<GracefulShutdown>>>);

impl Default for Graceful {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Some(GracefulShutdown::new()))))
    }
}

async fn serve_streams(conn: Connection, frontend: Frontend, graceful: &Graceful) {
    let frontend = frontend.for_node(&conn.remote_id().to_string());
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "tunnel connection ended");
                return;
            }
        };
        let http = frontend.serve_connection(tokio::io::join(recv, send));
        let Some(http) = graceful
            .0
            .lock()
            .expect("graceful lock")
            .as_ref()
            .map(|g| g.watch(http))
        else {
            return; // shutting down
        };
        tokio::spawn(async move {
            if let Err(e) = http.await {
                tracing::debug!(error = %e, "tunnel stream ended with an error");
            }
        });
    }
}

async fn watch_members(dir: PathBuf, members: Members, connections: Connections, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(MEMBERS_POLL) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let loaded = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || members::load(&dir)).await
        };
        match loaded {
            Ok(Ok(current)) => {
                for gone in members.replace(current) {
                    tracing::info!("a member was removed; closing its tunnels");
                    tracing::debug!(peer = %gone.fmt_short(), "removed member");
                    connections.close_all_of(&gone);
                }
            }
            // A half-edited file keeps the old list rather than locking everyone out.
            Ok(Err(e)) => tracing::warn!(error = %e, "keeping the previous members list"),
            Err(_) => {}
        }
    }
}
