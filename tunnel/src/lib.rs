//! The iroh tunnel: the relay's S3 API and mailbox reached by public key over QUIC, with no
//! open port.
//!
//! The relay side ([`server`]) serves the very same `gateway::Frontend` as the HTTP
//! listener, HTTP/1.1 on each QUIC bi-stream, and the mailbox on its own ALPN; only circle
//! members get past the handshake.
//! The client side is a library ([`client`]) and a local TCP forwarder ([`forward`]) for
//! standard tools.

#[cfg(feature = "aws-sdk")]
pub mod aws;
pub mod client;
mod dial;
pub mod endpoint;
mod error;
pub mod forward;
pub mod identity;
pub mod link;
pub mod mailbox_client;
mod mailbox_server;
pub mod members;
pub mod server;
pub mod switch;
mod switch_server;

/// The tunnel's ALPN; bump the version on any incompatible change of what streams carry.
pub const ALPN: &[u8] = b"haven-relay/s3/1";
/// The mailbox's ALPN (see the `mailbox` crate's `frame` module for what its streams carry).
pub const MAILBOX_ALPN: &[u8] = b"haven-relay/mailbox/1";

/// The switchboard's ALPN: pipes between members through the relay (see [`switch`]).
pub const SWITCH_ALPN: &[u8] = b"haven-relay/switch/1";

/// Every protocol a relay endpoint accepts.
pub fn alpns() -> Vec<Vec<u8>> {
    vec![ALPN.to_vec(), MAILBOX_ALPN.to_vec(), SWITCH_ALPN.to_vec()]
}

pub use client::TunnelClient;
pub use endpoint::{EndpointOptions, RelayChoice};
pub use error::TunnelError;
pub use iroh::{Endpoint, EndpointAddr, EndpointId, SecretKey};
pub use mailbox_client::{InboxStream, MailboxClient};
pub use server::{TunnelServer, TunnelStats};
pub use switch_server::SwitchLimits;
