//! Multipart uploads on disk.
//!
//! Each part is a durable blob file in `uploads/<id>/`. Completing an upload does not copy a
//! byte: the upload directory is renamed to `blobs/<id>/` and the object file becomes a
//! manifest naming the parts, which reads then stream in order.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoredObject;
use super::blob::{self, Segment, TmpGuard};
use super::layout::{Layout, part_file_name};
use crate::conditions::{unique_algorithms, verify_digests};
use crate::digest::{composite_checksum, full_object_crc, hex_decode, multipart_etag};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::names::check_upload_id;
use crate::store::ByteStream;

const UPLOAD_FILE: &str = "upload.json";
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
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

pub(crate) async fn create(
    layout: &Layout,
    bucket: &str,
    key: &str,
    attrs: ObjectAttrs,
    checksum: Option<UploadChecksum>,
) -> Result<String> {
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let staging = layout.tmp_file();
    let target = layout.upload_dir(bucket, &upload_id);
    let file = UploadFile {
        key: key.to_owned(),
        attrs,
        checksum: checksum.map(|c| c.algorithm),
        full_object: checksum.is_some_and(|c| c.full_object),
        initiated_ms: now_ms(),
    };
    blocking(move || {
        std::fs::create_dir(&staging)?;
        let json = serde_json::to_vec(&file).map_err(io::Error::other)?;
        std::fs::write(staging.join(UPLOAD_FILE), json)?;
        std::fs::File::open(staging.join(UPLOAD_FILE))?.sync_data()?;
        blob::sync_dir(&staging)?;
        Ok(blob::durable_rename(&staging, &target)?)
    })
    .await?;
    Ok(upload_id)
}

pub(crate) async fn upload_part(
    layout: &Layout,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part_number: u32,
    body: ByteStream,
    opts: PutOptions,
) -> Result<PartMeta> {
    check_upload_id(upload_id)?;
    if !(1..=MAX_PART_NUMBER).contains(&part_number) {
        return Err(StoreError::InvalidArgument(format!(
            "part number must be between 1 and {MAX_PART_NUMBER}"
        )));
    }
    let dir = layout.upload_dir(bucket, upload_id);
    let (read_dir, owned_key) = (dir.clone(), key.to_owned());
    let upload = blocking(move || read_upload(&read_dir, &owned_key)).await?;
    let mut algorithms = unique_algorithms(&opts);
    if let Some(a) = upload.checksum.filter(|a| !algorithms.contains(a)) {
        algorithms.push(a);
    }
    let staged = blob::stage(layout.tmp_file(), body, algorithms).await?;
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
        if !target.parent().is_some_and(Path::exists) {
            return Err(StoreError::NoSuchUpload);
        }
        blob::durable_rename(sealed.path(), &target)?;
        sealed.disarm();
        Ok(())
    })
    .await?;
    Ok(part)
}

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

pub(crate) async fn list_parts(layout: &Layout, bucket: &str, key: &str, upload_id: &str) -> Result<UploadInfo> {
    check_upload_id(upload_id)?;
    let dir = layout.upload_dir(bucket, upload_id);
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

/// Validates the client's part list and writes the manifest to staging; the caller commits it.
pub(crate) async fn complete(
    layout: &Layout,
    bucket: &str,
    key: &str,
    upload_id: &str,
    requested: &[CompletedPart],
    expected: &Checksums,
) -> Result<(StoredObject, TmpGuard)> {
    check_upload_id(upload_id)?;
    if requested.is_empty() {
        return Err(StoreError::InvalidArgument(
            "at least one part must be specified".into(),
        ));
    }
    if requested.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(StoreError::InvalidPartOrder);
    }
    let dir = layout.upload_dir(bucket, upload_id);
    let (key, requested, upload_id) = (key.to_owned(), requested.to_vec(), upload_id.to_owned());
    let expected = expected.clone();
    let tmp = layout.tmp_file();
    blocking(move || {
        let upload = read_upload(&dir, &key)?;
        let available = read_parts(&dir)?;
        let mut chosen = Vec::with_capacity(requested.len());
        for (i, want) in requested.iter().enumerate() {
            let part = available
                .iter()
                .find(|p| p.part_number == want.part_number)
                .ok_or_else(|| StoreError::InvalidPart(format!("part {} was not uploaded", want.part_number)))?;
            if part.etag != want.etag.trim_matches('"') {
                return Err(StoreError::InvalidPart(format!(
                    "part {} has a different ETag",
                    want.part_number
                )));
            }
            if i + 1 < requested.len() && part.size < MIN_PART_SIZE {
                return Err(StoreError::EntityTooSmall(part.part_number));
            }
            chosen.push(part);
        }
        let md5s: Vec<[u8; 16]> = chosen
            .iter()
            .map(|p| {
                hex_decode(&p.etag)
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| StoreError::Corrupt("part etag".into()))
            })
            .collect::<Result<_>>()?;
        let mut checksums = Checksums::new();
        if let Some(algorithm) = upload.checksum {
            let raw: Option<Vec<Vec<u8>>> = chosen
                .iter()
                .map(|p| {
                    p.checksums
                        .get(&algorithm)
                        .and_then(|v| crate::digest::base64_decode(v))
                })
                .collect();
            if let Some(raw) = raw {
                let value = if upload.full_object {
                    let sizes: Vec<u64> = chosen.iter().map(|p| p.size).collect();
                    full_object_crc(algorithm, &raw, &sizes)
                        .ok_or_else(|| StoreError::Corrupt("a part's CRC".into()))?
                } else {
                    composite_checksum(algorithm, &raw)
                };
                checksums.insert(algorithm, value);
            }
        }
        // The client's checksum of what it uploaded, sent with the completion: a mismatch
        // completes nothing, and the upload stays for a corrected completion.
        // A composite value matches with or without its `-N` (clients send both).
        let bare = |v: &str| v.split_once('-').map_or(v, |(value, _)| value).to_owned();
        for (algorithm, want) in &expected {
            if checksums.get(algorithm).map(|v| bare(v)) != Some(bare(want)) {
                return Err(StoreError::ChecksumMismatch(algorithm.s3_name()));
            }
        }
        let meta = ObjectMeta {
            key,
            size: chosen.iter().map(|p| p.size).sum(),
            etag: multipart_etag(&md5s),
            last_modified_ms: now_ms(),
            attrs: upload.attrs,
            checksums,
            part_sizes: chosen.iter().map(|p| p.size).collect(),
            chunks: None,
        };
        let stored = StoredObject {
            v: 1,
            meta,
            blob: Some(upload_id),
            parts: chosen.iter().map(|p| p.part_number).collect(),
        };
        let guard = TmpGuard::new(tmp);
        blob::write_meta_only(guard.path(), &stored)?;
        Ok((stored, guard))
    })
    .await
}

/// Removes what a completed upload left in its blob besides the chosen parts.
pub(crate) async fn prune_blob(dir: PathBuf, keep: Vec<u32>) {
    let _ = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let keep: Vec<String> = keep.into_iter().map(part_file_name).collect();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if !keep.iter().any(|k| entry.file_name().to_str() == Some(k)) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    })
    .await;
}

pub(crate) async fn abort(layout: &Layout, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
    check_upload_id(upload_id)?;
    let dir = layout.upload_dir(bucket, upload_id);
    let graveyard = layout.tmp_file();
    let key = key.to_owned();
    blocking(move || {
        read_upload(&dir, &key)?;
        blob::durable_rename(&dir, &graveyard)?;
        Ok(std::fs::remove_dir_all(graveyard)?)
    })
    .await
}

pub(crate) async fn list_uploads(layout: &Layout, bucket: &str, prefix: &str) -> Result<Vec<UploadSummary>> {
    let dir = layout.uploads_dir(bucket);
    let prefix = prefix.to_owned();
    blocking(move || {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
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

/// The part files and offsets that cover `span` of a multipart object.
pub(crate) fn segments(dir: &Path, parts: &[u32], sizes: &[u64], span: Range<u64>) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut start = 0u64;
    for (number, size) in parts.iter().zip(sizes) {
        let end = start + size;
        if end > span.start && start < span.end {
            let from = span.start.max(start) - start;
            let to = span.end.min(end) - start;
            let file = std::fs::File::open(dir.join(part_file_name(*number)))
                .map_err(|e| StoreError::Corrupt(format!("multipart object is missing part {number}: {e}")))?;
            segments.push(Segment {
                file,
                offset: from,
                len: to - from,
            });
        }
        start = end;
    }
    Ok(segments)
}
