//! One bucket on disk: its directory, its listing index and its write locks.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::{Mutex, MutexGuard};

use super::StoredObject;
use super::blob;
use super::layout::Layout;
use crate::error::{Result, StoreError};
use crate::index::{Entry, Index};
use crate::model::{BucketInfo, now_ms};
use crate::names::{check_bucket_name, check_upload_id};
use crate::upload_area::UPLOAD_FILE;

/// Writes to different keys commit in parallel; writes to one key take turns.
const KEY_LOCK_STRIPES: usize = 64;

#[derive(Serialize, Deserialize)]
struct BucketFile {
    created_ms: i64,
}

pub(crate) struct Bucket {
    pub name: String,
    created_ms: i64,
    pub index: RwLock<Index>,
    /// Object commits hold it shared; deleting the bucket holds it exclusively.
    pub gate: tokio::sync::RwLock<()>,
    deleted: AtomicBool,
    key_locks: Vec<Mutex<()>>,
}

impl Bucket {
    fn new(name: String, created_ms: i64, index: Index) -> Self {
        Self {
            name,
            created_ms,
            index: RwLock::new(index),
            gate: tokio::sync::RwLock::new(()),
            deleted: AtomicBool::new(false),
            key_locks: (0..KEY_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub fn info(&self) -> BucketInfo {
        BucketInfo {
            name: self.name.clone(),
            created: SystemTime::UNIX_EPOCH + Duration::from_millis(self.created_ms.max(0) as u64),
        }
    }

    pub async fn lock_key(&self, key: &str) -> MutexGuard<'_, ()> {
        let stripe = sha2::Sha256::digest(key.as_bytes())[0] as usize % KEY_LOCK_STRIPES;
        self.key_locks[stripe].lock().await
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }
}

/// Creates the bucket directory atomically (built in staging, then renamed into place).
pub(crate) fn create(layout: &Layout, name: &str) -> Result<Bucket> {
    let staging = layout.tmp_file();
    std::fs::create_dir(&staging)?;
    for sub in ["objects", "uploads", "blobs", "docs"] {
        std::fs::create_dir(staging.join(sub))?;
    }
    let created_ms = now_ms();
    let json = serde_json::to_vec(&BucketFile { created_ms }).map_err(io::Error::other)?;
    std::fs::write(staging.join("bucket.json"), json)?;
    std::fs::File::open(staging.join("bucket.json"))?.sync_data()?;
    blob::sync_dir(&staging)?;
    let target = layout.bucket_dir(name);
    if target.exists() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(StoreError::BucketAlreadyExists);
    }
    blob::durable_rename(&staging, &target)?;
    Ok(Bucket::new(name.to_owned(), created_ms, Index::default()))
}

/// Moves the bucket out of sight in one rename, then deletes it.
pub(crate) fn remove(layout: &Layout, name: &str) -> io::Result<()> {
    let graveyard = layout.tmp_file();
    blob::durable_rename(&layout.bucket_dir(name), &graveyard)?;
    std::fs::remove_dir_all(graveyard)
}

/// Start-up: clean staging, then load every bucket and rebuild its index from the object files.
pub(crate) fn load_all(layout: &Layout) -> Result<HashMap<String, std::sync::Arc<Bucket>>> {
    let tmp = layout.tmp_dir();
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    std::fs::create_dir_all(layout.buckets_dir())?;
    blob::sync_dir(layout.root())?;

    let mut buckets = HashMap::new();
    for entry in std::fs::read_dir(layout.buckets_dir())? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_bucket_name(&name).is_err() {
            tracing::warn!("ignoring a directory under buckets/ that is not a valid bucket name");
            continue;
        }
        if !settle_bucket_file(layout, &name)? {
            continue;
        }
        let bucket = load_bucket(layout, &name)?;
        buckets.insert(name, std::sync::Arc::new(bucket));
    }
    Ok(buckets)
}

/// Whether `buckets/<name>/` is a bucket. A bucket is made whole in staging (with its
/// `objects/`, `uploads/`, `blobs/` and `docs/`) and renamed into place, so a directory
/// without `bucket.json` was not made by creating a bucket: one without `objects/` is what an
/// upload of a deleted bucket left behind (older versions could recreate `uploads/<id>/`),
/// and is removed; any other lost the file, which is written again rather than hiding what
/// the bucket holds or refusing to start.
fn settle_bucket_file(layout: &Layout, name: &str) -> Result<bool> {
    let dir = layout.bucket_dir(name);
    let file = dir.join("bucket.json");
    if file.exists() || !dir.is_dir() {
        return Ok(dir.is_dir());
    }
    if !dir.join("objects").exists() {
        tracing::warn!("removing a directory under buckets/ that is not a bucket (left by a deleted bucket)");
        std::fs::remove_dir_all(&dir)?;
        blob::sync_dir(&layout.buckets_dir())?;
        return Ok(false);
    }
    tracing::warn!("a bucket directory had lost its bucket.json; writing it again");
    let created = std::fs::metadata(&dir)?
        .modified()
        .unwrap_or_else(|_| SystemTime::now());
    let created_ms = created
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let staging = layout.tmp_file();
    let json = serde_json::to_vec(&BucketFile { created_ms }).map_err(io::Error::other)?;
    std::fs::write(&staging, json)?;
    std::fs::File::open(&staging)?.sync_data()?;
    blob::durable_rename(&staging, &file)?;
    Ok(true)
}

fn load_bucket(layout: &Layout, name: &str) -> Result<Bucket> {
    let dir = layout.bucket_dir(name);
    let file: BucketFile = serde_json::from_slice(&std::fs::read(dir.join("bucket.json"))?)
        .map_err(|e| StoreError::Corrupt(format!("bucket.json: {e}")))?;
    let mut index = Index::default();
    let objects = dir.join("objects");
    for shard in read_dir_if_exists(&objects)? {
        for obj in std::fs::read_dir(shard?.path())? {
            let path = obj?.path();
            match blob::open_with_meta::<StoredObject>(&path) {
                Ok(Some((_, stored))) => {
                    let entry = Entry {
                        size: stored.meta.size,
                        etag: stored.meta.etag,
                        last_modified_ms: stored.meta.last_modified_ms,
                        blob: stored.blob,
                    };
                    index.insert(stored.meta.key, entry);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable object file"),
            }
        }
    }
    // Blobs no object refers to are leftovers of a crash between two renames. One that still
    // holds its upload.json is an upload whose completion never committed: it goes back to
    // `uploads/` for the client's retry, instead of taking the parts it was told were stored.
    let referenced: HashSet<&str> = index.blobs().collect();
    for blob_dir in read_dir_if_exists(&dir.join("blobs"))? {
        let blob_dir = blob_dir?;
        let id = blob_dir.file_name().to_str().map(str::to_owned);
        if id.as_deref().is_some_and(|id| referenced.contains(id)) {
            continue;
        }
        let upload = id
            .filter(|id| check_upload_id(id).is_ok())
            .map(|id| layout.upload_dir(name, &id));
        match upload {
            Some(upload) if blob_dir.path().join(UPLOAD_FILE).exists() && !upload.exists() => {
                blob::durable_rename(&blob_dir.path(), &upload)?;
            }
            _ => std::fs::remove_dir_all(blob_dir.path())?,
        }
    }
    Ok(Bucket::new(name.to_owned(), file.created_ms, index))
}

fn read_dir_if_exists(dir: &Path) -> io::Result<Box<dyn Iterator<Item = io::Result<std::fs::DirEntry>>>> {
    match std::fs::read_dir(dir) {
        Ok(it) => Ok(Box::new(it)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::fs::FsStore;
    use crate::model::{ObjectAttrs, PutOptions};
    use crate::store::Store;

    /// A relay starts whatever it finds under `buckets/`: a directory an upload of a deleted
    /// bucket left behind is cleared away (the bucket stays deleted), and a bucket that lost
    /// its `bucket.json` stays, with its objects, and so does an empty one.
    #[tokio::test]
    async fn bucket_directories_without_bucket_json_neither_stop_a_start_nor_lose_objects() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FsStore::open(dir.path()).await.unwrap();
            store.create_bucket("kept").await.unwrap();
            store.create_bucket("empty").await.unwrap();
            let body = Box::pin(futures::stream::once(async { Ok(Bytes::from_static(b"data")) }));
            let attrs = ObjectAttrs::default();
            let put = store.put_object("kept", "k", attrs, body, PutOptions::default());
            put.await.unwrap();
        }
        let buckets = dir.path().join("buckets");
        std::fs::remove_file(buckets.join("kept/bucket.json")).unwrap();
        std::fs::remove_file(buckets.join("empty/bucket.json")).unwrap();
        let stray = buckets.join("gone/uploads/0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(&stray).unwrap();
        std::fs::write(stray.join("upload.json"), b"{}").unwrap();

        let store = FsStore::open(dir.path()).await.unwrap();
        let names: Vec<String> = store
            .list_buckets()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["empty", "kept"]);
        assert_eq!(store.head_object("kept", "k").await.unwrap().size, 4);
        assert!(!buckets.join("gone").exists());
        assert!(buckets.join("kept/bucket.json").exists());
    }
}
