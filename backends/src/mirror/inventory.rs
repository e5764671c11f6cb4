//! A mirror's inventory: what it really lists, held against what the catalog says it holds.
//!
//! The catalog's holder sets are the relay's belief; a mirror whose folder was deleted, or
//! whose provider lost objects, would otherwise stay "holding" them forever and be read in
//! vain once the other copies are gone. Taking inventory lists the mirror once and settles both
//! directions: copies the catalog expects but the listing lacks are recorded as lost (the
//! repair loop then copies them back), and blobs that nothing refers to are deleted, as are
//! the unfinished multipart uploads of a writer that was killed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Inner;
use super::catalog::Record;
use crate::blobs::blob_id;
use crate::error::{Result, StoreError};

/// What one inventory found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Inventory {
    /// Copies the catalog listed on this mirror that it no longer has (now recorded as lost).
    pub missing: usize,
    /// Blobs nothing referred to, deleted.
    pub strays_removed: usize,
    /// Unfinished uploads of blobs no longer being written (a relay killed mid-write), aborted.
    pub uploads_aborted: usize,
}

/// Takes mirror `i`'s inventory.
///
/// The order of the looks is what makes it safe. The catalog's expectations are read *before*
/// the listing, so a copy written after that read is never judged by a listing that predates
/// it. For strays, `in_flight` is read *after* the listing and the catalog after that: a blob
/// id enters `in_flight` before its first byte reaches any mirror and leaves it only once the
/// catalog has it (or the write was given up), so a listed blob that is no longer in flight
/// has its catalog entry visible to the last look, unless the object was since deleted or
/// replaced. Reading the catalog before `in_flight`, as an earlier version did, let a write
/// commit in between and lose its copy.
pub(super) async fn take(inner: &Arc<Inner>, i: usize) -> Result<Inventory> {
    let mirror = &inner.mirrors[i];
    if !super::owner::owned_by(mirror, &inner.owner).await? {
        tracing::error!(mirror = %mirror.label, "{}", StoreError::OwnedByAnother(mirror.label.clone()));
        return Ok(Inventory::default());
    }
    let expected: Vec<(String, String, String, u64)> = inner
        .catalog
        .read()
        .objects()
        .filter(|(_, o)| o.holders.contains(&mirror.label))
        .map(|(b, o)| (b.to_owned(), o.meta.key.clone(), o.blob.clone(), o.meta.size))
        .collect();
    let listed = mirror.blobs.list("blobs/").await?;
    // Not every S3-compatible service lists uploads (some answer 501): that costs the
    // clean-up, never the inventory.
    let pending = mirror.blobs.pending_uploads("blobs/").await.unwrap_or_else(|e| {
        tracing::debug!(mirror = %mirror.label, error = %e, "cannot list unfinished uploads");
        Vec::new()
    });
    let busy: HashSet<String> = inner.in_flight.lock().expect("in-flight lock").clone();
    let sizes: HashMap<&str, u64> = listed
        .iter()
        .filter_map(|e| Some((blob_id(&e.path)?, e.size)))
        .collect();

    // A blob shorter than its object cannot be a good copy, whatever its trailer.
    let gone: Vec<(String, String, String)> = expected
        .into_iter()
        .filter(|(_, _, blob, size)| sizes.get(blob.as_str()).is_none_or(|listed| listed < size))
        .map(|(bucket, key, blob, _)| (bucket, key, blob))
        .collect();
    // An object overwritten or deleted since the first look had its old blob deleted on
    // purpose; only copies the catalog still counts on are lost.
    let label = mirror.label.clone();
    let missing = if gone.is_empty() {
        0
    } else {
        inner
            .catalog
            .change(move |state| {
                let lost: Vec<Record> = gone
                    .into_iter()
                    .filter(|(bucket, key, blob)| {
                        state
                            .object(bucket, key)
                            .is_ok_and(|o| &o.blob == blob && o.holders.contains(&label))
                    })
                    .map(|(bucket, key, blob)| Record::Holder {
                        bucket,
                        key,
                        blob,
                        mirror: label.clone(),
                        has: false,
                    })
                    .collect();
                let n = lost.len();
                Ok((lost, n))
            })
            .await?
    };
    if missing > 0 {
        mirror
            .found_missing
            .fetch_add(missing as u64, std::sync::atomic::Ordering::Relaxed);
    }

    let strays: Vec<&str> = {
        let state = inner.catalog.read();
        let referenced: HashSet<&str> = state.objects().map(|(_, o)| o.blob.as_str()).collect();
        listed
            .iter()
            .filter(|e| blob_id(&e.path).is_some_and(|id| !busy.contains(id) && !referenced.contains(id)))
            .map(|e| e.path.as_str())
            .collect()
    };
    for path in &strays {
        mirror.blobs.delete(path).await?;
    }
    // The same order argument holds for uploads: one listed while its blob was in flight and
    // no longer in flight has been completed or given up by now.
    let mut uploads_aborted = 0;
    for upload in pending {
        if blob_id(&upload.path).is_some_and(|id| !busy.contains(id)) {
            mirror.blobs.abort_upload(&upload).await?;
            uploads_aborted += 1;
        }
    }
    Ok(Inventory {
        missing,
        strays_removed: strays.len(),
        uploads_aborted,
    })
}
