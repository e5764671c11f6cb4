//! Several blob backends behind one [`Store`]: writes go to all of them in parallel, reads
//! try the fastest healthy copy and fall back, and a background task repairs what a mirror
//! missed.
//!
//! The local [`catalog`] is the source of truth for buckets, keys, metadata and listings, so
//! listing is the same whichever mirror is down; the mirrors hold only blobs named by random
//! ids. Each blob is the object's bytes followed by a metadata trailer (the embedded store's
//! format), so a mirror's contents describe themselves. Multipart parts wait on local
//! disk (the embedded store's upload area, under `<data-dir>/staging`) and are streamed from
//! there to the mirrors when the upload completes. docs/ARCHITECTURE.md has the full picture.

mod catalog;
mod fanout;
mod health;
mod import;
mod inventory;
mod options;
mod owner;
mod read;
mod rebuild;
mod repair;
mod scrub;
mod verify;
mod write;

pub use options::{AckPolicy, AckPolicyError, MirrorOptions};
pub use scrub::ScrubProgress;

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use self::catalog::{Catalog, Record};
use self::health::Health;
use self::owner::claim;
use self::write::InFlight;
use crate::blobs::{Blobs, blob_path};
use crate::conditions::{check_write_conditions, unique_algorithms, verify_digests};
use crate::digest::Digester;
use crate::error::{Result, Setup, StoreError};
use crate::model::*;
use crate::names::{check_bucket_name, check_doc_name, check_key};
use crate::store::{ByteStream, Store};
use crate::upload_area::UploadArea;

/// One backend of a mirror set.
pub struct Mirror {
    /// Stable name (`fs:/path`, `s3://bucket@endpoint`, `rclone:remote:path`): the catalog
    /// records which labels hold each object, so a renamed backend counts as a new one.
    label: String,
    blobs: Arc<dyn Blobs>,
    health: Health,
    /// Copies the catalog listed on this mirror that its inventory found gone, since start.
    found_missing: std::sync::atomic::AtomicU64,
    /// Whatever keeps the backend alive (the supervised rclone), dropped with the mirror.
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Mirror {
    pub fn new(label: impl Into<String>, blobs: Arc<dyn Blobs>) -> Self {
        Self {
            label: label.into(),
            blobs,
            health: Health::default(),
            found_missing: Default::default(),
            _guard: None,
        }
    }

    /// Keeps `guard` alive as long as the mirror.
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn blobs(&self) -> &Arc<dyn Blobs> {
        &self.blobs
    }
}

/// Per mirror: what the catalog says it should hold.
#[derive(Debug, Clone)]
pub struct MirrorStatus {
    pub label: String,
    pub up: bool,
    pub latency: Duration,
    pub objects: u64,
    pub bytes: u64,
    /// Objects this mirror is missing, to be copied by the repair loop.
    pub pending_repairs: u64,
    /// Copies the catalog said this mirror held that its inventory found gone, since start:
    /// the mirror lost them (a deleted folder, a provider's loss), or something deleted them.
    pub copies_found_missing: u64,
}

/// The mirror set as a [`Store`].
pub struct MirrorStore {
    inner: Arc<Inner>,
    repair: tokio::task::JoinHandle<()>,
    scrub: tokio::task::JoinHandle<()>,
}

struct Inner {
    mirrors: Vec<Mirror>,
    catalog: Arc<Catalog>,
    /// Multipart uploads in progress, on local disk.
    uploads: UploadArea,
    options: MirrorOptions,
    /// Wakes the repair loop early (a copy found missing or corrupt).
    nudge: Notify,
    /// Blob ids being written and not yet in the catalog: not strays.
    in_flight: Mutex<HashSet<String>>,
    /// This catalog's id, marked on every backend it owns (see `claim`).
    owner: String,
}

impl MirrorStore {
    /// Opens the catalog and staging area under `data_dir` and starts the repair loop.
    pub async fn open(data_dir: &Path, mirrors: Vec<Mirror>, options: MirrorOptions) -> Result<Self> {
        if mirrors.is_empty() {
            return Err(Setup::NoBackends.into());
        }
        let labels: HashSet<_> = mirrors.iter().map(|m| m.label.as_str()).collect();
        if labels.len() != mirrors.len() {
            return Err(Setup::BackendListedTwice.into());
        }
        // The upload area's lock also keeps a second relay off this catalog.
        let uploads = UploadArea::open(data_dir.join("staging")).await?;
        let catalog_dir = data_dir.join("catalog");
        let owner = claim(&catalog_dir, &mirrors, options.take_over).await?;
        if !Catalog::exists(&catalog_dir)
            && let Some(records) = rebuild::from_mirrors(&mirrors).await?
        {
            let objects = records.iter().filter(|r| matches!(r, Record::Object { .. })).count();
            tracing::info!(
                objects,
                "no catalog in the data dir: rebuilt it from the blobs on the mirrors"
            );
            let dir = catalog_dir.clone();
            tokio::task::spawn_blocking(move || Catalog::seed(&dir, &records))
                .await
                .map_err(io::Error::other)??;
        }
        let catalog = tokio::task::spawn_blocking(move || Catalog::open(&catalog_dir))
            .await
            .map_err(io::Error::other)??;
        // A relay killed between deleting a bucket and removing its uploads left them here.
        for bucket in uploads.buckets().await? {
            if catalog.read().bucket(&bucket).is_err() {
                uploads.remove_bucket(&bucket).await;
            }
        }
        let inner = Arc::new(Inner {
            mirrors,
            catalog: Arc::new(catalog),
            uploads,
            options,
            nudge: Notify::new(),
            in_flight: Mutex::default(),
            owner,
        });
        {
            let state = inner.catalog.read();
            let objects = state.objects().count();
            tracing::info!(
                mirrors = inner.mirrors.len(),
                buckets = state.buckets.len(),
                objects,
                "mirror set opened"
            );
        }
        let repair = tokio::spawn(repair::run(inner.clone()));
        let scrub = tokio::spawn(scrub::run(inner.clone(), data_dir.join("catalog")));
        Ok(Self { inner, repair, scrub })
    }

    /// What each mirror holds and lacks, as far as the catalog knows.
    pub fn status(&self) -> Vec<MirrorStatus> {
        self.inner.status()
    }

    /// Objects in the catalog and their bytes (each stored once per mirror), from the
    /// listing indexes' running totals: cheap enough for every write.
    pub fn usage(&self) -> (u64, u64) {
        let state = self.inner.catalog.read();
        state.buckets.values().fold((0, 0), |(objects, bytes), b| {
            let (o, s) = b.index.usage();
            (objects + o, bytes + s)
        })
    }

    /// Bytes stored in one bucket, one copy counted (0 for a bucket that does not exist).
    pub fn bucket_bytes(&self, bucket: &str) -> u64 {
        let state = self.inner.catalog.read();
        state.buckets.get(bucket).map_or(0, |b| b.index.usage().1)
    }

    /// Objects each labelled backend lacks, from the catalog under `data_dir`, without opening
    /// it (the relay may be running).
    pub async fn pending_repairs(data_dir: &Path, labels: Vec<String>) -> Result<Vec<(String, u64)>> {
        let dir = data_dir.join("catalog");
        tokio::task::spawn_blocking(move || {
            let state = Catalog::peek(&dir)?;
            Ok(labels
                .into_iter()
                .map(|label| {
                    let missing = state.objects().filter(|(_, o)| !o.holders.contains(&label)).count();
                    (label, missing as u64)
                })
                .collect())
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Drop for MirrorStore {
    fn drop(&mut self) {
        self.repair.abort();
        self.scrub.abort();
    }
}

impl Inner {
    fn status(&self) -> Vec<MirrorStatus> {
        let state = self.catalog.read();
        self.mirrors
            .iter()
            .map(|m| {
                let (mut objects, mut bytes, mut pending) = (0, 0, 0);
                for (_, o) in state.objects() {
                    if o.holders.contains(&m.label) {
                        objects += 1;
                        bytes += o.meta.size;
                    } else {
                        pending += 1;
                    }
                }
                MirrorStatus {
                    label: m.label.clone(),
                    up: m.health.is_up(),
                    latency: m.health.latency(),
                    objects,
                    bytes,
                    pending_repairs: pending,
                    copies_found_missing: m.found_missing.load(std::sync::atomic::Ordering::Relaxed),
                }
            })
            .collect()
    }

    fn mirror_index(&self, label: &str) -> Option<usize> {
        self.mirrors.iter().position(|m| m.label == label)
    }

    fn mark_down(&self, i: usize, error: &StoreError) {
        if self.mirrors[i].health.mark_down() {
            tracing::warn!(mirror = %self.mirrors[i].label, %error, "mirror is down; skipping it until it answers again");
            // The repair loop probes a down mirror every few seconds: start now, not at the
            // end of its current wait.
            self.nudge.notify_one();
        }
    }

    /// Holders to read from: up ones fastest first (in the configured order while their
    /// speed is unknown), then down ones as a last resort.
    fn read_order(&self, holders: &BTreeSet<String>) -> Vec<usize> {
        let mut order: Vec<usize> = holders.iter().filter_map(|h| self.mirror_index(h)).collect();
        order.sort_by_key(|&i| {
            let h = &self.mirrors[i].health;
            (!h.is_up(), h.latency(), i)
        });
        order
    }

    /// Deletes a blob from the given mirrors in the background; what fails is swept later.
    fn forget_blob(self: &Arc<Self>, blob: String, mirrors: Vec<usize>) {
        let this = self.clone();
        tokio::spawn(async move {
            let path = blob_path(&blob);
            for i in mirrors {
                if let Err(e) = this.mirrors[i].blobs.delete(&path).await {
                    tracing::debug!(mirror = %this.mirrors[i].label, error = %e, "deleting an old blob failed; the sweep will retry");
                }
            }
        });
    }

    fn holders_of(&self, labels: &BTreeSet<String>) -> Vec<usize> {
        labels.iter().filter_map(|l| self.mirror_index(l)).collect()
    }

    /// Records that mirror `i` does not have a good copy, and wakes the repair loop.
    fn copy_lost(self: &Arc<Self>, bucket: &str, key: &str, blob: &str, i: usize, why: &str) {
        tracing::warn!(mirror = %self.mirrors[i].label, why, "a mirror's copy is bad; repairing it");
        let record = Record::Holder {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            blob: blob.to_owned(),
            mirror: self.mirrors[i].label.clone(),
            has: false,
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.catalog.change(move |_| Ok((vec![record], ()))).await;
            this.nudge.notify_one();
        });
    }
}

#[async_trait::async_trait]
impl Store for MirrorStore {
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        check_bucket_name(bucket)?;
        let name = bucket.to_owned();
        self.inner
            .catalog
            .change(move |state| {
                if state.buckets.contains_key(&name) {
                    return Err(StoreError::BucketAlreadyExists);
                }
                Ok((
                    vec![Record::Bucket {
                        name,
                        created_ms: now_ms(),
                    }],
                    (),
                ))
            })
            .await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        check_bucket_name(bucket).map_err(|_| StoreError::NoSuchBucket)?;
        let name = bucket.to_owned();
        self.inner
            .catalog
            .change(move |state| {
                if !state.bucket(&name)?.objects.is_empty() {
                    return Err(StoreError::BucketNotEmpty);
                }
                Ok((vec![Record::BucketGone { name }], ()))
            })
            .await?;
        // Pending uploads go with the bucket.
        self.inner.uploads.remove_bucket(bucket).await;
        Ok(())
    }

    async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo> {
        self.inner.catalog.read().bucket_info(bucket)
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let state = self.inner.catalog.read();
        state.buckets.keys().map(|name| state.bucket_info(name)).collect()
    }

    async fn get_bucket_doc(&self, bucket: &str, name: &str) -> Result<Option<Bytes>> {
        check_doc_name(name)?;
        Ok(self.inner.catalog.read().bucket(bucket)?.docs.get(name).cloned())
    }

    async fn put_bucket_doc(&self, bucket: &str, name: &str, doc: Option<Bytes>) -> Result<()> {
        check_doc_name(name)?;
        let (bucket, name) = (bucket.to_owned(), name.to_owned());
        self.inner
            .catalog
            .change(move |state| {
                state.bucket(&bucket)?;
                let doc = doc.map(|d| crate::digest::base64(&d));
                Ok((vec![Record::Doc { bucket, name, doc }], ()))
            })
            .await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        check_key(key)?;
        {
            let state = self.inner.catalog.read();
            let b = state.bucket(bucket)?;
            if opts.if_none_match_any && b.objects.contains_key(key) {
                return Err(StoreError::PreconditionFailed); // early refusal; re-checked at commit
            }
        }
        let blob = uuid::Uuid::new_v4().simple().to_string();
        let _in_flight = InFlight::new(&self.inner, &blob);
        let algorithms = unique_algorithms(&opts);
        let checks = opts.clone();
        let key = key.to_owned();
        let recorded = opts.recorded_time_ms;
        self.inner
            .write_object(
                bucket,
                &blob,
                body,
                Digester::new(&algorithms),
                move |digester| {
                    let digests = digester.finish();
                    verify_digests(&digests, &checks)?;
                    Ok(ObjectMeta {
                        key,
                        size: digests.len,
                        etag: digests.etag(),
                        last_modified_ms: recorded.unwrap_or_else(now_ms),
                        attrs,
                        checksums: digests.checksums,
                        part_sizes: Vec::new(),
                        chunks: None,
                    })
                },
                opts,
            )
            .await
    }

    async fn get_object(&self, bucket: &str, key: &str, range: Option<ByteRange>) -> Result<GetResult> {
        let record = self.inner.catalog.read().object(bucket, key)?.clone();
        let meta = record.meta.clone();
        let size = meta.size;
        let span = match range {
            Some(r) => r.resolve(size).ok_or(StoreError::InvalidRange { size })?,
            None => 0..size,
        };
        let body = self.inner.read_object(bucket, record, span.clone()).await?;
        Ok(GetResult { meta, span, body })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        Ok(self.inner.catalog.read().object(bucket, key)?.meta.clone())
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        check_key(key)?;
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let gone = self
            .inner
            .catalog
            .change(move |state| {
                let Some(o) = state.bucket(&b)?.objects.get(&k) else {
                    return Ok((vec![], None));
                };
                let old = (o.blob.clone(), o.holders.clone());
                Ok((vec![Record::ObjectGone { bucket: b, key: k }], Some(old)))
            })
            .await?;
        if let Some((blob, holders)) = gone {
            self.inner.forget_blob(blob, self.inner.holders_of(&holders));
        }
        Ok(())
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        Ok(self.inner.catalog.read().bucket(bucket)?.index.list(query))
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        checksum: Option<crate::UploadChecksum>,
    ) -> Result<String> {
        self.inner.catalog.read().bucket(bucket)?;
        check_key(key)?;
        self.inner.uploads.create(bucket, key, attrs, checksum).await
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
        self.inner.catalog.read().bucket(bucket)?;
        self.inner
            .uploads
            .upload_part(bucket, key, upload_id, part_number, body, opts)
            .await
    }

    async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadInfo> {
        self.inner.catalog.read().bucket(bucket)?;
        self.inner.uploads.list_parts(bucket, key, upload_id).await
    }

    /// Streams the parts straight from the upload area to the mirrors. The upload is removed
    /// only once they hold the object: a completion they refuse (503) leaves it whole, so the
    /// client's retry of the same completion sends it out again instead of finding
    /// NoSuchUpload and uploading every part anew.
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        mut opts: PutOptions,
    ) -> Result<ObjectMeta> {
        {
            let state = self.inner.catalog.read();
            let current = state.bucket(bucket)?.objects.get(key);
            check_write_conditions(current.map(|o| o.meta.etag.as_str()), &opts)?;
        }
        // The client's checksums are checked against the parts' (the composite one is not the
        // body's), not again when the body goes out to the mirrors.
        let expected = std::mem::take(&mut opts.expected);
        let assembly = self
            .inner
            .uploads
            .assemble(bucket, key, upload_id, parts, &expected)
            .await?;
        let (meta, body) = assembly.into_body();
        let meta = match self.inner.write_known(bucket, meta, body, opts).await {
            Ok(meta) => meta,
            // A completion of the same upload won the race and removed the parts while this
            // one streamed them: NoSuchUpload, which the gateway answers with what it made.
            Err(_) if !self.inner.uploads.exists(bucket, upload_id).await => return Err(StoreError::NoSuchUpload),
            Err(e) => return Err(e),
        };
        self.inner.uploads.remove(bucket, upload_id).await;
        Ok(meta)
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.inner.catalog.read().bucket(bucket)?;
        self.inner.uploads.abort(bucket, key, upload_id).await
    }

    async fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadSummary>> {
        self.inner.catalog.read().bucket(bucket)?;
        self.inner.uploads.list(bucket, prefix).await
    }
}
