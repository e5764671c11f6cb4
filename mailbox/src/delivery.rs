//! Handing a member its messages: the queue in arrival order, read ahead so that draining
//! costs no round trip per message, then each new message the moment it is stored.

use std::sync::Arc;
use std::time::Duration;

use backends::StoreError;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::frame::{Delivery, NodeId};
use crate::mailbox::Mailbox;

/// Messages read from the store ahead of the one being sent.
const READ_AHEAD: usize = 16;
const BATCH: usize = 256;

/// Starts delivering `member`'s inbox: every unacknowledged message (again, if an earlier
/// connection did not acknowledge it), then [`Delivery::Empty`], then new messages as they
/// arrive (each catch-up ends with `Empty` again). Ends with [`Delivery::Superseded`] when
/// the member opens a newer inbox, and stops when the receiver is dropped.
pub fn deliveries(mailbox: Arc<Mailbox>, member: NodeId) -> mpsc::Receiver<Delivery> {
    let (tx, rx) = mpsc::channel(READ_AHEAD * 2);
    let mut inbox = mailbox.open_inbox(member);
    tokio::spawn(async move {
        let mut after = None;
        let mut caught_up = false;
        loop {
            if inbox.superseded() {
                let _ = tx.send(Delivery::Superseded).await;
                return;
            }
            let batch = mailbox.next_for(&mut inbox, after, BATCH);
            if batch.is_empty() {
                if !caught_up {
                    if tx.send(Delivery::Empty).await.is_err() {
                        return;
                    }
                    caught_up = true;
                }
                tokio::select! {
                    () = inbox.changed() => continue,
                    () = tx.closed() => return,
                }
            }
            let reads = futures::stream::iter(batch).map(|(seq, id)| {
                let mailbox = mailbox.clone();
                async move { (seq, id, mailbox.payload(seq, id).await) }
            });
            let mut reads = reads.buffered(READ_AHEAD);
            while let Some((seq, id, read)) = reads.next().await {
                match read {
                    Ok(payload) => {
                        if tx.send(Delivery::Message { id, payload }).await.is_err() {
                            return;
                        }
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
                after = Some(seq);
            }
        }
    });
    rx
}
