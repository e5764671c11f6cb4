//! Rebuilding a lost catalog from the blobs' trailers.
//!
//! Every blob ends with its bucket, key and metadata, so a relay that lost its data dir (a
//! dead SD card, a move to a new machine) finds everything again by pointing at the same
//! backends. For each key the newest copy wins (by last-modified, then blob id); older
//! versions left behind by an interrupted overwrite become strays for the sweep. What the
//! blobs do not carry is lost: empty buckets, bucket documents (CORS rules) and multipart
//! uploads in progress.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde::Deserialize;

use super::Mirror;
use super::catalog::Record;
use crate::blobs::blob_id;
use crate::error::Result;
use crate::fs::blob::decode_trailer;
use crate::model::ObjectMeta;

/// Enough of a blob's end for any trailer this relay writes (S3 caps metadata at a few KiB).
const TAIL: u64 = 64 * 1024;

#[derive(Deserialize)]
struct StoredTrailer {
    bucket: String,
    #[serde(flatten)]
    meta: ObjectMeta,
}

struct Found {
    meta: ObjectMeta,
    blob: String,
    holders: BTreeSet<String>,
}

/// The catalog records the mirrors' blobs describe; `None` if they hold no blobs at all.
pub(super) async fn from_mirrors(mirrors: &[Mirror]) -> Result<Option<Vec<Record>>> {
    let mut found: BTreeMap<(String, String), Found> = BTreeMap::new();
    for mirror in mirrors {
        let listing = match mirror.blobs.list("blobs/").await {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(mirror = %mirror.label, error = %e, "cannot list a mirror while rebuilding the catalog");
                continue;
            }
        };
        for entry in listing {
            let Some(id) = blob_id(&entry.path) else { continue };
            let Some(trailer) = read_trailer(mirror, &entry.path, entry.size).await else {
                tracing::warn!(mirror = %mirror.label, "skipping a blob without a readable trailer");
                continue;
            };
            let slot = (trailer.bucket, trailer.meta.key.clone());
            let newer = |f: &Found| (trailer.meta.last_modified_ms, id) > (f.meta.last_modified_ms, f.blob.as_str());
            match found.get_mut(&slot) {
                Some(f) if f.blob == id => {
                    f.holders.insert(mirror.label.clone());
                }
                Some(f) if !newer(f) => {}
                _ => {
                    found.insert(
                        slot,
                        Found {
                            meta: trailer.meta,
                            blob: id.to_owned(),
                            holders: BTreeSet::from([mirror.label.clone()]),
                        },
                    );
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let mut created: BTreeMap<String, i64> = BTreeMap::new();
    for ((bucket, _), f) in &found {
        let at = created.entry(bucket.clone()).or_insert(f.meta.last_modified_ms);
        *at = (*at).min(f.meta.last_modified_ms);
    }
    let mut records: Vec<Record> = created
        .into_iter()
        .map(|(name, created_ms)| Record::Bucket { name, created_ms })
        .collect();
    records.extend(found.into_iter().map(|((bucket, _), f)| Record::Object {
        bucket,
        blob: f.blob,
        holders: f.holders.into_iter().collect(),
        meta: Box::new(f.meta),
    }));
    Ok(Some(records))
}

/// The trailer of one blob, if it is a well-formed blob of ours.
async fn read_trailer(mirror: &Mirror, path: &str, size: u64) -> Option<StoredTrailer> {
    let mut stream = mirror.blobs.read(path, size.saturating_sub(TAIL)..size).await.ok()?;
    let mut tail = Vec::new();
    while let Some(chunk) = stream.next().await {
        tail.extend_from_slice(&chunk.ok()?);
    }
    let json = decode_trailer(&tail).ok()?;
    let trailer: StoredTrailer = serde_json::from_slice(json).ok()?;
    // The body and the trailer must account for the whole blob.
    (trailer.meta.size + json.len() as u64 + 12 == size).then_some(trailer)
}
