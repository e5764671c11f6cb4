//! The write path: every object streams to all target mirrors at once (see [`Fanout`]),
//! its blob ends with a metadata trailer, and it becomes visible only when the catalog
//! commits it, after the acknowledgement policy and the write conditions allow it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::Inner;
use super::catalog::{Record, State};
use super::fanout::Fanout;
use super::verify::EtagCheck;
use crate::blobs::blob_path;
use crate::chunks::ChunkSummer;
use crate::conditions::check_write_conditions;
use crate::digest::Digester;
use crate::error::{Result, StoreError, Unavailable};
use crate::model::*;
use crate::store::ByteStream;

/// What a mirror's blob trailer holds: enough to rebuild the catalog entry.
#[derive(Serialize)]
struct BlobTrailer<'a> {
    v: u32,
    bucket: &'a str,
    #[serde(flatten)]
    meta: &'a ObjectMeta,
}

pub(super) fn blob_trailer(bucket: &str, meta: &ObjectMeta) -> Bytes {
    let json = serde_json::to_vec(&BlobTrailer { v: 1, bucket, meta }).expect("metadata serializes");
    crate::fs::blob::encode_trailer(&json).into()
}

impl Inner {
    /// Mirrors to write to: the ones up, or all of them if none is (they may be back).
    pub(super) fn write_targets(&self) -> Vec<usize> {
        let up: Vec<_> = (0..self.mirrors.len())
            .filter(|&i| self.mirrors[i].health.is_up())
            .collect();
        if up.is_empty() {
            (0..self.mirrors.len()).collect()
        } else {
            up
        }
    }

    /// Opens a blob sink on every target mirror in parallel; failures mark mirrors down.
    pub(super) async fn open_fanout(&self, targets: &[usize], path: &str) -> Fanout {
        let opened = futures::future::join_all(
            targets
                .iter()
                .map(|&i| async move { (i, self.mirrors[i].blobs.create(path).await) }),
        )
        .await;
        let mut sinks = Vec::new();
        for (i, sink) in opened {
            match sink {
                Ok(sink) => sinks.push((i, sink)),
                Err(e) => self.mark_down(i, &e),
            }
        }
        Fanout::new(sinks)
    }

    /// Which mirrors committed; marks the failed ones down.
    pub(super) fn committed(&self, outcomes: Vec<(usize, Result<()>)>) -> Vec<usize> {
        outcomes
            .into_iter()
            .filter_map(|(i, outcome)| match outcome {
                Ok(()) => Some(i),
                Err(e) => {
                    self.mark_down(i, &e);
                    None
                }
            })
            .collect()
    }

    pub(super) fn enough_copies(&self, stored: &[usize]) -> Result<()> {
        let need = self.options.ack.min_copies();
        if stored.len() < need {
            return Err(Unavailable::TooFewCopies {
                stored: stored.len(),
                mirrors: self.mirrors.len(),
                needed: need,
            }
            .into());
        }
        Ok(())
    }

    /// Streams `body` to every target mirror as blob `blob`, then commits the object to the
    /// catalog if `finish_meta` (which checks the digests and returns the metadata), the ack
    /// policy and the write conditions all allow it. Until then nothing is visible anywhere.
    pub(super) async fn write_object(
        self: &Arc<Self>,
        bucket: &str,
        blob: &str,
        mut body: ByteStream,
        mut digester: Digester,
        finish_meta: impl FnOnce(Digester) -> Result<ObjectMeta>,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let path = blob_path(blob);
        let mut fanout = self.open_fanout(&self.write_targets(), &path).await;
        let mut sums = ChunkSummer::default();
        if fanout.live() == 0 {
            return Err(Unavailable::NoMirrorAccepted.into());
        }
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    fanout.finish(false, None).await;
                    return Err(StoreError::Body(e));
                }
            };
            digester.update(&chunk);
            sums.update(&chunk);
            fanout.send(chunk).await;
        }
        let meta = match finish_meta(digester) {
            Ok(meta) => ObjectMeta {
                chunks: Some(sums.finish()),
                ..meta
            },
            Err(e) => {
                fanout.finish(false, None).await;
                return Err(e);
            }
        };
        let outcomes = fanout.finish(true, Some(blob_trailer(bucket, &meta))).await;
        let stored = self.committed(outcomes);
        if let Err(e) = self.enough_copies(&stored) {
            self.forget_blob(blob.to_owned(), stored);
            return Err(e);
        }
        self.commit_object(bucket, blob, meta, stored, opts).await
    }

    /// Makes a blob already on the mirrors the object at its key, checking the write
    /// conditions against the catalog at that moment.
    pub(super) async fn commit_object(
        self: &Arc<Self>,
        bucket: &str,
        blob: &str,
        meta: ObjectMeta,
        stored: Vec<usize>,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let holders: Vec<String> = stored.iter().map(|&i| self.mirrors[i].label.clone()).collect();
        let record = Record::Object {
            bucket: bucket.to_owned(),
            blob: blob.to_owned(),
            holders,
            meta: Box::new(meta.clone()),
        };
        let (b, key) = (bucket.to_owned(), meta.key.clone());
        let committed = self
            .catalog
            .change(move |state: &State| {
                let current = state.bucket(&b)?.objects.get(&key);
                check_write_conditions(current.map(|o| o.meta.etag.as_str()), &opts)?;
                let replaced = current.map(|o| (o.blob.clone(), o.holders.clone()));
                Ok((vec![record], replaced))
            })
            .await;
        match committed {
            Ok(replaced) => {
                if let Some((old, holders)) = replaced {
                    self.forget_blob(old, self.holders_of(&holders));
                }
                Ok(meta)
            }
            Err(e) => {
                self.forget_blob(blob.to_owned(), stored);
                Err(e)
            }
        }
    }

    /// Writes an object whose metadata is already known (a completed upload, an import),
    /// checking the bytes against its ETag on the way: a source that returns something
    /// else fails the write instead of spreading it to every mirror.
    pub(super) async fn write_known(
        self: &Arc<Self>,
        bucket: &str,
        meta: ObjectMeta,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let blob = uuid::Uuid::new_v4().simple().to_string();
        let _in_flight = InFlight::new(self, &blob);
        let check = Arc::new(Mutex::new(Some(EtagCheck::new(&meta))));
        let counted = {
            let check = check.clone();
            Box::pin(body.map(move |chunk| {
                if let (Ok(c), Some(check)) = (&chunk, check.lock().expect("check lock").as_mut()) {
                    check.update(c);
                }
                chunk
            })) as ByteStream
        };
        let finish = move |_| {
            let check = check.lock().expect("check lock").take().expect("checked once");
            if check.matches() {
                Ok(meta)
            } else {
                Err(StoreError::Corrupt("the bytes do not match the object's ETag".into()))
            }
        };
        self.write_object(bucket, &blob, counted, Digester::new(&[]), finish, opts)
            .await
    }
}

/// Marks a blob id as being written for as long as it lives, so the stray sweep leaves it
/// alone until the catalog knows it (or the write is given up).
pub(super) struct InFlight {
    inner: Arc<Inner>,
    blob: String,
}

impl InFlight {
    pub(super) fn new(inner: &Arc<Inner>, blob: &str) -> Self {
        inner.in_flight.lock().expect("in-flight lock").insert(blob.to_owned());
        Self {
            inner: inner.clone(),
            blob: blob.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner.in_flight.lock().expect("in-flight lock").remove(&self.blob);
    }
}
