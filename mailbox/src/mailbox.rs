//! The mailbox's state: which messages wait for whom, kept durable in the relay's store and
//! indexed in memory.
//!
//! The store is the truth: on open, the index is rebuilt from the keys and metadata in the
//! mailbox bucket (see [`crate::keys`]), so a restart or a `kill -9` loses nothing that was
//! acknowledged to a sender. A post is answered `Stored` only once its payload is durable; an
//! acknowledgement from a recipient is recorded before the message is forgotten for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backends::{ListQuery, ObjectAttrs, PutOptions, Store, StoreError, Unavailable};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

use crate::frame::{MessageId, NodeId, Post, PostStatus};
use crate::janitor::Janitor;
use crate::keys::{self, BUCKET, Header};
use crate::limits::{Limits, RateLimiter};
use crate::receipts::{self, Receipt, ReceiptLog};
use backends::clock::{Clock, Day};

/// One message waiting for at least one recipient.
#[derive(Debug)]
struct Waiting {
    /// Names the payload's key (`p/<seq>-<id>`): taken when the post is accepted.
    seq: u64,
    /// Place in the recipients' queues: taken when the payload is durable, so that a queue
    /// only ever grows at its end and a delivery cursor never skips a slow write.
    position: u64,
    expiry: Day,
    size: u64,
    /// Recipients that have not acknowledged it yet.
    unacked: BTreeSet<NodeId>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Position → message, in the order the messages became durable.
    order: BTreeMap<u64, MessageId>,
    /// Bytes queued, including posts being stored.
    bytes: u64,
    /// Posts being stored for this recipient (counted against its limits already).
    reserved: usize,
}

#[derive(Default)]
struct State {
    waiting: HashMap<MessageId, Waiting>,
    queues: HashMap<NodeId, Queue>,
    /// Fully acknowledged messages, until their expiry day: a repeat post is a duplicate.
    delivered: HashMap<MessageId, Day>,
    /// Ids being stored right now.
    storing: HashSet<MessageId>,
    /// Bytes held for everyone, including posts being stored.
    total_bytes: u64,
    next_seq: u64,
    next_position: u64,
    /// One channel per member with an inbox open: (generation, changes).
    inboxes: HashMap<NodeId, watch::Sender<(u64, u64)>>,
}

/// A message waiting in a member's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// Its place in the queue (for the delivery cursor).
    pub position: u64,
    pub seq: u64,
    pub id: MessageId,
    /// The payload's size in bytes.
    pub size: u64,
}

/// What the mailbox holds, for `doctor` and metrics. Counts only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStats {
    pub messages: usize,
    pub bytes: u64,
    pub recipients_waiting: usize,
}

pub struct Mailbox {
    store: Arc<dyn Store>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    rate: Mutex<RateLimiter>,
    recent: Mutex<Recent>,
    /// Posts each member has in flight (being received or stored).
    posting: Arc<Mutex<HashMap<NodeId, usize>>>,
    receipts: ReceiptLog,
    janitor: Janitor,
}

/// Posts one member may have in flight at once: each holds up to a message in memory.
const POSTS_IN_FLIGHT: usize = 16;

/// A member's place among its posts in flight; released when dropped.
pub struct PostPermit {
    posting: Arc<Mutex<HashMap<NodeId, usize>>>,
    member: NodeId,
}

impl Drop for PostPermit {
    fn drop(&mut self) {
        let mut posting = self.posting.lock().expect("posting lock");
        if let Some(n) = posting.get_mut(&self.member) {
            *n -= 1;
            if *n == 0 {
                posting.remove(&self.member);
            }
        }
    }
}

/// Why a post could not be reserved.
enum Refusal {
    Status(PostStatus),
    /// The same id is being stored right now: its outcome decides this post's.
    SameIdInFlight,
}

/// The payloads of the most recent messages, up to a byte budget: a member who was away for
/// a while (the common case) is handed its queue from memory, without a store read per
/// message. The store stays the truth; after a restart everything is read from it.
#[derive(Default)]
struct Recent {
    payloads: HashMap<MessageId, Bytes>,
    /// Insertion order, for eviction; may name payloads already removed.
    order: std::collections::VecDeque<MessageId>,
    bytes: u64,
}

impl Recent {
    fn insert(&mut self, id: MessageId, payload: Bytes, budget: u64) {
        if payload.len() as u64 > budget / 8 {
            return;
        }
        self.bytes += payload.len() as u64;
        self.payloads.insert(id, payload);
        self.order.push_back(id);
        while self.bytes > budget {
            let Some(old) = self.order.pop_front() else { break };
            self.remove(&old);
        }
    }

    fn remove(&mut self, id: &MessageId) {
        if let Some(p) = self.payloads.remove(id) {
            self.bytes -= p.len() as u64;
        }
        if self.order.len() > 2 * self.payloads.len() + 1024 {
            let payloads = &self.payloads;
            self.order.retain(|id| payloads.contains_key(id));
        }
    }
}

/// A member's open inbox. A newer one for the same member supersedes it.
#[derive(Clone)]
pub struct Inbox {
    pub member: NodeId,
    generation: u64,
    changes: watch::Receiver<(u64, u64)>,
}

impl Inbox {
    /// Whether a newer connection of the same member has taken over.
    pub fn superseded(&self) -> bool {
        self.changes.borrow().0 != self.generation
    }

    /// Waits until a message arrives for this member or the inbox is superseded.
    pub async fn changed(&mut self) {
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Returns once a newer inbox of the same member has been opened.
    pub async fn until_superseded(&mut self) {
        while !self.superseded() {
            self.changed().await;
        }
    }

    fn mark_seen(&mut self) {
        self.changes.borrow_and_update();
    }
}

impl Mailbox {
    /// Opens the mailbox in `store`, rebuilding its index from what is stored.
    pub async fn open(store: Arc<dyn Store>, limits: Limits, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StoreError> {
        match store.create_bucket(BUCKET).await {
            Ok(()) | Err(StoreError::BucketAlreadyExists) => {}
            Err(e) => return Err(e),
        }
        let mailbox = Arc::new(Self {
            store: store.clone(),
            limits,
            clock,
            state: Mutex::new(State::default()),
            rate: Mutex::new(RateLimiter::default()),
            recent: Mutex::new(Recent::default()),
            posting: Arc::default(),
            receipts: ReceiptLog::default(),
            janitor: Janitor::start(store.clone()),
        });
        mailbox.rebuild().await?;
        Ok(mailbox)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> MailboxStats {
        let state = self.state.lock().expect("mailbox lock");
        MailboxStats {
            messages: state.waiting.len(),
            bytes: state.total_bytes,
            recipients_waiting: state.queues.values().filter(|q| !q.order.is_empty()).count(),
        }
    }

    /// Stores `post` from `sender` for its recipients, once; answers only when the outcome is
    /// final. `is_member` says who may receive messages here.
    pub async fn post(&self, sender: &NodeId, post: Post, is_member: impl Fn(&NodeId) -> bool) -> PostStatus {
        if !self
            .rate
            .lock()
            .expect("rate lock")
            .allow(sender, self.limits.posts_per_minute)
        {
            return PostStatus::RateLimited;
        }
        if post.hops > self.limits.max_hops {
            return PostStatus::HopLimit;
        }
        let size = post.payload.len() as u64;
        if size > self.limits.max_message_bytes {
            return PostStatus::TooLarge;
        }
        let mut recipients = post.recipients.clone();
        recipients.sort_unstable();
        recipients.dedup();
        if recipients.is_empty() {
            return PostStatus::Malformed;
        }
        if !recipients.iter().all(&is_member) {
            return PostStatus::NotAMember;
        }
        // A retry that races its own first attempt waits for that attempt's outcome: a
        // `duplicate` answer must mean the message is stored.
        let mut waited = std::time::Duration::ZERO;
        let seq = loop {
            match self.reserve(post.id, &recipients, size) {
                Ok(seq) => break seq,
                Err(Refusal::Status(status)) => return status,
                Err(Refusal::SameIdInFlight) if waited < std::time::Duration::from_secs(30) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    waited += std::time::Duration::from_millis(20);
                }
                Err(Refusal::SameIdInFlight) => return PostStatus::Unavailable,
            }
        };
        let lifetime = match post.lifetime_days {
            0 => self.limits.default_lifetime_days,
            days => days.min(self.limits.max_lifetime_days),
        };
        let expiry = self.clock.today().plus(lifetime as u32);
        let header = Header {
            expiry,
            hops: post.hops,
            recipients: recipients.clone(),
        };
        let mut attrs = ObjectAttrs::default();
        attrs.user_metadata.insert(keys::META.into(), header.encode());
        let payload = post.payload.clone();
        let body = Box::pin(futures::stream::once(async move { Ok(payload) }));
        let opts = PutOptions {
            // The time of arrival is not the relay's to keep.
            recorded_time_ms: Some(0),
            ..PutOptions::default()
        };
        let stored = self
            .store
            .put_object(BUCKET, &keys::message(seq, post.id), attrs, body, opts)
            .await;
        let mut state = self.state.lock().expect("mailbox lock");
        state.storing.remove(&post.id);
        for r in &recipients {
            let queue = state.queues.entry(*r).or_default();
            queue.reserved -= 1;
            if stored.is_err() {
                queue.bytes -= size;
            }
        }
        if let Err(e) = stored {
            state.total_bytes -= size;
            tracing::warn!(error = %e, "storing a message failed");
            return PostStatus::Unavailable;
        }
        self.recent
            .lock()
            .expect("recent lock")
            .insert(post.id, post.payload, self.limits.memory_cache_bytes);
        let position = state.next_position;
        state.next_position += 1;
        for r in &recipients {
            state.queues.entry(*r).or_default().order.insert(position, post.id);
            if let Some(inbox) = state.inboxes.get(r) {
                inbox.send_modify(|(_, changes)| *changes += 1);
            }
        }
        state.waiting.insert(
            post.id,
            Waiting {
                seq,
                position,
                expiry,
                size,
                unacked: recipients.into_iter().collect(),
            },
        );
        PostStatus::Stored
    }

    /// Checks the id and every limit and reserves room, all under one lock, so that two posts
    /// at once cannot both take the last place.
    fn reserve(&self, id: MessageId, recipients: &[NodeId], size: u64) -> Result<u64, Refusal> {
        let mut state = self.state.lock().expect("mailbox lock");
        if state.storing.contains(&id) {
            return Err(Refusal::SameIdInFlight);
        }
        if state.waiting.contains_key(&id) || state.delivered.contains_key(&id) {
            return Err(Refusal::Status(PostStatus::Duplicate));
        }
        for r in recipients {
            if let Some(q) = state.queues.get(r)
                && (q.order.len() + q.reserved >= self.limits.max_queued_messages
                    || q.bytes + size > self.limits.max_queued_bytes)
            {
                return Err(Refusal::Status(PostStatus::QueueFull));
            }
        }
        if size > self.limits.max_queued_bytes {
            return Err(Refusal::Status(PostStatus::QueueFull));
        }
        if state.total_bytes + size > self.limits.max_total_bytes {
            return Err(Refusal::Status(PostStatus::MailboxFull));
        }
        state.storing.insert(id);
        state.total_bytes += size;
        for r in recipients {
            let q = state.queues.entry(*r).or_default();
            q.reserved += 1;
            q.bytes += size;
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        Ok(seq)
    }

    /// A place for one more post from `member`, or `None` if it has too many in flight.
    pub fn begin_post(&self, member: &NodeId) -> Option<PostPermit> {
        let mut posting = self.posting.lock().expect("posting lock");
        let n = posting.entry(*member).or_default();
        if *n >= POSTS_IN_FLIGHT {
            return None;
        }
        *n += 1;
        Some(PostPermit {
            posting: self.posting.clone(),
            member: *member,
        })
    }

    /// Opens `member`'s inbox; an inbox it had open before is superseded.
    pub fn open_inbox(&self, member: NodeId) -> Inbox {
        let mut state = self.state.lock().expect("mailbox lock");
        let sender = state.inboxes.entry(member).or_insert_with(|| watch::channel((0, 0)).0);
        sender.send_modify(|(generation, _)| *generation += 1);
        let generation = sender.borrow().0;
        let mut changes = sender.subscribe();
        changes.mark_unchanged();
        Inbox {
            member,
            generation,
            changes,
        }
    }

    /// Up to `limit` unexpired messages for `inbox`'s member that arrived after `after`, in
    /// arrival order. Marks the inbox's changes as seen first, so a message posted while this
    /// runs wakes the next [`Inbox::changed`].
    pub fn next_for(&self, inbox: &mut Inbox, after: Option<u64>, limit: usize) -> Vec<Queued> {
        inbox.mark_seen();
        let today = self.clock.today();
        let state = self.state.lock().expect("mailbox lock");
        let Some(queue) = state.queues.get(&inbox.member) else {
            return Vec::new();
        };
        let from = after.map_or(0, |position| position + 1);
        queue
            .order
            .range(from..)
            .filter_map(|(position, id)| {
                let w = state.waiting.get(id).filter(|w| w.expiry >= today)?;
                Some(Queued {
                    position: *position,
                    seq: w.seq,
                    id: *id,
                    size: w.size,
                })
            })
            .take(limit)
            .collect()
    }

    /// A message's payload. `NoSuchKey`: it is gone (acknowledged or expired meanwhile).
    pub async fn payload(&self, seq: u64, id: MessageId) -> Result<Bytes, StoreError> {
        if let Some(payload) = self.recent.lock().expect("recent lock").payloads.get(&id) {
            return Ok(payload.clone());
        }
        let got = self.store.get_object(BUCKET, &keys::message(seq, id), None).await?;
        let mut body = got.body;
        let mut out = bytes::BytesMut::with_capacity(got.meta.size as usize);
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.map_err(Unavailable::Read)?);
        }
        Ok(out.freeze())
    }

    /// `member` has the message: it is never delivered to it again. Once every recipient has
    /// it, its payload is deleted and only its id is kept (in the receipts), until it expires.
    /// Returns once the acknowledgement is durable, in a batch with any others that arrived
    /// meanwhile ([`crate::receipts`]).
    pub async fn ack(&self, member: &NodeId, id: MessageId) -> Result<(), StoreError> {
        let (receipt, done) = {
            let mut state = self.state.lock().expect("mailbox lock");
            let Some(w) = state.waiting.get_mut(&id) else {
                return Ok(());
            };
            if !w.unacked.remove(member) {
                return Ok(());
            }
            let (seq, position, size, expiry) = (w.seq, w.position, w.size, w.expiry);
            let done = w.unacked.is_empty();
            if let Some(queue) = state.queues.get_mut(member) {
                queue.order.remove(&position);
                queue.bytes -= size;
            }
            if done {
                self.recent.lock().expect("recent lock").remove(&id);
                state.waiting.remove(&id);
                state.total_bytes -= size;
                state.delivered.insert(id, expiry);
            }
            let receipt = Receipt {
                id,
                node: *member,
                day: expiry,
            };
            (receipt, done.then_some(seq))
        };
        // The receipt is written before the payload goes, which the janitor then does in the
        // background: a crash in between leaves a payload that the next start recognizes as
        // delivered and deletes. On a full disk the receipt cannot be written: the payload
        // goes at once, to free the space, and the id is remembered in memory only.
        let recorded = self.receipts.record(&self.store, receipt).await;
        match (done, &recorded) {
            (Some(seq), Ok(())) => self.janitor.delete(keys::message(seq, id)),
            (Some(seq), Err(_)) => self.store.delete_object(BUCKET, &keys::message(seq, id)).await?,
            (None, _) => {}
        }
        recorded
    }

    /// Returns once the payloads of every message acknowledged so far are deleted (they go
    /// in the background): for a clean shutdown, and for tests that look at the store.
    pub async fn settled(&self) {
        self.janitor.idle().await;
    }

    /// When a message expiring on `expiry` is deleted: at a moment in the 24 hours after that
    /// day ends, fixed by its (random) id, so that deletion times say no more than the day.
    fn deletion_secs(id: MessageId, expiry: Day) -> i64 {
        expiry.expiry_moment_secs(u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes")))
    }

    /// Deletes every message and delivered id whose deletion moment has passed. Returns how
    /// many messages went undelivered to someone.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_secs();
        let messages = {
            let mut state = self.state.lock().expect("mailbox lock");
            let due: Vec<MessageId> = state
                .waiting
                .iter()
                .filter(|(id, w)| Self::deletion_secs(**id, w.expiry) <= now)
                .map(|(id, _)| *id)
                .collect();
            let mut messages = Vec::new();
            for id in due {
                self.recent.lock().expect("recent lock").remove(&id);
                let w = state.waiting.remove(&id).expect("listed above");
                state.total_bytes -= w.size;
                for r in &w.unacked {
                    if let Some(q) = state.queues.get_mut(r) {
                        q.order.remove(&w.position);
                        q.bytes -= w.size;
                    }
                }
                messages.push((id, w));
            }
            state.delivered.retain(|id, day| Self::deletion_secs(*id, *day) > now);
            state.queues.retain(|_, q| !q.order.is_empty() || q.reserved > 0);
            messages
        };
        let batches = self.receipts.take_due(|key, day| {
            receipts::parse_batch_key(key).is_some_and(|(_, batch)| Self::deletion_secs(batch, day) <= now)
        });
        let expired = messages.len();
        for (id, w) in messages {
            self.store.delete_object(BUCKET, &keys::message(w.seq, id)).await?;
        }
        for key in batches {
            self.store.delete_object(BUCKET, &key).await?;
        }
        self.rate.lock().expect("rate lock").forget_idle();
        Ok(expired)
    }

    /// Sweeps every `every` (with some jitter) for as long as the mailbox lives.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let jitter = Duration::from_secs(u64::from(MessageId::random().0[0]) % 60);
                tokio::time::sleep(every + jitter).await;
                let Some(mailbox) = weak.upgrade() else { return };
                match mailbox.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(messages = n, "expired messages deleted undelivered"),
                    Err(e) => tracing::warn!(error = %e, "the mailbox sweep failed; retrying later"),
                }
            }
        })
    }

    /// Rebuilds the index from the bucket, and finishes what a crash interrupted.
    async fn rebuild(&self) -> Result<(), StoreError> {
        let keys = self.all_keys().await?;
        let mut acks: HashMap<MessageId, Vec<NodeId>> = HashMap::new();
        let mut delivered = HashMap::new();
        let mut messages = Vec::new();
        for key in &keys {
            if let Some((seq, id)) = keys::parse_message(key) {
                messages.push((seq, id, key));
            } else if let Some((day, _)) = receipts::parse_batch_key(key) {
                let Some(entries) = self.read_batch(key).await? else {
                    tracing::warn!("a receipt batch is unreadable; its messages may come again");
                    continue;
                };
                for (id, node) in entries {
                    acks.entry(id).or_default().push(node);
                    delivered.insert(id, day);
                }
                self.receipts.found(key.clone(), day);
            }
        }
        let mut state = State {
            delivered,
            ..State::default()
        };
        let mut leftovers: Vec<String> = Vec::new();
        for (seq, id, key) in messages {
            state.next_seq = state.next_seq.max(seq + 1);
            state.next_position = state.next_seq;
            let meta = self.store.head_object(BUCKET, key).await?;
            let header = meta.attrs.user_metadata.get(keys::META).and_then(|h| Header::parse(h));
            let Some(header) = header else {
                tracing::warn!("a stored message has no readable header; removing it");
                leftovers.push(key.clone());
                continue;
            };
            let acked = acks.remove(&id).unwrap_or_default();
            let unacked: BTreeSet<NodeId> = header
                .recipients
                .iter()
                .filter(|r| !acked.contains(r))
                .copied()
                .collect();
            if unacked.is_empty() {
                // Delivered to everyone; the crash came before the payload was deleted.
                leftovers.push(key.clone());
                continue;
            }
            // Receipts of some recipients only: not delivered yet, so not a duplicate either.
            state.delivered.remove(&id);
            for r in &unacked {
                let q = state.queues.entry(*r).or_default();
                q.order.insert(seq, id);
                q.bytes += meta.size;
            }
            state.total_bytes += meta.size;
            state.waiting.insert(
                id,
                Waiting {
                    seq,
                    position: seq,
                    expiry: header.expiry,
                    size: meta.size,
                    unacked,
                },
            );
        }
        for key in leftovers {
            self.store.delete_object(BUCKET, &key).await?;
        }
        *self.state.lock().expect("mailbox lock") = state;
        Ok(())
    }

    /// A receipt batch's entries; `None` if it cannot be read as one.
    async fn read_batch(&self, key: &str) -> Result<Option<Vec<(MessageId, NodeId)>>, StoreError> {
        let got = self.store.get_object(BUCKET, key, None).await?;
        let mut body = got.body;
        let mut bytes = Vec::with_capacity(got.meta.size as usize);
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.map_err(Unavailable::Read)?);
        }
        Ok(receipts::decode(&bytes))
    }

    async fn all_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut start_after = None;
        loop {
            let query = ListQuery {
                prefix: String::new(),
                delimiter: None,
                start_after: start_after.clone(),
                max_keys: 1000,
            };
            let page = self.store.list_objects(BUCKET, &query).await?;
            keys.extend(page.objects.into_iter().map(|o| o.key));
            if !page.truncated || page.last.is_none() {
                return Ok(keys);
            }
            start_after = page.last;
        }
    }
}
