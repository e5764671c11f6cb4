//! Keeps the tunnel's UDP port across restarts when the user pinned an address but not a
//! port (`--iroh-addr 192.168.1.5:0`), so links that carry direct addresses stay valid.

use std::net::SocketAddr;
use std::path::Path;

const FILE: &str = "tunnel-port";

/// The address to bind: the configured one, with port 0 replaced by the remembered port.
pub fn choose(data_dir: &Path, configured: Option<SocketAddr>) -> Option<SocketAddr> {
    let mut addr = configured?;
    if addr.port() == 0
        && let Some(port) = std::fs::read_to_string(data_dir.join(FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    {
        addr.set_port(port);
    }
    Some(addr)
}

pub fn remember(data_dir: &Path, endpoint: &tunnel::Endpoint) {
    if let Some(addr) = endpoint.bound_sockets().first() {
        let _ = std::fs::write(data_dir.join(FILE), format!("{}\n", addr.port()));
    }
}
