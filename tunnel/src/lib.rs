//! The iroh QUIC tunnel that will carry the same S3 frontend with no open port.
//!
//! Not built yet: this crate is a placeholder until the tunnel issue (see tunnel/README.md).
