//! The iroh tunnel: the relay's S3 API reached by public key over QUIC, with no open port.
//!
//! The relay side ([`server`]) serves the very same `gateway::Frontend` as the HTTP
//! listener, HTTP/1.1 on each QUIC bi-stream; only circle members get past the handshake.
//! The client side is a library ([`client`]) and a local TCP forwarder ([`forward`]) for
//! standard tools.

#[cfg(feature = "aws-sdk")]
pub mod aws;
pub mod client;
pub mod endpoint;
mod error;
pub mod forward;
pub mod identity;
pub mod link;
pub mod members;
pub mod server;

/// The tunnel's ALPN; bump the version on any incompatible change of what streams carry.
pub const ALPN: &[u8] = b"haven-relay/s3/1";

pub use client::TunnelClient;
pub use endpoint::{EndpointOptions, RelayChoice};
pub use error::TunnelError;
pub use iroh::{Endpoint, EndpointAddr, EndpointId, SecretKey};
pub use server::TunnelServer;
