//! Blob backends: the places a mirror set copies sealed blobs to.
//!
//! A blob backend is much simpler than a [`crate::Store`]: it keeps opaque byte strings under
//! names the relay makes up, and nothing else. Buckets, keys, metadata, conditions and listings
//! live in the mirror set's local catalog ([`crate::mirror`]), so a remote only ever sees
//! `blobs/<hh>/<random id>`, whatever key a client used — names that every rclone remote can
//! store, and that never collide when an object is overwritten.

pub mod local;
pub mod s3;
mod s3_uploads;

pub use s3_uploads::PendingUpload;

use std::ops::Range;

use bytes::Bytes;

use crate::error::Result;
use crate::store::ByteStream;

/// A blob on a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// The path relative to the backend root, as passed to [`Blobs::create`].
    pub path: String,
    pub size: u64,
}

/// Where the blob with this id lives on every backend.
pub fn blob_path(id: &str) -> String {
    format!("blobs/{}/{id}", id.get(..2).unwrap_or(id))
}

/// The id back from a [`blob_path`], if it is one. Anything else found on a backend (a file a
/// person or another program left there) is not ours: `None`, never a panic.
pub fn blob_id(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("blobs/")?;
    let (dir, id) = rest.split_once('/')?;
    (id.len() >= 2 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.get(..2) == Some(dir)).then_some(id)
}

/// One backend's blobs.
///
/// Errors: a missing blob is [`crate::StoreError::NoSuchKey`]; a backend that cannot be
/// reached, times out or refuses is [`crate::StoreError::Unavailable`].
#[async_trait::async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Starts writing a blob; nothing is visible at `path` until [`BlobSink::commit`].
    async fn create(&self, path: &str) -> Result<Box<dyn BlobSink>>;
    /// Streams `range` of the blob.
    async fn read(&self, path: &str, range: Range<u64>) -> Result<ByteStream>;
    /// Like [`Blobs::read`] but without the backend's own retries: for when another mirror
    /// can serve the read, so a dead backend costs one failed attempt, not a retry schedule.
    async fn read_once(&self, path: &str, range: Range<u64>) -> Result<ByteStream> {
        self.read(path, range).await
    }
    /// Idempotent: deleting a missing blob succeeds.
    async fn delete(&self, path: &str) -> Result<()>;
    /// Every blob under `prefix` (a directory such as `blobs/`).
    async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>>;
    /// Writes under `prefix` that the backend holds open and nobody finished: an S3
    /// multipart upload whose writer was killed. Not in [`Blobs::list`], but stored (and
    /// often billed) until aborted. Backends without such state have none.
    async fn pending_uploads(&self, _prefix: &str) -> Result<Vec<PendingUpload>> {
        Ok(Vec::new())
    }
    /// Aborts a pending upload, freeing what it holds; one already gone counts as aborted.
    async fn abort_upload(&self, _upload: &PendingUpload) -> Result<()> {
        Ok(())
    }
}

/// A blob being written.
#[async_trait::async_trait]
pub trait BlobSink: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    /// Makes the blob durable and visible.
    async fn commit(self: Box<Self>) -> Result<()>;
    /// Drops everything written; best effort.
    async fn abort(self: Box<Self>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_round_trip_and_reject_others() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(blob_path(id), format!("blobs/01/{id}"));
        assert_eq!(blob_id(&blob_path(id)), Some(id));
        for other in [
            "blobs/02/0123",
            "doctor/x",
            "blobs/01/01/../x",
            "blobs/xy/xyz",
            "blobs/é/éa",
            "blobs/a/é",
            "blobs/é",
        ] {
            assert_eq!(blob_id(other), None, "{other}");
        }
    }
}
