//! Acknowledgements, made durable in batches: every acknowledgement that arrives while one
//! batch is being written goes into the next, so a member draining its queue costs one store
//! write per batch instead of one per message (group commit).
//!
//! A batch is one object `r/<expiry day>/<random batch id>` holding, after a version byte,
//! entries of `message id [16] | recipient node id [32]`: "this recipient has this message".
//! Entries are grouped by their message's expiry day, so a batch can be deleted as a whole
//! once that day is over, like the messages it speaks of.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use backends::{ObjectAttrs, PutOptions, Store, StoreError, Unavailable};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::frame::{MessageId, NodeId};
use crate::keys::BUCKET;
use backends::clock::Day;

const VERSION: u8 = 1;
const ENTRY: usize = 16 + 32;

/// One recipient's acknowledgement of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub id: MessageId,
    pub node: NodeId,
    /// The message's expiry day: the receipt is kept as long as the message could be.
    pub day: Day,
}

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Default)]
pub(crate) struct ReceiptLog {
    pending: Mutex<Vec<(Receipt, Waiter)>>,
    /// Held by whoever is writing a batch; the others' receipts wait for the next one.
    writing: tokio::sync::Mutex<()>,
    /// Every batch in the store, and its day.
    batches: Mutex<HashMap<String, Day>>,
}

impl ReceiptLog {
    /// Returns once `receipt` is durable (in a batch with whatever else arrived meanwhile).
    pub async fn record(&self, store: &Arc<dyn Store>, receipt: Receipt) -> Result<(), StoreError> {
        let (tx, mut rx) = oneshot::channel();
        self.pending.lock().expect("receipts lock").push((receipt, tx));
        let _writer = self.writing.lock().await;
        // A batch written while this one waited may have taken ours already: then the next
        // batch is left to someone whose receipt is in it, so it takes all that piled up.
        let written = match rx.try_recv() {
            Ok(written) => written,
            Err(oneshot::error::TryRecvError::Closed) => Err("the receipt was dropped".into()),
            Err(oneshot::error::TryRecvError::Empty) => {
                let batch = std::mem::take(&mut *self.pending.lock().expect("receipts lock"));
                let receipts: Vec<Receipt> = batch.iter().map(|(r, _)| *r).collect();
                let written = self.write(store, &receipts).await.map_err(|e| e.to_string());
                for (_, waiter) in batch {
                    let _ = waiter.send(written.clone());
                }
                written
            }
        };
        written.map_err(|e| Unavailable::Receipts(e).into())
    }

    /// One object per expiry day among `receipts`.
    async fn write(&self, store: &Arc<dyn Store>, receipts: &[Receipt]) -> Result<(), StoreError> {
        let mut by_day: BTreeMap<Day, Vec<&Receipt>> = BTreeMap::new();
        for r in receipts {
            by_day.entry(r.day).or_default().push(r);
        }
        for (day, entries) in by_day {
            let key = batch_key(day, MessageId::random());
            let body = encode(entries.iter().map(|r| (r.id, r.node)));
            let opts = PutOptions {
                // When members read their mail is not the relay's to keep.
                recorded_time_ms: Some(0),
                ..PutOptions::default()
            };
            let stream = Box::pin(futures::stream::once(async move { Ok(body) }));
            store
                .put_object(BUCKET, &key, ObjectAttrs::default(), stream, opts)
                .await?;
            self.batches.lock().expect("receipts lock").insert(key, day);
        }
        Ok(())
    }

    /// A batch found in the store when the mailbox opens.
    pub fn found(&self, key: String, day: Day) {
        self.batches.lock().expect("receipts lock").insert(key, day);
    }

    /// Forgets and returns the batches `due` says are over.
    pub fn take_due(&self, due: impl Fn(&str, Day) -> bool) -> Vec<String> {
        let mut batches = self.batches.lock().expect("receipts lock");
        let keys: Vec<String> = batches
            .iter()
            .filter(|(key, day)| due(key, **day))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            batches.remove(key);
        }
        keys
    }
}

pub(crate) fn batch_key(day: Day, batch: MessageId) -> String {
    format!("r/{:08x}/{}", day.0, batch.to_hex())
}

/// The day and batch id of a batch's key.
pub(crate) fn parse_batch_key(key: &str) -> Option<(Day, MessageId)> {
    let (day, batch) = key.strip_prefix("r/")?.split_once('/')?;
    Some((Day(u32::from_str_radix(day, 16).ok()?), MessageId::from_hex(batch)?))
}

pub(crate) fn encode(entries: impl Iterator<Item = (MessageId, NodeId)>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(VERSION);
    for (id, node) in entries {
        out.put_slice(&id.0);
        out.put_slice(&node);
    }
    out.freeze()
}

pub(crate) fn decode(body: &[u8]) -> Option<Vec<(MessageId, NodeId)>> {
    let (&version, entries) = body.split_first()?;
    if version != VERSION || !entries.len().is_multiple_of(ENTRY) {
        return None;
    }
    Some(
        entries
            .chunks_exact(ENTRY)
            .map(|e| {
                let id = MessageId(e[..16].try_into().expect("16 bytes"));
                let node: NodeId = e[16..].try_into().expect("32 bytes");
                (id, node)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_refuse_strangers() {
        let entries = vec![(MessageId([1; 16]), [2u8; 32]), (MessageId([3; 16]), [4u8; 32])];
        assert_eq!(decode(&encode(entries.clone().into_iter())), Some(entries));
        assert_eq!(decode(&encode(std::iter::empty())), Some(Vec::new()));
        for bad in [&b""[..], &[2u8][..], &[1u8, 0][..]] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        let key = batch_key(Day(20_500), MessageId([9; 16]));
        assert_eq!(parse_batch_key(&key), Some((Day(20_500), MessageId([9; 16]))));
        for bad in ["r/zz/00", "r/1", "p/1-2", "r/00000001/xyz"] {
            assert_eq!(parse_batch_key(bad), None, "{bad}");
        }
    }
}
