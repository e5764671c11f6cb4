//! Deletes the bytes of expired objects, and aborts uploads past their rule's days.
//!
//! Expired objects are already gone for clients (see [`super::Expiring`]); the sweeper only
//! frees the space, so it can run rarely.

use std::sync::Arc;
use std::time::Duration;

use backends::clock::Day;
use backends::{ListQuery, Result, StoreError};

use super::expiring::{Expiring, expiry_moment};
use crate::metrics::S3Metrics;

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub objects: usize,
    pub uploads: usize,
}

/// Sweeps every bucket once.
pub async fn sweep(store: &Expiring) -> Result<Swept> {
    let mut swept = Swept::default();
    for bucket in store.inner().list_buckets().await? {
        // A bucket deleted meanwhile is no reason to stop the pass.
        match sweep_bucket(store, &bucket.name).await {
            Ok(n) => swept.objects += n,
            Err(StoreError::NoSuchBucket) => continue,
            Err(e) => return Err(e),
        }
        match sweep_uploads(store, &bucket.name).await {
            Ok(n) => swept.uploads += n,
            Err(StoreError::NoSuchBucket) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(swept)
}

/// Deletes the expired objects of one bucket; returns how many.
pub(crate) async fn sweep_bucket(store: &Expiring, bucket: &str) -> Result<usize> {
    let Some(rules) = store.rules(bucket).await? else {
        return Ok(0);
    };
    let mut due = Vec::new();
    let mut query = ListQuery {
        max_keys: 1000,
        ..Default::default()
    };
    loop {
        let page = store.inner().list_objects(bucket, &query).await?;
        due.extend(
            page.objects
                .into_iter()
                .filter(|o| store.expired(&rules, bucket, &o.key, o.size, o.last_modified_ms)),
        );
        if !page.truncated || page.last.is_none() {
            break;
        }
        query.start_after = page.last;
    }
    let mut deleted = 0;
    for listed in due {
        // Only the object that expired: one written over it since the listing stays.
        match store.inner().head_object(bucket, &listed.key).await {
            Ok(now) if now.etag == listed.etag && now.last_modified_ms == listed.last_modified_ms => {
                store.inner().delete_object(bucket, &listed.key).await?;
                deleted += 1;
            }
            Ok(_) | Err(StoreError::NoSuchKey) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Aborts the uploads of one bucket that its `AbortIncompleteMultipartUpload` rules expire.
async fn sweep_uploads(store: &Expiring, bucket: &str) -> Result<usize> {
    let Some(rules) = store.own_rules(bucket).await? else {
        return Ok(0);
    };
    if rules.0.iter().all(|r| r.abort_upload_days.is_none()) {
        return Ok(0);
    }
    let now = store.now_secs();
    let mut aborted = 0;
    for upload in store.inner().list_multipart_uploads(bucket, "").await? {
        let Some(days) = rules.abort_upload_days(&upload.key) else {
            continue;
        };
        let last_day = Day::of_secs(upload.initiated_ms.div_euclid(1000)).plus(days);
        if now < expiry_moment(last_day, bucket, &upload.upload_id, upload.initiated_ms) {
            continue;
        }
        match store
            .inner()
            .abort_multipart(bucket, &upload.key, &upload.upload_id)
            .await
        {
            Ok(()) => aborted += 1,
            Err(StoreError::NoSuchUpload) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(aborted)
}

/// Sweeps every `every` (up to a tenth more, so that sweeps do not line up with anything)
/// for as long as `store` lives; the first time a minute after start, or sooner if `every`
/// is shorter.
pub fn spawn(store: &Arc<Expiring>, every: Duration, metrics: Option<Arc<S3Metrics>>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut wait = every.min(Duration::from_secs(60));
        loop {
            tokio::time::sleep(wait).await;
            let random = uuid::Uuid::new_v4().as_bytes()[0];
            wait = every + every.mul_f64(f64::from(random) / 2550.0);
            let Some(store) = weak.upgrade() else { return };
            match sweep(&store).await {
                Ok(swept) => {
                    if let Some(m) = &metrics {
                        m.expired_objects.inc_by(swept.objects as u64);
                        m.expired_uploads.inc_by(swept.uploads as u64);
                    }
                    if swept != Swept::default() {
                        tracing::info!(
                            objects = swept.objects,
                            uploads = swept.uploads,
                            "lifecycle rules removed expired objects and uploads"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the lifecycle sweep failed; retrying later"),
            }
        }
    })
}
