use std::io;

/// Why the tunnel could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("{0}")]
    Config(String),
    #[error("binding the iroh endpoint: {0}")]
    Bind(String),
    #[error("connecting to the relay {relay}: {reason}")]
    Connect { relay: String, reason: String },
    #[error("the relay refused this node (not a member of the circle?): {0}")]
    Refused(String),
    #[error("a newer connection of this node to the relay took this one's place")]
    Superseded,
    #[error("opening a stream to the relay: {0}")]
    Stream(String),
    #[error("the mailbox stream to the relay: {0}")]
    Mailbox(String),
    #[error("no pipe: {0}")]
    CallFailed(crate::switch::CallStatus),
    #[error("HTTP over the tunnel: {0}")]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Members(#[from] crate::members::MembersError),
}
