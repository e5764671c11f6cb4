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
use crate::model::ObjectMeta;

/// Writes the manifest of a checked completion (the object's metadata and its parts' numbers)
/// to staging; the caller commits it, moving the upload's directory to the object's blob.
pub(crate) async fn manifest(
    layout: &Layout,
    upload_id: &str,
    meta: ObjectMeta,
    parts: Vec<u32>,
) -> Result<(StoredObject, TmpGuard)> {
    let stored = StoredObject {
        v: 1,
        meta,
        blob: Some(upload_id.to_owned()),
        parts,
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;
    use crate::fs::FsStore;
    use crate::model::*;
    use crate::store::{ByteStream, Store};

    fn body(bytes: &'static [u8]) -> ByteStream {
        Box::pin(futures::stream::once(async move { Ok(Bytes::from_static(bytes)) }))
    }

    /// A client may upload a part again while its completion runs. If that lands after the
    /// check but before the upload's directory becomes the object's blob, the completion
    /// fails with InvalidPart and gives the upload back with the new part, instead of
    /// publishing the new bytes under the checked ETag.
    #[tokio::test]
    async fn a_part_uploaded_again_during_its_completion_is_not_published_under_the_old_etag() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_upload(dir.path()).await;
        let put = |bytes| store.upload_part("bkt", "k", &id, 1, body(bytes), PutOptions::default());
        let old = put(b"old bytes").await.unwrap();
        let completed = |etag: &str| {
            vec![CompletedPart {
                part_number: 1,
                etag: etag.to_owned(),
            }]
        };

        // The completion, stopped between its check and its commit.
        let assembly = store
            .uploads
            .assemble("bkt", "k", &id, &completed(&old.etag), &Checksums::new())
            .await
            .unwrap();
        let new = put(b"new bytes").await.unwrap();
        let (meta, numbers, checked) = assembly.into_parts();
        let (stored, sealed) = manifest(&store.layout, &id, meta, numbers).await.unwrap();
        let bucket = store.bucket("bkt").unwrap();
        let err = store
            .commit(bucket, stored, sealed, PutOptions::default(), Some(checked))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidPart(_)), "{err:?}");
        assert!(matches!(
            store.head_object("bkt", "k").await,
            Err(StoreError::NoSuchKey)
        ));

        let parts = store.list_parts("bkt", "k", &id).await.unwrap().parts;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].etag, new.etag);
        let opts = PutOptions::default();
        let meta = store
            .complete_multipart("bkt", "k", &id, &completed(&new.etag), opts)
            .await
            .unwrap();
        assert_eq!(read(&store, "k").await, b"new bytes");
        assert_eq!(meta.size, 9);
    }

    /// A relay killed between a completion's renames (the upload already moved into
    /// `blobs/`, no object yet) gives the upload back at the next start, for the client's
    /// retry, instead of removing the parts it was told were stored.
    #[tokio::test]
    async fn a_completion_cut_between_its_renames_leaves_the_upload_to_retry() {
        let dir = tempfile::tempdir().unwrap();
        let (id, part) = {
            let (store, id) = store_with_upload(dir.path()).await;
            let part = store.upload_part("bkt", "k", &id, 1, body(b"kept"), PutOptions::default());
            (id.clone(), part.await.unwrap())
        };
        let bucket = dir.path().join("buckets/bkt");
        std::fs::rename(bucket.join("uploads").join(&id), bucket.join("blobs").join(&id)).unwrap();

        let store = FsStore::open(dir.path()).await.unwrap();
        assert_eq!(store.list_parts("bkt", "k", &id).await.unwrap().parts.len(), 1);
        let completed = [CompletedPart {
            part_number: 1,
            etag: part.etag,
        }];
        let opts = PutOptions::default();
        store
            .complete_multipart("bkt", "k", &id, &completed, opts)
            .await
            .unwrap();
        assert_eq!(read(&store, "k").await, b"kept");
    }

    /// A store in `dir` with bucket `bkt` and an upload for key `k`.
    async fn store_with_upload(dir: &std::path::Path) -> (FsStore, String) {
        let store = FsStore::open(dir).await.unwrap();
        store.create_bucket("bkt").await.unwrap();
        let attrs = ObjectAttrs::default();
        let id = store.create_multipart("bkt", "k", attrs, None).await.unwrap();
        (store, id)
    }

    async fn read(store: &FsStore, key: &str) -> Vec<u8> {
        let mut body = store.get_object("bkt", key, None).await.unwrap().body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        bytes
    }
}
