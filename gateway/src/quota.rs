//! A storage quota for the whole relay (`--max-storage`): a write that would take the relay
//! past it is refused before a byte is read, with `403 QuotaExceeded` (Ceph's answer; AWS has
//! no quota), and nothing half-written.
//!
//! What counts: objects stored (the store's own figure, the mailbox's messages included),
//! multipart parts staged for uploads not yet completed, and the declared size of every write
//! in flight. Every way bytes arrive is a write with a size known up front (a single PUT,
//! aws-chunked with its decoded length, an upload part, a copy), and the body is held to that
//! size, so reserving it is enough. An overwrite counts in full until it lands. Staged parts
//! are counted as they arrive and re-read from the store every minute and after a completion
//! or abort, which also picks up uploads the expiry sweeper aborted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backends::Store;
use s3s::{S3Error, S3ErrorCode};

/// Bytes stored, as the store counts them.
pub type StoredBytes = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How often staged parts are re-read from the store.
const REFRESH: Duration = Duration::from_secs(60);

pub struct StorageQuota {
    max: u64,
    stored: StoredBytes,
    staged: AtomicU64,
    in_flight: AtomicU64,
    refresh: tokio::sync::Notify,
}

impl std::fmt::Debug for StorageQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageQuota").field("max", &self.max).finish()
    }
}

impl StorageQuota {
    pub fn new(max: u64, stored: StoredBytes) -> Arc<Self> {
        Arc::new(Self {
            max,
            stored,
            staged: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            refresh: tokio::sync::Notify::new(),
        })
    }

    /// Bytes counted against the quota now.
    pub fn used(&self) -> u64 {
        (self.stored)() + self.staged.load(Ordering::Relaxed) + self.in_flight.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Counts `bytes` as in flight until the reservation drops; refused if they do not fit.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, S3Error> {
        let before = self.in_flight.fetch_add(bytes, Ordering::Relaxed);
        let used = (self.stored)() + self.staged.load(Ordering::Relaxed) + before;
        if used.saturating_add(bytes) > self.max {
            self.in_flight.fetch_sub(bytes, Ordering::Relaxed);
            return Err(quota_exceeded(self.max, used));
        }
        Ok(Reservation {
            quota: self.clone(),
            bytes,
        })
    }

    /// A part of `bytes` is now staged.
    pub(crate) fn part_staged(&self, bytes: u64) {
        self.staged.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An upload completed or was aborted: staged parts are re-read from the store.
    pub(crate) fn upload_ended(&self) {
        self.refresh.notify_one();
    }

    /// Keeps the staged figure true to `store`, until aborted.
    pub fn spawn_refresher(self: &Arc<Self>, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
        let quota = self.clone();
        tokio::spawn(async move {
            loop {
                match staged_bytes(store.as_ref()).await {
                    Ok(bytes) => quota.staged.store(bytes, Ordering::Relaxed),
                    Err(e) => tracing::debug!(error = %e, "could not count staged parts"),
                }
                let _ = tokio::time::timeout(REFRESH, quota.refresh.notified()).await;
            }
        })
    }
}

/// Bytes of every part of every unfinished multipart upload.
async fn staged_bytes(store: &dyn Store) -> backends::Result<u64> {
    let mut total = 0;
    for bucket in store.list_buckets().await? {
        for upload in store.list_multipart_uploads(&bucket.name, "").await? {
            match store.list_parts(&bucket.name, &upload.key, &upload.upload_id).await {
                Ok(info) => total += info.parts.iter().map(|p| p.size).sum::<u64>(),
                // Completed or aborted meanwhile.
                Err(backends::StoreError::NoSuchUpload) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

/// Bytes held against the quota for one write in flight.
pub(crate) struct Reservation {
    quota: Arc<StorageQuota>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.quota.in_flight.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

fn quota_exceeded(max: u64, used: u64) -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::Custom("QuotaExceeded".into()));
    e.set_status_code(http::StatusCode::FORBIDDEN);
    e.set_message(format!(
        "This write would take the relay past its storage quota of {max} bytes ({used} in use)."
    ));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_fit_until_the_quota_and_a_reservation_gives_its_bytes_back() {
        let stored = Arc::new(AtomicU64::new(600));
        let seen = stored.clone();
        let quota = StorageQuota::new(1000, Arc::new(move || seen.load(Ordering::Relaxed)));
        let first = quota.reserve(300).unwrap();
        let refused = quota.reserve(101).err().unwrap();
        assert_eq!(refused.code().as_str(), "QuotaExceeded");
        assert_eq!(refused.status_code(), Some(http::StatusCode::FORBIDDEN));
        assert!(quota.reserve(100).is_ok(), "exactly full fits");
        drop(first);
        assert_eq!(quota.used(), 600);
        quota.part_staged(350);
        assert!(quota.reserve(51).is_err());
        assert!(quota.reserve(50).is_ok());
    }
}
