//! Completed multipart objects in the embedded store. Completing an upload does not copy a
//! byte: the upload directory (see [`crate::upload_area`]) is renamed to `blobs/<id>/` and the
//! object file becomes a manifest naming the parts, which reads then stream in order.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::StoredObject;
use super::blob::{self, Segment, TmpGuard};
use super::layout::{Layout, part_file_name};
use crate::error::{Result, StoreError};
use crate::upload_area::Assembly;

/// Writes the manifest of a checked completion to staging; the caller commits it, moving the
/// upload's directory to the object's blob.
pub(crate) async fn manifest(layout: &Layout, upload_id: &str, assembly: Assembly) -> Result<(StoredObject, TmpGuard)> {
    let stored = StoredObject {
        v: 1,
        meta: assembly.meta,
        blob: Some(upload_id.to_owned()),
        parts: assembly.parts,
    };
    let guard = TmpGuard::new(layout.tmp_file());
    tokio::task::spawn_blocking(move || {
        blob::write_meta_only(guard.path(), &stored)?;
        Ok((stored, guard))
    })
    .await
    .map_err(io::Error::other)?
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
