//! Storage quotas for the whole relay (`--max-storage`) and per bucket (`--bucket-quota`): a
//! write that would take either past its quota is refused before a byte is read, with
//! `403 QuotaExceeded` (Ceph's answer; AWS has no quota), and nothing half-written.
//!
//! A bucket's quota counts its objects and the writes to it in flight. Parts staged for a
//! multipart upload count against the relay's quota as they arrive and against the bucket's
//! when the upload completes: a completion that would not fit is refused and the upload stays
//! (the client can abort it, or free room and complete again).
//!
//! What counts: objects stored (the store's own figure, the mailbox's messages included),
//! multipart parts staged for uploads not yet completed, and the declared size of every write
//! in flight. Every way bytes arrive is a write with a size known up front (a single PUT,
//! aws-chunked with its decoded length, an upload part, a copy), and the body is held to that
//! size, so reserving it is enough. An overwrite counts in full until it lands. Staged parts
//! are counted as they arrive and re-read from the store every minute and after a completion
//! or abort, which also picks up uploads the expiry sweeper aborted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backends::Store;
use s3s::{S3Error, S3ErrorCode};

/// Bytes stored, as the store counts them.
pub type StoredBytes = Arc<dyn Fn() -> u64 + Send + Sync>;
/// Bytes stored in one bucket, as the store counts them.
pub type BucketBytes = Arc<dyn Fn(&str) -> u64 + Send + Sync>;

/// Quotas of named buckets, and what is being written to them now.
struct BucketQuotas {
    max: BTreeMap<String, u64>,
    stored: BucketBytes,
    in_flight: Mutex<HashMap<String, u64>>,
}

/// How often staged parts are re-read from the store.
const REFRESH: Duration = Duration::from_secs(60);

pub struct StorageQuota {
    /// The relay's quota; `u64::MAX` when only buckets have one.
    max: u64,
    stored: StoredBytes,
    buckets: BucketQuotas,
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
    /// `max`: the relay's quota, if any; `buckets`: quotas of named buckets.
    pub fn new(
        max: Option<u64>,
        stored: StoredBytes,
        buckets: BTreeMap<String, u64>,
        bucket_stored: BucketBytes,
    ) -> Arc<Self> {
        Arc::new(Self {
            max: max.unwrap_or(u64::MAX),
            stored,
            buckets: BucketQuotas {
                max: buckets,
                stored: bucket_stored,
                in_flight: Mutex::new(HashMap::new()),
            },
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

    /// Counts `bytes` written as in flight until the reservation drops; refused if they do not
    /// fit the relay's quota or, for a write that lands in `bucket` (not a staged part), the
    /// bucket's.
    pub(crate) fn reserve(self: &Arc<Self>, bucket: Option<&str>, bytes: u64) -> Result<Reservation, S3Error> {
        let before = self.in_flight.fetch_add(bytes, Ordering::Relaxed);
        let used = (self.stored)() + self.staged.load(Ordering::Relaxed) + before;
        if used.saturating_add(bytes) > self.max {
            self.in_flight.fetch_sub(bytes, Ordering::Relaxed);
            return Err(quota_exceeded(self.max, used));
        }
        let mut reservation = Reservation {
            quota: self.clone(),
            bytes,
            bucket: None,
        };
        if let Some(bucket) = bucket.filter(|b| self.buckets.max.contains_key(*b)) {
            self.fits_bucket(bucket, bytes, true)?;
            reservation.bucket = Some(bucket.to_owned());
        }
        Ok(reservation)
    }

    /// Whether `bytes` more fit in `bucket`'s quota (with `hold`, they are then counted as in
    /// flight until the reservation that holds them drops).
    fn fits_bucket(&self, bucket: &str, bytes: u64, hold: bool) -> Result<(), S3Error> {
        let Some(&max) = self.buckets.max.get(bucket) else {
            return Ok(());
        };
        let mut in_flight = self.buckets.in_flight.lock().expect("bucket quota lock");
        let flying = in_flight.get(bucket).copied().unwrap_or(0);
        let used = (self.buckets.stored)(bucket) + flying;
        if used.saturating_add(bytes) > max {
            return Err(bucket_quota_exceeded(max, used));
        }
        if hold {
            *in_flight.entry(bucket.to_owned()).or_default() += bytes;
        }
        Ok(())
    }

    /// Checks that an upload completing with `bytes` of parts fits its bucket's quota (its
    /// parts already count against the relay's).
    pub(crate) fn check_completion(&self, bucket: &str, bytes: u64) -> Result<(), S3Error> {
        self.fits_bucket(bucket, bytes, false)
    }

    /// Whether `bucket` has a quota of its own.
    pub(crate) fn limits_bucket(&self, bucket: &str) -> bool {
        self.buckets.max.contains_key(bucket)
    }

    /// Bytes a write of unknown size may still take in `bucket`.
    pub(crate) fn room(&self, bucket: &str) -> u64 {
        let relay = self.max.saturating_sub(self.used());
        match self.buckets.max.get(bucket) {
            None => relay,
            Some(&max) => {
                let flying = self
                    .buckets
                    .in_flight
                    .lock()
                    .expect("bucket quota lock")
                    .get(bucket)
                    .copied()
                    .unwrap_or(0);
                relay.min(max.saturating_sub((self.buckets.stored)(bucket) + flying))
            }
        }
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

/// Bytes held against the quotas for one write in flight.
pub(crate) struct Reservation {
    quota: Arc<StorageQuota>,
    bytes: u64,
    /// The bucket whose own quota holds them too, if it has one.
    bucket: Option<String>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.quota.in_flight.fetch_sub(self.bytes, Ordering::Relaxed);
        if let Some(bucket) = &self.bucket {
            let mut in_flight = self.quota.buckets.in_flight.lock().expect("bucket quota lock");
            if let Some(flying) = in_flight.get_mut(bucket) {
                *flying = flying.saturating_sub(self.bytes);
                if *flying == 0 {
                    in_flight.remove(bucket);
                }
            }
        }
    }
}

fn bucket_quota_exceeded(max: u64, used: u64) -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::Custom("QuotaExceeded".into()));
    e.set_status_code(http::StatusCode::FORBIDDEN);
    e.set_message(format!(
        "This write would take the bucket past its storage quota of {max} bytes ({used} in use)."
    ));
    e
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
        let quota = StorageQuota::new(
            Some(1000),
            Arc::new(move || seen.load(Ordering::Relaxed)),
            BTreeMap::new(),
            Arc::new(|_| 0),
        );
        let first = quota.reserve(Some("b"), 300).unwrap();
        let refused = quota.reserve(Some("b"), 101).err().unwrap();
        assert_eq!(refused.code().as_str(), "QuotaExceeded");
        assert_eq!(refused.status_code(), Some(http::StatusCode::FORBIDDEN));
        assert!(quota.reserve(None, 100).is_ok(), "exactly full fits");
        drop(first);
        assert_eq!(quota.used(), 600);
        quota.part_staged(350);
        assert!(quota.reserve(Some("b"), 51).is_err());
        assert!(quota.reserve(Some("b"), 50).is_ok());
    }

    #[test]
    fn a_bucket_quota_holds_its_bucket_only() {
        let quota = StorageQuota::new(
            None,
            Arc::new(|| 0),
            BTreeMap::from([("small".to_owned(), 100)]),
            Arc::new(|bucket| if bucket == "small" { 40 } else { 0 }),
        );
        let held = quota.reserve(Some("small"), 60).unwrap();
        assert_eq!(
            quota.reserve(Some("small"), 1).err().unwrap().code().as_str(),
            "QuotaExceeded"
        );
        assert!(
            quota.reserve(Some("other"), 10_000).is_ok(),
            "other buckets are not held"
        );
        assert!(
            quota.reserve(None, 10_000).is_ok(),
            "a staged part waits for its completion"
        );
        assert_eq!(quota.room("small"), 0);
        drop(held);
        assert_eq!(quota.room("small"), 60);
        assert!(quota.check_completion("small", 61).is_err());
        assert!(quota.check_completion("small", 60).is_ok());
        assert_eq!(quota.room("small"), 60, "a completion check holds nothing");
    }
}
