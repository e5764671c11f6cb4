//! Handing a member its messages: the queue in the order messages became durable, read ahead
//! so that draining costs no round trip per message, then each new message the moment it is
//! stored.

use std::sync::Arc;
use std::time::Duration;

use backends::StoreError;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::frame::{Delivery, NodeId};
use crate::mailbox::{Inbox, Mailbox};

/// Messages handed over but not yet written: with the largest messages (1 MiB by default) an
/// inbox whose member stops reading holds at most this many.
const HANDED_OVER: usize = 8;
/// Store reads ahead of the message being sent: as many as fit in [`BYTES_AHEAD`] (the
/// batch's largest message counted for each), between 1 and [`MOST_AHEAD`]. Small messages,
/// the common case, are read many at a time; a queue of 1 MiB media pointers is not.
const BYTES_AHEAD: u64 = 8 << 20;
const MOST_AHEAD: usize = 32;
const BATCH: usize = 256;

/// A member's deliveries, and a handle that says when a newer inbox took over.
pub struct Deliveries {
    pub messages: mpsc::Receiver<Delivery>,
    pub inbox: Inbox,
}

/// Starts delivering `member`'s inbox: every unacknowledged message (again, if an earlier
/// connection did not acknowledge it), then [`Delivery::Empty`], then new messages as they
/// arrive (each catch-up ends with `Empty` again). When the member opens a newer inbox this
/// one ends with [`Delivery::Superseded`] (or just ends, if its reader is stuck); it also
/// stops when the receiver is dropped.
pub fn deliveries(mailbox: Arc<Mailbox>, member: NodeId) -> Deliveries {
    let (tx, rx) = mpsc::channel(HANDED_OVER);
    let mut inbox = mailbox.open_inbox(member);
    let handle = inbox.clone();
    tokio::spawn(async move {
        let mut after = None;
        let mut caught_up = false;
        let mut watch = inbox.clone();
        // Every send also watches for a newer inbox: a member that stopped reading must not
        // pin this one (and its read-ahead) forever.
        macro_rules! send {
            ($d:expr) => {
                tokio::select! {
                    sent = tx.send($d) => if sent.is_err() { return },
                    () = watch.until_superseded() => return,
                }
            };
        }
        loop {
            if inbox.superseded() {
                let _ = tx.try_send(Delivery::Superseded);
                return;
            }
            let batch = mailbox.next_for(&mut inbox, after, BATCH);
            if batch.is_empty() {
                if !caught_up {
                    send!(Delivery::Empty);
                    caught_up = true;
                }
                tokio::select! {
                    () = inbox.changed() => continue,
                    () = tx.closed() => return,
                }
            }
            let largest = batch.iter().map(|q| q.size).max().unwrap_or(0).max(1);
            let ahead = usize::try_from(BYTES_AHEAD / largest).map_or(MOST_AHEAD, |n| n.clamp(1, MOST_AHEAD));
            let reads = futures::stream::iter(batch).map(|queued| {
                let mailbox = mailbox.clone();
                async move { (queued, mailbox.payload(queued.seq, queued.id).await) }
            });
            let mut reads = reads.buffered(ahead);
            while let Some((queued, read)) = reads.next().await {
                match read {
                    Ok(payload) => {
                        send!(Delivery::Message { id: queued.id, payload });
                        caught_up = false;
                    }
                    // Acknowledged through an older connection, or expired, meanwhile.
                    Err(StoreError::NoSuchKey) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "reading a message failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => break,
                            () = tx.closed() => return,
                        }
                    }
                }
                after = Some(queued.position);
            }
        }
    });
    Deliveries {
        messages: rx,
        inbox: handle,
    }
}
