//! The mailbox: sealed messages held for circle members who are offline, handed over the
//! moment they reconnect, then forgotten.
//!
//! The relay learns a message's random id, its recipients' public node ids, its hop count,
//! its size and the day it expires; never its contents (sealed by the apps), its sender
//! (known from the connection, not stored) or when it arrived. Messages are kept in the
//! relay's [`backends::Store`], in a bucket the S3 API cannot see ([`hidden`]), so they are
//! exactly as durable as objects. The wire format is in [`frame`]; the transport (iroh, ALPN
//! `haven-relay/mailbox/1`) lives in the `tunnel` crate.

mod delivery;
pub mod frame;
pub mod hidden;
mod janitor;
mod keys;
pub mod limits;
mod mailbox;
mod receipts;

pub use backends::clock::{Clock, Day, ManualClock, SystemClock};
pub use delivery::{Deliveries, deliveries};
pub use frame::{Delivery, MessageId, NodeId, Post, PostStatus};
pub use keys::BUCKET;
pub use limits::Limits;
pub use mailbox::{Inbox, Mailbox, MailboxStats, PostPermit, Queued};
