//! The background repair loop: brings every mirror back to the catalog's set of objects.
//!
//! Each pass, per mirror: a mirror marked down is probed and, once it answers, marked up;
//! every object it lacks (it was down for the write, is new to the set, or lost or corrupted
//! its copy) is copied from a holder, checked against the ETag on the way; and now and then
//! (and whenever it comes back) it is listed and blobs that nothing refers to are deleted,
//! so it ends with exactly the catalog's blobs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use super::catalog::{ObjectRecord, Record};
use super::verify::EtagCheck;
use super::{Inner, blob_trailer};
use crate::blobs::{blob_id, blob_path};
use crate::error::{Result, StoreError};

pub(super) async fn run(inner: Arc<Inner>) {
    let mut swept: Vec<Option<Instant>> = vec![None; inner.mirrors.len()];
    loop {
        let nudged = inner.nudge.notified();
        pass(&inner, &mut swept).await;
        tokio::select! {
            () = nudged => {}
            () = tokio::time::sleep(inner.options.repair_interval) => {}
        }
    }
}

async fn pass(inner: &Arc<Inner>, swept: &mut [Option<Instant>]) {
    for (i, mirror) in inner.mirrors.iter().enumerate() {
        if !mirror.health.is_up() {
            // A listing of an empty prefix: one cheap request that any backend must answer.
            if mirror.blobs.list("health/").await.is_err() {
                continue;
            }
            let down_for = mirror.health.down_for();
            mirror.health.mark_up();
            tracing::info!(mirror = %mirror.label, ?down_for, "mirror is back; repairing it");
            swept[i] = None;
        }
        match copy_missing(inner, i).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(mirror = %mirror.label, objects = n, "repaired"),
            Err(e) => {
                inner.mark_down(i, &e);
                continue;
            }
        }
        let due = swept[i].is_none_or(|at| at.elapsed() >= inner.options.sweep_interval);
        if due {
            match sweep(inner, i).await {
                Ok(removed) => {
                    if removed > 0 {
                        tracing::info!(mirror = %mirror.label, blobs = removed, "removed blobs nothing refers to");
                    }
                    swept[i] = Some(Instant::now());
                }
                Err(e) => inner.mark_down(i, &e),
            }
        }
    }
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
    for (bucket, object) in work {
        if object.holders.is_empty() {
            tracing::error!(mirror = %label, "an object has no good copy left on any mirror");
            continue;
        }
        if !copy_one(inner, &bucket, &object, i).await? {
            continue;
        }
        let (key, blob, mirror) = (object.meta.key.clone(), object.blob.clone(), label.clone());
        let current = inner
            .catalog
            .change(move |state| {
                let still = state.object(&bucket, &key).is_ok_and(|o| o.blob == blob);
                let record = Record::Holder {
                    bucket,
                    key,
                    blob,
                    mirror,
                    has: true,
                };
                Ok((if still { vec![record] } else { vec![] }, still))
            })
            .await?;
        if current {
            repaired += 1;
        } else {
            // Overwritten or deleted while being copied: the copy is a stray now.
            inner.mirrors[i].blobs.delete(&blob_path(&object.blob)).await?;
        }
    }
    Ok(repaired)
}

/// Copies one object's blob to mirror `i` from the first holder with a good copy. `Ok(false)`:
/// no holder could provide one; `Err`: mirror `i` failed.
async fn copy_one(inner: &Arc<Inner>, bucket: &str, object: &ObjectRecord, i: usize) -> Result<bool> {
    let path = blob_path(&object.blob);
    let target = &inner.mirrors[i];
    for src in inner.read_order(&object.holders) {
        if src == i {
            continue;
        }
        let mut body = match inner.mirrors[src].blobs.read(&path, 0..object.meta.size).await {
            Ok(body) => body,
            Err(StoreError::NoSuchKey | StoreError::Corrupt(_)) => {
                inner.copy_lost(bucket, &object.meta.key, &object.blob, src, "missing");
                continue;
            }
            Err(e) => {
                inner.mark_down(src, &e);
                continue;
            }
        };
        let mut sink = target.blobs.create(&path).await?;
        let mut check = EtagCheck::new(&object.meta);
        let mut source_failed = false;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    check.update(&chunk);
                    if let Err(e) = sink.write(chunk).await {
                        sink.abort().await;
                        return Err(e);
                    }
                }
                Err(_) => {
                    source_failed = true;
                    break;
                }
            }
        }
        if source_failed || !check.matches() {
            sink.abort().await;
            inner.copy_lost(bucket, &object.meta.key, &object.blob, src, "corrupt");
            continue;
        }
        sink.write(blob_trailer(bucket, &object.meta)).await?;
        sink.commit().await?;
        return Ok(true);
    }
    Ok(false)
}

/// Deletes blobs on mirror `i` that neither the catalog nor a write in progress refers to.
async fn sweep(inner: &Arc<Inner>, i: usize) -> Result<usize> {
    if !super::owned_by(&inner.mirrors[i], &inner.owner).await? {
        tracing::error!(mirror = %inner.mirrors[i].label, "{}", StoreError::OwnedByAnother(inner.mirrors[i].label.clone()));
        return Ok(0);
    }
    let found = inner.mirrors[i].blobs.list("blobs/").await?;
    let referenced: HashSet<String> = {
        let state = inner.catalog.read();
        state.objects().map(|(_, o)| o.blob.clone()).collect()
    };
    let mut removed = 0;
    for entry in found {
        let Some(id) = blob_id(&entry.path) else { continue };
        let busy = inner.in_flight.lock().expect("in-flight lock").contains(id);
        if referenced.contains(id) || busy {
            continue;
        }
        inner.mirrors[i].blobs.delete(&entry.path).await?;
        removed += 1;
    }
    Ok(removed)
}
