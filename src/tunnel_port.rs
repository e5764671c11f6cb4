//! Keeps the tunnel's UDP ports across restarts, so that a relay link carrying direct
//! addresses (no iroh relay in use, or offline) stays valid. With no `--iroh-addr`, the relay
//! binds all interfaces on the ports it had before, IPv4 and IPv6; with an address but port 0
//! (`--iroh-addr 192.168.1.5:0`), that address on the port it had before, and the other family
//! as before too. If a port is taken, the caller binds as configured instead.

use std::net::SocketAddr;
use std::path::Path;

const FILE: &str = "tunnel-port";

/// The ports of the last run: `IPV4 [IPV6]` (an older relay wrote only the first).
fn remembered(data_dir: &Path) -> (Option<u16>, Option<u16>) {
    let text = std::fs::read_to_string(data_dir.join(FILE)).unwrap_or_default();
    let mut ports = text
        .split_whitespace()
        .map(|p| p.parse::<u16>().ok().filter(|p| *p != 0));
    (ports.next().flatten(), ports.next().flatten())
}

/// `settings` with the remembered ports filled in where they leave the port to chance.
pub fn choose(data_dir: &Path, settings: &tunnel::EndpointOptions) -> tunnel::EndpointOptions {
    let (v4, v6) = remembered(data_dir);
    let on = |unspecified: SocketAddr, port: Option<u16>| port.map(|p| SocketAddr::new(unspecified.ip(), p));
    let any_v4 = SocketAddr::from(([0, 0, 0, 0], 0));
    let any_v6 = SocketAddr::from(([0u16; 8], 0));
    let (bind, bind_also) = match settings.bind {
        None => (on(any_v4, v4), on(any_v6, v6)),
        Some(addr) => {
            let port = if addr.is_ipv4() { v4 } else { v6 };
            let addr = match port {
                Some(p) if addr.port() == 0 => SocketAddr::new(addr.ip(), p),
                _ => addr,
            };
            let other = if addr.is_ipv4() { on(any_v6, v6) } else { on(any_v4, v4) };
            (Some(addr), other)
        }
    };
    tunnel::EndpointOptions {
        bind,
        bind_also,
        ..settings.clone()
    }
}

pub fn remember(data_dir: &Path, endpoint: &tunnel::Endpoint) {
    let sockets = endpoint.bound_sockets();
    let port = |v4: bool| {
        sockets
            .iter()
            .find(|s| s.is_ipv4() == v4 && !s.ip().is_loopback())
            .or_else(|| sockets.iter().find(|s| s.is_ipv4() == v4))
            .map_or(0, |s| s.port())
    };
    let _ = std::fs::write(data_dir.join(FILE), format!("{} {}\n", port(true), port(false)));
}
