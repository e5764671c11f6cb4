//! The background repair loop: brings every mirror back to the catalog's set of objects.
//!
//! Passes come every repair interval, and sooner while a mirror is down (to notice its
//! return) or right after repairs. Each pass, per mirror: a mirror marked down is probed
//! and, once it answers, marked up;
//! every object it lacks (it was down for the write, is new to the set, or lost or corrupted
//! its copy) is copied from a holder, checked against the ETag on the way; and now and then
//! (at start, whenever it comes back, and every sweep interval) it takes an [`inventory`]: copies
//! the catalog expects but the mirror no longer lists are recorded as lost (and so repaired),
//! and blobs that nothing refers to are deleted, so it ends with exactly the catalog's blobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::catalog::{ObjectRecord, Record};
use super::verify::{EtagCheck, learned_chunks, verify_copy};
use super::write::blob_trailer;
use super::{Inner, inventory};
use crate::blobs::blob_path;
use crate::chunks::{ChunkSummer, ChunkSums};
use crate::error::{Result, StoreError, Unavailable};
use crate::model::ObjectMeta;

/// While a mirror is down the pass comes this soon, then twice as late each time up to
/// [`PROBE_AT_MOST`]: the end of an outage is noticed within seconds, and a long one costs
/// one small request every few seconds (remote LISTs are billed on R2 and B2).
const PROBE_FIRST: Duration = Duration::from_secs(1);
const PROBE_AT_MOST: Duration = Duration::from_secs(8);
/// After a pass that copied something, the next comes this soon: it picks up what writes
/// that chose their mirrors before one came back left behind.
const AFTER_REPAIRS: Duration = Duration::from_secs(1);

pub(super) async fn run(inner: Arc<Inner>) {
    let mut swept: Vec<Option<Instant>> = vec![None; inner.mirrors.len()];
    let mut probe = PROBE_FIRST;
    loop {
        let nudged = inner.nudge.notified();
        let done = pass(&inner, &mut swept).await;
        let wait = if done.any_down {
            let wait = probe;
            probe = (probe * 2).min(PROBE_AT_MOST);
            wait
        } else {
            probe = PROBE_FIRST;
            if done.copied > 0 {
                AFTER_REPAIRS
            } else {
                inner.options.repair_interval
            }
        };
        tokio::select! {
            () = nudged => {}
            () = tokio::time::sleep(wait.min(inner.options.repair_interval)) => {}
        }
    }
}

/// What one pass found.
struct Pass {
    /// A mirror is still down after its probe.
    any_down: bool,
    /// Objects copied to mirrors that lacked them.
    copied: usize,
}

async fn pass(inner: &Arc<Inner>, swept: &mut [Option<Instant>]) -> Pass {
    let mut done = Pass {
        any_down: false,
        copied: 0,
    };
    for (i, mirror) in inner.mirrors.iter().enumerate() {
        if !mirror.health.is_up() {
            // A listing of an empty prefix: one cheap request that any backend must answer.
            if mirror.blobs.list("health/").await.is_err() {
                done.any_down = true;
                continue;
            }
            let down_for = mirror.health.down_for();
            mirror.health.mark_up();
            tracing::info!(mirror = %mirror.label, ?down_for, "mirror is back; repairing it");
            swept[i] = None;
        }
        match copy_missing(inner, i).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(mirror = %mirror.label, objects = n, "repaired");
                done.copied += n;
            }
            Err(e) => {
                inner.mark_down(i, &e);
                done.any_down = true;
                continue;
            }
        }
        let due = swept[i].is_none_or(|at| at.elapsed() >= inner.options.sweep_interval);
        if due {
            match inventory::take(inner, i).await {
                Ok(found) => {
                    if found.strays_removed > 0 {
                        tracing::info!(mirror = %mirror.label, blobs = found.strays_removed, "removed blobs nothing refers to");
                    }
                    if found.uploads_aborted > 0 {
                        tracing::info!(mirror = %mirror.label, uploads = found.uploads_aborted, "aborted unfinished uploads left by an interrupted write");
                    }
                    if found.missing > 0 {
                        tracing::warn!(mirror = %mirror.label, objects = found.missing, "copies the catalog expected are gone from the mirror; repairing them");
                        inner.nudge.notify_one();
                    }
                    swept[i] = Some(Instant::now());
                }
                Err(e) => {
                    inner.mark_down(i, &e);
                    done.any_down = true;
                }
            }
        }
    }
    done
}

/// Copies every object mirror `i` lacks. An error means the mirror itself failed.
async fn copy_missing(inner: &Arc<Inner>, i: usize) -> Result<usize> {
    let label = inner.mirrors[i].label.clone();
    let work: Vec<(String, ObjectRecord)> = inner
        .catalog
        .read()
        .objects()
        .filter(|(_, o)| !o.holders.contains(&label))
        .map(|(b, o)| (b.to_owned(), o.clone()))
        .collect();
    let mut repaired = 0;
    let mut without_copy = 0;
    for (bucket, object) in work {
        let sums = if object.holders.is_empty() {
            // No mirror is known to hold a good copy: maybe this one does after all (a
            // holder set emptied by an outage). Only a copy that checks out counts.
            verify_copy(inner, i, &object, None).await?
        } else {
            copy_one(inner, &bucket, &object, i).await?
        };
        let Some(sums) = sums else {
            without_copy += usize::from(object.holders.is_empty());
            continue;
        };
        let mut records = vec![Record::Holder {
            bucket: bucket.clone(),
            key: object.meta.key.clone(),
            blob: object.blob.clone(),
            mirror: label.clone(),
            has: true,
        }];
        records.extend(learned_chunks(&bucket, &object, sums));
        let (key, blob) = (object.meta.key.clone(), object.blob.clone());
        let current = inner
            .catalog
            .change(move |state| {
                let still = state.object(&bucket, &key).is_ok_and(|o| o.blob == blob);
                Ok((if still { records } else { vec![] }, still))
            })
            .await?;
        if current {
            repaired += 1;
        } else {
            // Overwritten or deleted while being copied: the copy is a stray now.
            inner.mirrors[i].blobs.delete(&blob_path(&object.blob)).await?;
        }
    }
    if without_copy > 0 {
        tracing::error!(mirror = %label, objects = without_copy, "objects have no good copy on this mirror nor any known holder");
    }
    Ok(repaired)
}

/// Copies one object's blob to mirror `i` from the first holder with a good copy, and returns
/// its chunk sums. `Ok(None)`: no holder could provide one; `Err`: mirror `i` failed.
///
/// A source is blamed for a bad copy only when it is certain: the blob is missing, or every
/// byte was read and they fail the ETag check. A source that is down, times out or drops the
/// connection mid-copy is marked down and keeps its place among the holders; otherwise an
/// outage would turn into the permanent loss of every copy it held.
async fn copy_one(inner: &Arc<Inner>, bucket: &str, object: &ObjectRecord, i: usize) -> Result<Option<ChunkSums>> {
    let path = blob_path(&object.blob);
    let target = &inner.mirrors[i];
    for src in inner.read_order(&object.holders) {
        if src == i {
            continue;
        }
        let mut body = match inner.mirrors[src].blobs.read(&path, 0..object.meta.size).await {
            Ok(body) => body,
            Err(StoreError::NoSuchKey) => {
                inner.copy_lost(bucket, &object.meta.key, &object.blob, src, "missing");
                continue;
            }
            Err(StoreError::Corrupt(_)) => {
                inner.copy_lost(bucket, &object.meta.key, &object.blob, src, "corrupt");
                continue;
            }
            Err(e) => {
                inner.mark_down(src, &e);
                continue;
            }
        };
        let mut sink = target.blobs.create(&path).await?;
        let mut check = EtagCheck::new(&object.meta);
        let mut sums = ChunkSummer::default();
        let mut read = 0u64;
        let mut source_error = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    read += chunk.len() as u64;
                    check.update(&chunk);
                    sums.update(&chunk);
                    if let Err(e) = sink.write(chunk).await {
                        sink.abort().await;
                        return Err(e);
                    }
                }
                Err(e) => {
                    source_error = Some(e);
                    break;
                }
            }
        }
        if source_error.is_some() || read < object.meta.size {
            sink.abort().await;
            let why = source_error.map_or(Unavailable::CopyEndedEarly, Unavailable::Read);
            inner.mark_down(src, &why.into());
            continue;
        }
        if !check.matches() {
            sink.abort().await;
            inner.copy_lost(bucket, &object.meta.key, &object.blob, src, "corrupt");
            continue;
        }
        let sums = sums.finish();
        let meta = ObjectMeta {
            chunks: Some(sums.clone()),
            ..object.meta.clone()
        };
        sink.write(blob_trailer(bucket, &meta)).await?;
        sink.commit().await?;
        return Ok(Some(sums));
    }
    Ok(None)
}
