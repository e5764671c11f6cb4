//! The embedded default store: sealed blobs on local disk, durable before acknowledged.
//!
//! Why not OpenDAL's `fs` service here: it does not fsync the directory after its rename, so an
//! acknowledged PUT can vanish on power loss, and it has no place for metadata next to the
//! bytes. This store writes `tmp → fdatasync → rename → fsync(dir)` with data and metadata in
//! one file (see [`blob`]). docs/ARCHITECTURE.md has the full picture.

pub(crate) mod blob;
mod bucket;
pub(crate) mod layout;
mod multipart;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use self::blob::Segment;
use self::bucket::Bucket;
use self::layout::Layout;
use crate::conditions::{check_write_conditions, unique_algorithms, verify_digests};
use crate::digest::Digests;
use crate::error::{Result, StoreError};
use crate::index::Entry;
use crate::model::*;
use crate::names::{check_bucket_name, check_doc_name, check_key};
use crate::store::{ByteStream, Store};
use crate::upload_area::{CheckedParts, UploadArea};

/// What an object file's trailer holds.
#[derive(Debug, Serialize, Deserialize)]
struct StoredObject {
    v: u32,
    #[serde(flatten)]
    meta: ObjectMeta,
    /// Set for multipart objects: the body is the parts in `blobs/<blob>/`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    blob: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    parts: Vec<u32>,
}

/// How long `open` waits for a previous owner (a relay restarting in place) to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Takes the store's exclusive lock, waiting briefly for a previous owner to let go.
pub(crate) async fn lock_store(root: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(root)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(".lock"))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::InUse(root.to_owned())),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

/// Local-disk [`Store`].
pub struct FsStore {
    layout: Layout,
    uploads: UploadArea,
    buckets: RwLock<HashMap<String, Arc<Bucket>>>,
    /// Held while the store is open: a second relay on the same directory would wipe this
    /// one's staging files on start and then serve a stale index.
    _lock: std::fs::File,
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`: wipes staging leftovers, removes
    /// blobs no object refers to, and rebuilds the listing index from the object files.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let layout = Layout::new(root.into());
        let lock = lock_store(layout.root()).await?;
        let scan_layout = layout.clone();
        let buckets = tokio::task::spawn_blocking(move || bucket::load_all(&scan_layout))
            .await
            .map_err(io::Error::other)??;
        let objects: usize = buckets
            .values()
            .map(|b| b.index.read().expect("index lock").len())
            .sum();
        tracing::info!(buckets = buckets.len(), objects, "local store opened");
        Ok(Self {
            uploads: UploadArea::new(layout.clone()),
            layout,
            buckets: RwLock::new(buckets),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Objects stored and their bytes, over every bucket (the mailbox's included), from the
    /// in-memory index: cheap enough for every metrics scrape.
    pub fn usage(&self) -> (u64, u64) {
        let buckets = self.buckets.read().expect("buckets lock");
        buckets.values().fold((0, 0), |(objects, bytes), b| {
            let (o, s) = b.index.read().expect("index lock").usage();
            (objects + o, bytes + s)
        })
    }

    /// Bytes stored in one bucket (0 for a bucket that does not exist).
    pub fn bucket_bytes(&self, bucket: &str) -> u64 {
        let buckets = self.buckets.read().expect("buckets lock");
        buckets
            .get(bucket)
            .map_or(0, |b| b.index.read().expect("index lock").usage().1)
    }

    /// The names of a bucket's documents (for copying a bucket elsewhere).
    pub async fn bucket_doc_names(&self, bucket: &str) -> Result<Vec<String>> {
        self.bucket(bucket)?;
        let dir = self.layout.doc_file(bucket, "x");
        let dir = dir.parent().expect("docs dir").to_owned();
        let mut names = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    names.push(entry?.file_name().to_string_lossy().into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        names.sort();
        Ok(names)
    }

    fn bucket(&self, name: &str) -> Result<Arc<Bucket>> {
        check_bucket_name(name).map_err(|_| StoreError::NoSuchBucket)?;
        self.buckets
            .read()
            .expect("buckets lock")
            .get(name)
            .cloned()
            .ok_or(StoreError::NoSuchBucket)
    }

    fn new_object_meta(key: &str, digests: &Digests, attrs: ObjectAttrs, opts: &PutOptions) -> Result<ObjectMeta> {
        verify_digests(digests, opts)?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: digests.len,
            etag: digests.etag(),
            last_modified_ms: opts.recorded_time_ms.unwrap_or_else(now_ms),
            attrs,
            checksums: digests.checksums.clone(),
            part_sizes: Vec::new(),
            chunks: None,
        })
    }

    /// Makes a sealed staging file the object at `key`, atomically with the write conditions.
    /// Runs as its own task so a client hanging up mid-commit cannot leave disk and index
    /// disagreeing. A multipart object comes with the parts its completion checked.
    async fn commit(
        &self,
        bucket: Arc<Bucket>,
        stored: StoredObject,
        staged: blob::TmpGuard,
        opts: PutOptions,
        checked: Option<CheckedParts>,
    ) -> Result<ObjectMeta> {
        let target = self.layout.object_file(&bucket.name, &stored.meta.key);
        let layout = self.layout.clone();
        tokio::spawn(async move {
            let _gate = bucket.gate.read().await;
            if bucket.is_deleted() {
                return Err(StoreError::NoSuchBucket);
            }
            let _key_lock = bucket.lock_key(&stored.meta.key).await;
            let current = bucket.index.read().expect("index lock").get(&stored.meta.key).cloned();
            check_write_conditions(current.as_ref().map(|e| e.etag.as_str()), &opts)?;
            let from = staged.path().to_owned();
            let to = target.clone();
            let recorded = opts.recorded_time_ms;
            // A completed multipart upload's parts become the object's blob first; a crash
            // between the two renames leaves an unreferenced blob, removed on the next start.
            let blob_move = stored
                .blob
                .as_ref()
                .map(|id| (layout.upload_dir(&bucket.name, id), layout.blob_dir(&bucket.name, id)));
            tokio::task::spawn_blocking(move || -> Result<()> {
                if let Some((upload, blob)) = blob_move {
                    blob::durable_rename(&upload, &blob).map_err(|e| match e.kind() {
                        io::ErrorKind::NotFound => StoreError::NoSuchUpload,
                        _ => e.into(),
                    })?;
                    // No part can be renamed into the upload any more; one uploaded again
                    // since the check would change the bytes under the checked ETag. The
                    // upload goes back as it now is, for a completion naming the new ETag.
                    let unchanged = checked.map_or(Ok(()), |checked| match checked.first_changed(&blob)? {
                        Some(part) => Err(StoreError::InvalidPart(format!(
                            "part {part} was uploaded again while the upload was completing"
                        ))),
                        None => Ok(()),
                    });
                    if let Err(e) = unchanged {
                        blob::durable_rename(&blob, &upload)?;
                        return Err(e);
                    }
                }
                if let Some(ms) = recorded {
                    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
                    std::fs::File::options().write(true).open(&from)?.set_modified(at)?;
                }
                Ok(blob::durable_rename(&from, &to)?)
            })
            .await
            .map_err(io::Error::other)??;
            staged.disarm();
            let meta = stored.meta;
            let entry = Entry {
                size: meta.size,
                etag: meta.etag.clone(),
                last_modified_ms: meta.last_modified_ms,
                blob: stored.blob,
            };
            let old = bucket
                .index
                .write()
                .expect("index lock")
                .insert(meta.key.clone(), entry);
            if let Some(old_blob) = old.and_then(|e| e.blob) {
                remove_blob_dir(layout.blob_dir(&bucket.name, &old_blob)).await;
            }
            Ok(meta)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Opens an object's file and metadata, checking the key really is the one asked for.
    async fn open_object(&self, bucket: &str, key: &str) -> Result<(std::fs::File, StoredObject)> {
        self.bucket(bucket)?;
        check_key(key)?;
        let path = self.layout.object_file(bucket, key);
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || match blob::open_with_meta::<StoredObject>(&path)? {
            Some((file, stored)) if stored.meta.key == key => Ok((file, stored)),
            Some(_) => Err(StoreError::Corrupt("object file holds another key".into())),
            None => Err(StoreError::NoSuchKey),
        })
        .await
        .map_err(io::Error::other)?
    }
}

async fn remove_blob_dir(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

#[async_trait::async_trait]
impl Store for FsStore {
    async fn create_bucket(&self, name: &str) -> Result<()> {
        check_bucket_name(name)?;
        if self.buckets.read().expect("buckets lock").contains_key(name) {
            return Err(StoreError::BucketAlreadyExists);
        }
        let layout = self.layout.clone();
        let owned = name.to_owned();
        let created = tokio::task::spawn_blocking(move || bucket::create(&layout, &owned))
            .await
            .map_err(io::Error::other)??;
        let mut buckets = self.buckets.write().expect("buckets lock");
        if buckets.contains_key(name) {
            return Err(StoreError::BucketAlreadyExists);
        }
        buckets.insert(name.to_owned(), Arc::new(created));
        Ok(())
    }

    async fn delete_bucket(&self, name: &str) -> Result<()> {
        let bucket = self.bucket(name)?;
        let _gate = bucket.gate.write().await;
        if !bucket.index.read().expect("index lock").is_empty() {
            return Err(StoreError::BucketNotEmpty);
        }
        bucket.mark_deleted();
        self.buckets.write().expect("buckets lock").remove(name);
        let layout = self.layout.clone();
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || bucket::remove(&layout, &owned))
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }

    async fn head_bucket(&self, name: &str) -> Result<BucketInfo> {
        Ok(self.bucket(name)?.info())
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let mut all: Vec<_> = self
            .buckets
            .read()
            .expect("buckets lock")
            .values()
            .map(|b| b.info())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    async fn get_bucket_doc(&self, bucket: &str, name: &str) -> Result<Option<Bytes>> {
        self.bucket(bucket)?;
        check_doc_name(name)?;
        match tokio::fs::read(self.layout.doc_file(bucket, name)).await {
            Ok(bytes) => Ok(Some(bytes.into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_bucket_doc(&self, bucket: &str, name: &str, doc: Option<Bytes>) -> Result<()> {
        let b = self.bucket(bucket)?;
        check_doc_name(name)?;
        let _gate = b.gate.read().await;
        let path = self.layout.doc_file(bucket, name);
        let tmp = self.layout.tmp_file();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            match doc {
                Some(bytes) => {
                    std::fs::write(&tmp, &bytes)?;
                    std::fs::File::open(&tmp)?.sync_data()?;
                    blob::durable_rename(&tmp, &path)
                }
                None => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            }
        })
        .await
        .map_err(io::Error::other)??;
        Ok(())
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let b = self.bucket(bucket)?;
        check_key(key)?;
        if opts.if_none_match_any && b.index.read().expect("index lock").get(key).is_some() {
            return Err(StoreError::PreconditionFailed); // early refusal; re-checked at commit
        }
        let staged = blob::stage(self.layout.tmp_file(), body, unique_algorithms(&opts)).await?;
        let meta = Self::new_object_meta(key, &staged.digests, attrs, &opts)?;
        let stored = StoredObject {
            v: 1,
            meta,
            blob: None,
            parts: Vec::new(),
        };
        let sealed = staged.seal(&stored).await?;
        self.commit(b, stored, sealed, opts, None).await
    }

    async fn get_object(&self, bucket: &str, key: &str, range: Option<ByteRange>) -> Result<GetResult> {
        let (file, stored) = self.open_object(bucket, key).await?;
        let size = stored.meta.size;
        let span = match range {
            Some(r) => r.resolve(size).ok_or(StoreError::InvalidRange { size })?,
            None => 0..size,
        };
        let segments = match &stored.blob {
            None => vec![Segment {
                file,
                offset: span.start,
                len: span.end - span.start,
            }],
            Some(blob) => {
                let dir = self.layout.blob_dir(bucket, blob);
                let (parts, sizes) = (stored.parts.clone(), stored.meta.part_sizes.clone());
                let span = span.clone();
                tokio::task::spawn_blocking(move || multipart::segments(&dir, &parts, &sizes, span))
                    .await
                    .map_err(io::Error::other)??
            }
        };
        Ok(GetResult {
            meta: stored.meta,
            span,
            body: blob::read_segments(segments),
        })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        Ok(self.open_object(bucket, key).await?.1.meta)
    }

    async fn object_size(&self, bucket: &str, key: &str) -> Option<u64> {
        let b = self.bucket(bucket).ok()?;
        b.index.read().expect("index lock").get(key).map(|e| e.size)
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        let b = self.bucket(bucket)?;
        check_key(key)?;
        let path = self.layout.object_file(bucket, key);
        let layout = self.layout.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            let _gate = b.gate.read().await;
            let _key_lock = b.lock_key(&key).await;
            if b.index.read().expect("index lock").get(&key).is_none() {
                return Ok(());
            }
            tokio::task::spawn_blocking(move || -> io::Result<()> {
                std::fs::remove_file(&path)?;
                blob::sync_dir(path.parent().expect("object has a parent"))
            })
            .await
            .map_err(io::Error::other)??;
            let old = b.index.write().expect("index lock").remove(&key);
            if let Some(blob) = old.and_then(|e| e.blob) {
                remove_blob_dir(layout.blob_dir(&b.name, &blob)).await;
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        Ok(self.bucket(bucket)?.index.read().expect("index lock").list(query))
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        checksum: Option<crate::UploadChecksum>,
    ) -> Result<String> {
        self.bucket(bucket)?;
        check_key(key)?;
        self.uploads.create(bucket, key, attrs, checksum).await
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
        self.bucket(bucket)?;
        self.uploads
            .upload_part(bucket, key, upload_id, part_number, body, opts)
            .await
    }

    async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadInfo> {
        self.bucket(bucket)?;
        self.uploads.list_parts(bucket, key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let b = self.bucket(bucket)?;
        let assembly = self
            .uploads
            .assemble(bucket, key, upload_id, parts, &opts.expected)
            .await?;
        let (meta, parts, checked) = assembly.into_parts();
        let keep = parts.clone();
        let (stored, sealed) = multipart::manifest(&self.layout, upload_id, meta, parts).await?;
        let meta = self.commit(b, stored, sealed, opts, Some(checked)).await?;
        multipart::prune_blob(self.layout.blob_dir(bucket, upload_id), keep).await;
        Ok(meta)
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.bucket(bucket)?;
        self.uploads.abort(bucket, key, upload_id).await
    }

    async fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadSummary>> {
        self.bucket(bucket)?;
        self.uploads.list(bucket, prefix).await
    }
}
