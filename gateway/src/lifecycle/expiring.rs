//! The store as S3 clients see it once lifecycle rules apply: an expired object is gone from
//! GET, HEAD, LIST and copies at its expiry moment, before the sweeper deletes its bytes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use backends::clock::{Clock, Day};
use backends::{
    BucketInfo, ByteRange, ByteStream, CompletedPart, GetResult, ListPage, ListQuery, ObjectAttrs, ObjectMeta,
    PartMeta, PutOptions, Result, Store, StoreError, UploadInfo, UploadSummary,
};
use bytes::Bytes;

use super::rules::{Expire, Filter, Rule, Rules};

/// The bucket document holding a bucket's rules.
pub(crate) const DOC: &str = "lifecycle";

/// Inner pages one LIST reads at most while filling a page that expired objects thinned out.
const MAX_PAGES_PER_LIST: usize = 16;

/// Wraps the store the gateway serves. One instance is shared by every frontend, so that the
/// rules it caches are the ones last put.
pub struct Expiring {
    inner: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// `--ttl`: the lifetime of objects in buckets without rules of their own.
    default_ttl: Option<Arc<Rules>>,
    /// Each bucket's rules, read once from its document (`None`: the bucket has none).
    cache: Mutex<HashMap<String, Option<Arc<Rules>>>>,
}

impl Expiring {
    /// `default_ttl_days`: the relay-wide lifetime for buckets without lifecycle rules.
    pub fn new(inner: Arc<dyn Store>, clock: Arc<dyn Clock>, default_ttl_days: Option<NonZeroU32>) -> Self {
        let default_ttl = default_ttl_days.map(|days| {
            Arc::new(Rules(vec![Rule {
                id: Some("relay-ttl".into()),
                enabled: true,
                filter: Filter::default(),
                legacy_prefix: false,
                expire: Some(Expire::Days(days.get())),
                abort_upload_days: None,
                expired_object_delete_marker: None,
                noncurrent_days: None,
            }]))
        });
        Self {
            inner,
            clock,
            default_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The store underneath, where expired objects are still visible (for the sweeper).
    pub(crate) fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    pub(crate) fn now_secs(&self) -> i64 {
        self.clock.now_secs()
    }

    /// The bucket's own rules as stored, without the relay-wide default.
    pub(crate) async fn own_rules(&self, bucket: &str) -> Result<Option<Arc<Rules>>> {
        if let Some(cached) = self.cache.lock().expect("lifecycle cache").get(bucket) {
            return Ok(cached.clone());
        }
        let rules = match self.inner.get_bucket_doc(bucket, DOC).await? {
            None => None,
            Some(doc) => match serde_json::from_slice::<Rules>(&doc) {
                Ok(rules) => Some(Arc::new(rules)),
                Err(e) => {
                    // Never expire by a guess: an unreadable document keeps everything.
                    tracing::warn!(error = %e, "a bucket's lifecycle rules are unreadable; none apply");
                    None
                }
            },
        };
        self.cache
            .lock()
            .expect("lifecycle cache")
            .insert(bucket.to_owned(), rules.clone());
        Ok(rules)
    }

    /// The rules that apply in `bucket`: its own, else the relay-wide lifetime, else none.
    pub(crate) async fn rules(&self, bucket: &str) -> Result<Option<Arc<Rules>>> {
        Ok(self.own_rules(bucket).await?.or_else(|| self.default_ttl.clone()))
    }

    fn forget(&self, bucket: &str) {
        self.cache.lock().expect("lifecycle cache").remove(bucket);
    }

    /// Whether an object has passed its expiry moment under `rules`.
    pub(crate) fn expired(&self, rules: &Rules, bucket: &str, key: &str, size: u64, written_ms: i64) -> bool {
        expired_at(self.clock.now_secs(), rules, bucket, key, size, written_ms)
    }

    /// The object's expiry day and rule, for the `x-amz-expiration` header.
    pub async fn expiration(&self, bucket: &str, meta: &ObjectMeta) -> Option<(Day, Option<String>)> {
        let rules = self.rules(bucket).await.ok()??;
        let (day, id) = rules.last_day(&meta.key, meta.size, meta.last_modified_ms)?;
        Some((day, id.map(str::to_owned)))
    }

    async fn check(&self, bucket: &str, meta: &ObjectMeta) -> Result<()> {
        match self.rules(bucket).await? {
            Some(rules) if self.expired(&rules, bucket, &meta.key, meta.size, meta.last_modified_ms) => {
                Err(StoreError::NoSuchKey)
            }
            _ => Ok(()),
        }
    }

    /// A conditional write must not see an expired object as present: it goes first.
    async fn clear_expired(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<()> {
        if !opts.if_none_match_any && opts.if_match.is_none() {
            return Ok(());
        }
        let Some(rules) = self.rules(bucket).await? else {
            return Ok(());
        };
        match self.inner.head_object(bucket, key).await {
            Ok(meta) if self.expired(&rules, bucket, key, meta.size, meta.last_modified_ms) => {
                self.inner.delete_object(bucket, key).await
            }
            _ => Ok(()),
        }
    }
}

/// Whether an object has passed its expiry moment at `now` (Unix seconds). A listing asks
/// this of every key, so the clock is read once per page and the hash is only taken for
/// objects whose last day is over.
fn expired_at(now: i64, rules: &Rules, bucket: &str, key: &str, size: u64, written_ms: i64) -> bool {
    rules
        .last_day(key, size, written_ms)
        .is_some_and(|(day, _)| now >= day.end_secs() && now >= expiry_moment(day, bucket, key, written_ms))
}

/// The moment an object whose last day is `day` goes: within the 24 hours after the day,
/// fixed by what the object is so that every look at it agrees, even across restarts.
pub(crate) fn expiry_moment(day: Day, bucket: &str, key: &str, written_ms: i64) -> i64 {
    day.expiry_moment_secs(fnv1a(&[
        bucket.as_bytes(),
        b"/",
        key.as_bytes(),
        &written_ms.to_be_bytes(),
    ]))
}

/// FNV-1a: a hash that never changes between builds (std's `DefaultHasher` may).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[async_trait::async_trait]
impl Store for Expiring {
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.forget(bucket);
        self.inner.create_bucket(bucket).await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let result = match self.inner.delete_bucket(bucket).await {
            // Expired objects the sweeper has not reached yet do not keep a bucket alive.
            Err(StoreError::BucketNotEmpty) if self.rules(bucket).await?.is_some() => {
                super::sweep::sweep_bucket(self, bucket).await?;
                self.inner.delete_bucket(bucket).await
            }
            other => other,
        };
        self.forget(bucket);
        result
    }

    async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo> {
        self.inner.head_bucket(bucket).await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.inner.list_buckets().await
    }

    async fn get_bucket_doc(&self, bucket: &str, name: &str) -> Result<Option<Bytes>> {
        self.inner.get_bucket_doc(bucket, name).await
    }

    async fn put_bucket_doc(&self, bucket: &str, name: &str, doc: Option<Bytes>) -> Result<()> {
        let result = self.inner.put_bucket_doc(bucket, name, doc).await;
        if name == DOC {
            self.forget(bucket);
        }
        result
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        self.clear_expired(bucket, key, &opts).await?;
        self.inner.put_object(bucket, key, attrs, body, opts).await
    }

    async fn get_object(&self, bucket: &str, key: &str, range: Option<ByteRange>) -> Result<GetResult> {
        let result = self.inner.get_object(bucket, key, range).await?;
        self.check(bucket, &result.meta).await?;
        Ok(result)
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        let meta = self.inner.head_object(bucket, key).await?;
        self.check(bucket, &meta).await?;
        Ok(meta)
    }

    /// The bytes are there until swept, and the quota counts them.
    async fn object_size(&self, bucket: &str, key: &str) -> Option<u64> {
        self.inner.object_size(bucket, key).await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.inner.delete_object(bucket, key).await
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        let Some(rules) = self.rules(bucket).await? else {
            return self.inner.list_objects(bucket, query).await;
        };
        // Fill the page as far as the client asked, past objects that have expired.
        let mut page = ListPage::default();
        let mut next = query.clone();
        for _ in 0..MAX_PAGES_PER_LIST {
            let inner = self.inner.list_objects(bucket, &next).await?;
            let read = inner.objects.len() + inner.common_prefixes.len();
            let now = self.clock.now_secs();
            page.objects.extend(
                inner
                    .objects
                    .into_iter()
                    .filter(|o| !expired_at(now, &rules, bucket, &o.key, o.size, o.last_modified_ms)),
            );
            page.common_prefixes.extend(inner.common_prefixes);
            page.truncated = inner.truncated;
            page.last = inner.last;
            let got = page.objects.len() + page.common_prefixes.len();
            if !page.truncated || read == 0 || got >= query.max_keys {
                break;
            }
            next.start_after = page.last.clone();
            next.max_keys = query.max_keys - got;
        }
        Ok(page)
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        checksum: Option<backends::UploadChecksum>,
    ) -> Result<String> {
        self.inner.create_multipart(bucket, key, attrs, checksum).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartMeta> {
        self.inner
            .upload_part(bucket, key, upload_id, part_number, body, opts)
            .await
    }

    async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadInfo> {
        self.inner.list_parts(bucket, key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        self.clear_expired(bucket, key, &opts).await?;
        self.inner.complete_multipart(bucket, key, upload_id, parts, opts).await
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.inner.abort_multipart(bucket, key, upload_id).await
    }

    async fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadSummary>> {
        self.inner.list_multipart_uploads(bucket, prefix).await
    }
}
