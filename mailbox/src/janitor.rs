//! Payloads of delivered messages, deleted in the background: once a message's receipts are
//! durable nothing can deliver it again, so its payload's deletion need not hold up the
//! acknowledgement, nor compete with the reads of a member draining its queue. A crash before
//! a deletion is finished is repaired when the mailbox next opens (the receipts say the
//! message was delivered).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use backends::Store;
use futures::StreamExt;
use tokio::sync::{Notify, mpsc};

use crate::keys::BUCKET;

/// Deletions running at once. One: deleting is never urgent, each deletion syncs a directory,
/// and with more the reads of a member draining its queue slowed down (measured, see
/// docs/PERFORMANCE.md).
const AT_ONCE: usize = 1;

pub(crate) struct Janitor {
    queue: mpsc::UnboundedSender<String>,
    pending: Arc<Pending>,
}

#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    done: Notify,
}

impl Janitor {
    /// Starts deleting what is handed over; stops when the janitor is dropped and the queue
    /// is empty.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, mut keys) = mpsc::unbounded_channel::<String>();
        let pending = Arc::new(Pending::default());
        let counter = pending.clone();
        tokio::spawn(async move {
            let keys = futures::stream::poll_fn(move |cx| keys.poll_recv(cx));
            let mut deletions = keys
                .map(|key| {
                    let store = store.clone();
                    async move {
                        if let Err(e) = store.delete_object(BUCKET, &key).await {
                            tracing::warn!(error = %e, "deleting a delivered message failed; retried at the next start");
                        }
                    }
                })
                .buffer_unordered(AT_ONCE);
            while deletions.next().await.is_some() {
                counter.count.fetch_sub(1, Ordering::AcqRel);
                counter.done.notify_waiters();
            }
        });
        Self { queue, pending }
    }

    pub fn delete(&self, key: String) {
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(key).is_err() {
            self.pending.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Returns once everything handed over so far is deleted (or failed to be).
    pub async fn idle(&self) {
        loop {
            let done = self.pending.done.notified();
            if self.pending.count.load(Ordering::Acquire) == 0 {
                return;
            }
            done.await;
        }
    }
}
