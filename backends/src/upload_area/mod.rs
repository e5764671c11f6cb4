//! Multipart uploads in progress, on local disk: the embedded store keeps its uploads here, and
//! so does a mirror set (under its data dir), whose parts wait on the relay's disk until the
//! completion streams them out to the mirrors.
//!
//! Each part is a durable blob file in `<root>/buckets/<bucket>/uploads/<id>/`. Completing an
//! upload checks the client's part list against the parts and gives an [`Assembly`]: the
//! object's metadata and the parts as they were checked. The embedded store then renames the
//! upload directory into its blobs (not a byte copied) and checks the parts there once more;
//! a mirror set streams the parts to the mirrors, each checked as it is opened, and removes
//! the upload only once they hold the object, so a completion they refuse leaves the upload
//! whole for the client's retry.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::conditions::{unique_algorithms, verify_digests};
use crate::error::{InvalidArgument, Result, StoreError};
use crate::fs::blob;
use crate::fs::layout::{Layout, part_file_name};
use crate::model::*;
use crate::names::check_upload_id;
use crate::store::ByteStream;

mod assembly;
pub(crate) use assembly::{Assembly, CheckedParts};

/// In every upload's directory; a blob directory holding it is an upload not yet published.
pub(crate) const UPLOAD_FILE: &str = "upload.json";
const MAX_PART_NUMBER: u32 = 10_000;

#[derive(Serialize, Deserialize)]
struct UploadFile {
    key: String,
    attrs: ObjectAttrs,
    #[serde(default)]
    checksum: Option<ChecksumAlgorithm>,
    /// The whole object's CRC rather than the composite checksum.
    #[serde(default)]
    full_object: bool,
    initiated_ms: i64,
}

impl UploadFile {
    fn upload_checksum(&self) -> Option<UploadChecksum> {
        self.checksum.map(|algorithm| UploadChecksum {
            algorithm,
            full_object: self.full_object,
        })
    }
}

/// The uploads under one root (its `tmp/` is where parts are staged before they are renamed
/// into place, and must exist).
#[derive(Debug)]
pub(crate) struct UploadArea {
    layout: Layout,
    /// Held by an area of its own (see [`UploadArea::open`]), which makes its own directories.
    own_lock: Option<std::fs::File>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

impl UploadArea {
    /// The upload area inside a store that owns `layout`'s root (the embedded store).
    pub fn new(layout: Layout) -> Self {
        Self { layout, own_lock: None }
    }

    /// An upload area of its own at `root` (a mirror set's): takes the root's lock, which also
    /// keeps a second relay off the data dir, empties its `tmp/`, and removes what the staging
    /// store of earlier versions kept there besides uploads (objects assembled before they
    /// went out to the mirrors).
    pub async fn open(root: PathBuf) -> Result<Self> {
        let lock = crate::fs::lock_store(&root).await?;
        let layout = Layout::new(root);
        let area = layout.clone();
        blocking(move || {
            let tmp = area.tmp_dir();
            match std::fs::remove_dir_all(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            ensure_durable_dir(&tmp)?;
            ensure_durable_dir(&area.buckets_dir())?;
            for bucket in std::fs::read_dir(area.buckets_dir())? {
                let bucket = bucket?;
                if !bucket.file_type()?.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(bucket.path())? {
                    let entry = entry?;
                    if entry.file_name() == "uploads" {
                        continue;
                    }
                    if entry.file_type()?.is_dir() {
                        std::fs::remove_dir_all(entry.path())?;
                    } else {
                        std::fs::remove_file(entry.path())?;
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok(Self {
            layout,
            own_lock: Some(lock),
        })
    }

    /// Where an upload's parts are.
    pub fn dir(&self, bucket: &str, upload_id: &str) -> PathBuf {
        self.layout.upload_dir(bucket, upload_id)
    }

    pub async fn create(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        checksum: Option<UploadChecksum>,
    ) -> Result<String> {
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let staging = self.layout.tmp_file();
        let uploads = self.layout.uploads_dir(bucket);
        let target = self.layout.upload_dir(bucket, &upload_id);
        let file = UploadFile {
            key: key.to_owned(),
            attrs,
            checksum: checksum.map(|c| c.algorithm),
            full_object: checksum.is_some_and(|c| c.full_object),
            initiated_ms: now_ms(),
        };
        let own = self.own_lock.is_some();
        blocking(move || {
            if own {
                ensure_durable_dir(&uploads)?;
            }
            std::fs::create_dir(&staging)?;
            let json = serde_json::to_vec(&file).map_err(io::Error::other)?;
            std::fs::write(staging.join(UPLOAD_FILE), json)?;
            std::fs::File::open(staging.join(UPLOAD_FILE))?.sync_data()?;
            blob::sync_dir(&staging)?;
            rename_into(&staging, &target, StoreError::NoSuchBucket)
        })
        .await?;
        Ok(upload_id)
    }

    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartMeta> {
        check_upload_id(upload_id)?;
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(InvalidArgument::PartNumber { max: MAX_PART_NUMBER }.into());
        }
        let dir = self.dir(bucket, upload_id);
        let (read_dir, owned_key) = (dir.clone(), key.to_owned());
        let upload = blocking(move || read_upload(&read_dir, &owned_key)).await?;
        let mut algorithms = unique_algorithms(&opts);
        if let Some(a) = upload.checksum.filter(|a| !algorithms.contains(a)) {
            algorithms.push(a);
        }
        let staged = blob::stage(self.layout.tmp_file(), body, algorithms).await?;
        verify_digests(&staged.digests, &opts)?;
        let part = PartMeta {
            part_number,
            size: staged.digests.len,
            etag: staged.digests.etag(),
            last_modified_ms: now_ms(),
            checksums: staged.digests.checksums.clone(),
        };
        let sealed = staged.seal(&part).await?;
        let target = dir.join(part_file_name(part_number));
        blocking(move || {
            // The upload may have been completed or aborted meanwhile.
            rename_into(sealed.path(), &target, StoreError::NoSuchUpload)?;
            sealed.disarm();
            Ok(())
        })
        .await?;
        Ok(part)
    }

    pub async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadInfo> {
        check_upload_id(upload_id)?;
        let dir = self.dir(bucket, upload_id);
        let key = key.to_owned();
        blocking(move || {
            let upload = read_upload(&dir, &key)?;
            let parts = read_parts(&dir)?;
            Ok(UploadInfo {
                checksum: upload.upload_checksum(),
                key: upload.key,
                attrs: upload.attrs,
                initiated_ms: upload.initiated_ms,
                parts,
            })
        })
        .await
    }

    /// Checks the client's part list (and its checksums of the whole, `expected`) against
    /// the parts; the upload itself is left as it is, for the caller to publish.
    pub async fn assemble(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        requested: &[CompletedPart],
        expected: &Checksums,
    ) -> Result<Assembly> {
        check_upload_id(upload_id)?;
        if requested.is_empty() {
            return Err(InvalidArgument::NoParts.into());
        }
        if requested.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
            return Err(StoreError::InvalidPartOrder);
        }
        let dir = self.dir(bucket, upload_id);
        let (key, requested) = (key.to_owned(), requested.to_vec());
        let expected = expected.clone();
        blocking(move || {
            let upload = read_upload(&dir, &key)?;
            let available = read_parts(&dir)?;
            assembly::check(dir, key, upload, available, &requested, &expected)
        })
        .await
    }

    pub async fn abort(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        check_upload_id(upload_id)?;
        let dir = self.dir(bucket, upload_id);
        let graveyard = self.layout.tmp_file();
        let key = key.to_owned();
        blocking(move || {
            read_upload(&dir, &key)?;
            blob::durable_rename(&dir, &graveyard)?;
            Ok(std::fs::remove_dir_all(graveyard)?)
        })
        .await
    }

    /// Whether the upload is still here (not completed, aborted or expired).
    pub async fn exists(&self, bucket: &str, upload_id: &str) -> bool {
        let file = self.dir(bucket, upload_id).join(UPLOAD_FILE);
        blocking(move || Ok(file.exists())).await.unwrap_or(false)
    }

    /// Removes an upload whose object is published. A failure leaves it to expire.
    pub async fn remove(&self, bucket: &str, upload_id: &str) {
        let dir = self.dir(bucket, upload_id);
        let graveyard = self.layout.tmp_file();
        let removed = blocking(move || {
            blob::durable_rename(&dir, &graveyard)?;
            Ok(std::fs::remove_dir_all(graveyard)?)
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "could not remove a completed upload's parts; they expire with unfinished uploads");
        }
    }

    /// Removes every upload of a bucket that is gone.
    pub async fn remove_bucket(&self, bucket: &str) {
        let dir = self.layout.bucket_dir(bucket);
        let _ = blocking(move || match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        })
        .await;
    }

    /// The buckets that have uploads here (or had: an emptied directory counts).
    pub async fn buckets(&self) -> Result<Vec<String>> {
        let dir = self.layout.buckets_dir();
        blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir()
                    && let Some(name) = entry.file_name().to_str()
                {
                    out.push(name.to_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadSummary>> {
        let dir = self.layout.uploads_dir(bucket);
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut out = Vec::new();
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            for entry in entries {
                let entry = entry?;
                let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if check_upload_id(&id).is_err() {
                    continue;
                }
                let Ok(bytes) = std::fs::read(entry.path().join(UPLOAD_FILE)) else {
                    continue;
                };
                let Ok(upload) = serde_json::from_slice::<UploadFile>(&bytes) else {
                    continue;
                };
                if upload.key.starts_with(&prefix) {
                    out.push(UploadSummary {
                        key: upload.key,
                        upload_id: id,
                        initiated_ms: upload.initiated_ms,
                    });
                }
            }
            // Upload ids break ties so that the order, and so paging, is total.
            out.sort_by(|a, b| {
                (a.key.as_str(), a.initiated_ms, a.upload_id.as_str()).cmp(&(
                    b.key.as_str(),
                    b.initiated_ms,
                    b.upload_id.as_str(),
                ))
            });
            Ok(out)
        })
        .await
    }
}

/// Creates `dir` and any missing parents, each entry made durable in its parent.
fn ensure_durable_dir(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let parent = dir.parent().ok_or_else(|| io::Error::other("no existing ancestor"))?;
    ensure_durable_dir(parent)?;
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    blob::sync_dir(parent)
}

/// Renames `from` to `to` durably without creating `to`'s parent: a parent removed meanwhile
/// (the upload completed or aborted, its bucket deleted) makes the rename `gone` instead of
/// bringing the directory back.
fn rename_into(from: &Path, to: &Path, gone: StoreError) -> Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(gone),
        Err(e) => return Err(e.into()),
    }
    Ok(blob::sync_dir(to.parent().expect("a path in the area has a parent"))?)
}

/// Reads `upload.json`, refusing an id that is malformed, unknown or belongs to another key.
fn read_upload(dir: &Path, key: &str) -> Result<UploadFile> {
    let bytes = match std::fs::read(dir.join(UPLOAD_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NoSuchUpload),
        Err(e) => return Err(e.into()),
    };
    let upload: UploadFile =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("upload.json: {e}")))?;
    if upload.key != key {
        return Err(StoreError::NoSuchUpload);
    }
    Ok(upload)
}

/// The upload's parts, by part number (each file closed once its trailer is read).
fn read_parts(dir: &Path) -> Result<Vec<PartMeta>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with("part-") {
            continue;
        }
        if let Some((_, part)) = blob::open_with_meta::<PartMeta>(&entry.path())? {
            parts.push(part);
        }
    }
    parts.sort_by_key(|p| p.part_number);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;

    pub(super) fn body(bytes: &[u8]) -> ByteStream {
        let chunk = Bytes::copy_from_slice(bytes);
        Box::pin(futures::stream::once(async move { Ok(chunk) }))
    }

    pub(super) async fn collect(mut body: ByteStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    pub(super) async fn part(area: &UploadArea, id: &str, n: u32, bytes: &[u8]) -> CompletedPart {
        let meta = area
            .upload_part("b", "k", id, n, body(bytes), PutOptions::default())
            .await
            .unwrap();
        CompletedPart {
            part_number: n,
            etag: meta.etag,
        }
    }

    /// An area of its own keeps its uploads across a restart, and clears out the objects the
    /// staging store of earlier versions assembled next to them.
    #[tokio::test]
    async fn an_own_area_keeps_uploads_and_drops_old_staged_objects() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("area");
        let id = {
            let area = UploadArea::open(root.clone()).await.unwrap();
            let id = area.create("b", "k", ObjectAttrs::default(), None).await.unwrap();
            part(&area, &id, 1, b"kept").await;
            id
        };
        let staged = root.join("buckets/b/objects/ab/cdef");
        std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
        std::fs::write(&staged, b"an old staged object").unwrap();
        std::fs::write(root.join("buckets/b/bucket.json"), b"{}").unwrap();

        let area = UploadArea::open(root.clone()).await.unwrap();
        assert!(!root.join("buckets/b/objects").exists());
        assert!(!root.join("buckets/b/bucket.json").exists());
        let parts = area.list_parts("b", "k", &id).await.unwrap().parts;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].size, 4);
        let listed = area.list("b", "").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(area.list("other", "").await.unwrap().is_empty());
    }
}
