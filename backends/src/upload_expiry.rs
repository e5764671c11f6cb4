//! Multipart uploads that nobody finishes expire.
//!
//! A client killed mid-upload (or a relay killed with -9 under it) leaves its parts on disk
//! forever: 340 MiB after five kills of a large upload, on a Raspberry Pi's SD card. Like S3's
//! `AbortIncompleteMultipartUpload` lifecycle rule, uploads older than a maximum age are
//! aborted, whatever the store (the embedded one, or a mirror set's upload area).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Result, StoreError};
use crate::store::Store;

/// The default maximum age of an unfinished upload.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Aborts every upload in `store` initiated more than `max_age` ago; returns how many.
pub async fn abort_stale(store: &dyn Store, max_age: Duration) -> Result<usize> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let cutoff = now_ms.saturating_sub(max_age.as_millis() as i64);
    let mut aborted = 0;
    for bucket in store.list_buckets().await? {
        // A bucket deleted or an upload completed meanwhile is no reason to stop the pass.
        let uploads = match store.list_multipart_uploads(&bucket.name, "").await {
            Ok(uploads) => uploads,
            Err(StoreError::NoSuchBucket) => continue,
            Err(e) => return Err(e),
        };
        for upload in uploads.into_iter().filter(|u| u.initiated_ms <= cutoff) {
            match store
                .abort_multipart(&bucket.name, &upload.key, &upload.upload_id)
                .await
            {
                Ok(()) => aborted += 1,
                Err(StoreError::NoSuchUpload | StoreError::NoSuchBucket) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(aborted)
}

/// Runs [`abort_stale`] now and then every `every`, until the task is aborted.
pub fn spawn(store: Arc<dyn Store>, max_age: Duration, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match abort_stale(&*store, max_age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(uploads = n, ?max_age, "aborted unfinished multipart uploads"),
                Err(e) => tracing::warn!(error = %e, "could not expire unfinished multipart uploads"),
            }
            tokio::time::sleep(every).await;
        }
    })
}
