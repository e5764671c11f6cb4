//! Binding the iroh endpoint: which relay servers and address lookup to use.

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use iroh::endpoint::{QuicTransportConfig, VarInt, presets};
use iroh::tls::CaTlsConfig;
use iroh::{Endpoint, RelayMode, RelayUrl, SecretKey};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::TunnelError;

/// Streams a peer may have open at once on one connection: one per in-flight request (or
/// forwarded TCP connection), so well above what one app or `connect` uses in practice.
/// The relay's is configurable (`--max-streams-per-connection`, see [`bind_limited`]).
pub const DEFAULT_MAX_STREAMS: u32 = 1024;

/// A quiet connection still sends a packet this often, so NAT bindings stay open and a peer
/// that crashed (or a relay killed with -9) is noticed within the idle timeout, not after
/// the 30 s default.
const SERVER_KEEP_ALIVE: Duration = Duration::from_secs(2);
/// The relay's side: lenient, so a phone on a bad network is not cut off by a short gap.
const SERVER_IDLE_TIMEOUT_MS: u32 = 8_000;
/// Our clients (`connect`, `send`/`inbox`, `pipe`): QUIC takes the smaller of the two idle
/// timeouts, so this is what bounds a client's wait on a relay that was killed and
/// restarted. The restarted relay cannot reset the old connection (iroh draws a fresh
/// stateless-reset key at every start), so silence is the only sign: three keep-alives
/// unanswered and the client dials again.
const CLIENT_KEEP_ALIVE: Duration = Duration::from_millis(750);
const CLIENT_IDLE_TIMEOUT_MS: u32 = 2_500;

/// `--iroh-relay default|disabled|URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayChoice {
    /// n0's public relays and address lookup: works behind NAT on the internet.
    Default,
    /// No relay and no address lookup: direct addresses only (LAN, loopback, tests).
    Disabled,
    /// A self-hosted iroh relay, and no n0 services at all.
    Custom(RelayUrl),
}

impl FromStr for RelayChoice {
    type Err = TunnelError;

    fn from_str(s: &str) -> Result<Self, TunnelError> {
        match s {
            "default" => Ok(Self::Default),
            "disabled" | "none" | "off" => Ok(Self::Disabled),
            url => url
                .parse()
                .map(Self::Custom)
                .map_err(|_| TunnelError::Config(format!("--iroh-relay: {url:?} is not default, disabled or a URL"))),
        }
    }
}

/// Everything about how an endpoint reaches the network, from flags or the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointOptions {
    pub relay: RelayChoice,
    /// UDP address to bind; `None` lets iroh pick (all interfaces, random ports).
    pub bind: Option<SocketAddr>,
    /// A second address, of the other family, bound beside `bind` (the relay keeps both of
    /// its ports across restarts so its link stays valid); `None`: iroh's default for it.
    pub bind_also: Option<SocketAddr>,
    /// Extra trusted roots for a self-hosted iroh relay with a private certificate.
    pub relay_ca: Vec<CertificateDer<'static>>,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            relay: RelayChoice::Default,
            bind: None,
            bind_also: None,
            relay_ca: Vec::new(),
        }
    }
}

/// Reads PEM certificates (`--iroh-relay-ca`).
pub fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, TunnelError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TunnelError::Config(format!("reading certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TunnelError::Config(format!("no PEM certificate in {}", path.display())));
    }
    Ok(certs)
}

/// Binds an endpoint with `secret_key`, accepting `alpns`; with none it is a client, and
/// gets the client's shorter keep-alive and idle timeout.
pub async fn bind(
    secret_key: SecretKey,
    options: &EndpointOptions,
    alpns: Vec<Vec<u8>>,
) -> Result<Endpoint, TunnelError> {
    bind_limited(secret_key, options, alpns, DEFAULT_MAX_STREAMS).await
}

/// As [`bind`], letting a peer open at most `max_streams` streams at once per connection;
/// QUIC holds back the rest until one closes (flow control, not an error).
pub async fn bind_limited(
    secret_key: SecretKey,
    options: &EndpointOptions,
    alpns: Vec<Vec<u8>>,
    max_streams: u32,
) -> Result<Endpoint, TunnelError> {
    let (keep_alive, idle_ms) = if alpns.is_empty() {
        (CLIENT_KEEP_ALIVE, CLIENT_IDLE_TIMEOUT_MS)
    } else {
        (SERVER_KEEP_ALIVE, SERVER_IDLE_TIMEOUT_MS)
    };
    let transport = QuicTransportConfig::builder()
        .max_concurrent_bidi_streams(VarInt::from_u32(max_streams))
        .keep_alive_interval(keep_alive)
        .max_idle_timeout(Some(VarInt::from_u32(idle_ms).into()))
        .build();
    let builder = match &options.relay {
        RelayChoice::Default => Endpoint::builder(presets::N0),
        RelayChoice::Disabled => Endpoint::builder(presets::Minimal).relay_mode(RelayMode::Disabled),
        RelayChoice::Custom(url) => Endpoint::builder(presets::Minimal).relay_mode(RelayMode::custom([url.clone()])),
    };
    let mut builder = builder.secret_key(secret_key).alpns(alpns).transport_config(transport);
    if !options.relay_ca.is_empty() {
        builder = builder.ca_tls_config(CaTlsConfig::default().with_extra_roots(options.relay_ca.iter().cloned()));
    }
    let other_family = options
        .bind_also
        .filter(|also| options.bind.is_none_or(|addr| addr.is_ipv4() != also.is_ipv4()));
    for addr in options.bind.into_iter().chain(other_family) {
        builder = builder
            .bind_addr(addr)
            .map_err(|e| TunnelError::Config(format!("cannot bind the tunnel to {addr}: {e}")))?;
    }
    builder.bind().await.map_err(|e| TunnelError::Bind(e.to_string()))
}

/// The link an app scans to reach this endpoint: its id, its home relay, and its direct
/// addresses when there is no relay to find it through.
pub fn relay_link(endpoint: &Endpoint, circle: crate::link::CircleId) -> crate::link::RelayLink {
    let addr = endpoint.addr();
    let relay_url = addr.relay_urls().next().cloned();
    let direct_addrs = if relay_url.is_some() {
        Vec::new()
    } else {
        let mut addrs: Vec<SocketAddr> = addr.ip_addrs().copied().collect();
        if addrs.is_empty() {
            addrs = endpoint.bound_sockets();
        }
        for a in &mut addrs {
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
        }
        addrs.sort();
        addrs.dedup();
        addrs
    };
    crate::link::RelayLink {
        circle,
        relay: endpoint.id(),
        relay_url,
        direct_addrs,
    }
}
