//! A completion checked against the upload's parts: which parts it takes, the object they
//! make (size, multipart ETag, the whole object's checksum), and, for the store to publish,
//! the parts as they were when checked. A client may upload a part again while its
//! completion runs; whatever the store does next never lets such a part into the object
//! under the ETag that was checked.

use std::io;
use std::path::{Path, PathBuf};

use super::UploadFile;
use crate::digest::{composite_checksum, full_object_crc, hex_decode, multipart_etag};
use crate::error::{Result, StoreError};
use crate::fs::blob::{self, Segment};
use crate::fs::layout::part_file_name;
use crate::model::*;
use crate::store::ByteStream;

/// A completion checked against the parts: the object it makes, and its bytes.
pub(crate) struct Assembly {
    meta: ObjectMeta,
    /// The chosen parts' numbers, in order.
    parts: Vec<u32>,
    dir: PathBuf,
    chosen: Vec<PartMeta>,
}

impl Assembly {
    /// The object's metadata and bytes, streamed from the part files, each opened in turn
    /// (an upload of 10,000 parts holds one file open, not 10,000). A part uploaded again
    /// since the check ends the stream with an error instead of slipping in under the
    /// checked ETag.
    pub fn into_body(self) -> (ObjectMeta, ByteStream) {
        let dir = self.dir;
        let segments = self
            .chosen
            .into_iter()
            .map(move |checked| match open_checked(&dir, &checked)? {
                Some(file) => Ok(Segment {
                    file,
                    offset: 0,
                    len: checked.size,
                }),
                None => Err(io::Error::other(format!(
                    "part {} changed or vanished after the completion checked it",
                    checked.part_number
                ))),
            });
        (self.meta, blob::read_segments_lazily(segments))
    }

    /// The object's metadata, its parts' numbers in order, and the parts as checked, for a
    /// store that publishes the part files where they are (see [`CheckedParts`]).
    pub fn into_parts(self) -> (ObjectMeta, Vec<u32>, CheckedParts) {
        (self.meta, self.parts, CheckedParts(self.chosen))
    }
}

/// The parts a completion checked. A client may upload a part again while its completion
/// runs; a store that publishes the upload's directory as it is checks, once no part can be
/// renamed into it any more, that it holds exactly these.
pub(crate) struct CheckedParts(Vec<PartMeta>);

impl CheckedParts {
    /// The number of the first checked part that `dir` no longer holds as it was checked.
    pub fn first_changed(&self, dir: &Path) -> io::Result<Option<u32>> {
        for checked in &self.0 {
            if open_checked(dir, checked)?.is_none() {
                return Ok(Some(checked.part_number));
            }
        }
        Ok(None)
    }
}

/// Opens a part file if it still holds the part as `checked` (same size and ETag).
fn open_checked(dir: &Path, checked: &PartMeta) -> io::Result<Option<std::fs::File>> {
    match blob::open_with_meta::<PartMeta>(&dir.join(part_file_name(checked.part_number))) {
        Ok(Some((file, now))) if now.etag == checked.etag && now.size == checked.size => Ok(Some(file)),
        Ok(_) => Ok(None),
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Checks the client's part list (and its checksums of the whole, `expected`) against the
/// upload's parts `available`, giving the object it makes.
pub(super) fn check(
    dir: PathBuf,
    key: String,
    upload: UploadFile,
    mut available: Vec<PartMeta>,
    requested: &[CompletedPart],
    expected: &Checksums,
) -> Result<Assembly> {
    let mut chosen = Vec::with_capacity(requested.len());
    for (i, want) in requested.iter().enumerate() {
        let at = available
            .iter()
            .position(|p| p.part_number == want.part_number)
            .ok_or_else(|| StoreError::InvalidPart(format!("part {} was not uploaded", want.part_number)))?;
        let part = available.swap_remove(at);
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
    let parts: Vec<&PartMeta> = chosen.iter().collect();
    let checksums = whole_checksums(&upload, &parts)?;
    // The client's checksum of what it uploaded, sent with the completion: a mismatch
    // completes nothing, and the upload stays for a corrected completion.
    // A composite value matches with or without its `-N` (clients send both).
    let bare = |v: &str| v.split_once('-').map_or(v, |(value, _)| value).to_owned();
    for (algorithm, want) in expected {
        if checksums.get(algorithm).map(|v| bare(v)) != Some(bare(want)) {
            return Err(StoreError::ChecksumMismatch(algorithm.s3_name()));
        }
    }
    let md5s: Vec<[u8; 16]> = parts
        .iter()
        .map(|p| {
            hex_decode(&p.etag)
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("part etag".into()))
        })
        .collect::<Result<_>>()?;
    let meta = ObjectMeta {
        key,
        size: parts.iter().map(|p| p.size).sum(),
        etag: multipart_etag(&md5s),
        last_modified_ms: now_ms(),
        attrs: upload.attrs,
        checksums,
        part_sizes: parts.iter().map(|p| p.size).collect(),
        chunks: None,
    };
    Ok(Assembly {
        meta,
        parts: chosen.iter().map(|p| p.part_number).collect(),
        dir,
        chosen,
    })
}

/// The whole object's checksum of the upload's algorithm, from the parts': their composite, or
/// for a full-object CRC the CRC of their concatenation. None if a part lacks it.
fn whole_checksums(upload: &UploadFile, parts: &[&PartMeta]) -> Result<Checksums> {
    let mut checksums = Checksums::new();
    let Some(algorithm) = upload.checksum else {
        return Ok(checksums);
    };
    let raw: Option<Vec<Vec<u8>>> = parts
        .iter()
        .map(|p| {
            p.checksums
                .get(&algorithm)
                .and_then(|v| crate::digest::base64_decode(v))
        })
        .collect();
    if let Some(raw) = raw {
        let value = if upload.full_object {
            let sizes: Vec<u64> = parts.iter().map(|p| p.size).collect();
            full_object_crc(algorithm, &raw, &sizes).ok_or_else(|| StoreError::Corrupt("a part's CRC".into()))?
        } else {
            composite_checksum(algorithm, &raw)
        };
        checksums.insert(algorithm, value);
    }
    Ok(checksums)
}

#[cfg(test)]
mod tests {
    use super::super::UploadArea;
    use super::super::tests::{collect, part};
    use super::*;

    /// What a completion streams is the parts it checked: a part uploaded again after the
    /// check ends the stream with an error, never slips into the object under the checked
    /// ETag; untouched, the parts stream in order.
    #[tokio::test]
    async fn an_assembly_streams_only_the_parts_it_checked() {
        let dir = tempfile::tempdir().unwrap();
        let area = UploadArea::open(dir.path().join("area")).await.unwrap();
        let id = area.create("b", "k", ObjectAttrs::default(), None).await.unwrap();
        let first = vec![1u8; MIN_PART_SIZE as usize];
        let done = vec![part(&area, &id, 1, &first).await, part(&area, &id, 2, b"tail").await];
        let none = Checksums::new();
        let assemble = || area.assemble("b", "k", &id, &done, &none);

        let (meta, bytes) = assemble().await.unwrap().into_body();
        assert_eq!(meta.size, MIN_PART_SIZE + 4);
        assert_eq!(collect(bytes).await.unwrap(), [first, b"tail".to_vec()].concat());

        let assembly = assemble().await.unwrap();
        part(&area, &id, 1, &vec![2u8; MIN_PART_SIZE as usize]).await;
        let err = collect(assembly.into_body().1).await.unwrap_err();
        assert!(err.to_string().contains("part 1 changed"), "{err}");
    }
}
