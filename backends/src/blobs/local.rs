//! `fs:PATH`: blobs as files in a local directory (a USB disk, a NAS mount).
//!
//! Same durability as the embedded store: `tmp → fdatasync → rename → fsync(dir)`, so a
//! committed blob survives power loss and a half-written one is never visible.

use std::io;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use std::io::Write;

use super::{BlobEntry, BlobSink, Blobs};
use crate::error::{Result, StoreError};
use crate::fs::blob::{Segment, Writeback, durable_rename, read_segments};
use crate::store::ByteStream;

pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Creates the directory if needed and clears half-written blobs from a previous run.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let tmp = root.join("tmp");
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        tokio::fs::create_dir_all(&tmp).await?;
        Ok(Self { root })
    }

    fn file(&self, path: &str) -> Result<PathBuf> {
        let relative = Path::new(path);
        let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || path.is_empty() {
            return Err(StoreError::InvalidArgument(format!("not a blob path: {path}")));
        }
        Ok(self.root.join(relative))
    }
}

/// Writes run on the blocking pool with the chunk moved in, not copied into a buffer.
struct LocalSink {
    file: Option<(std::fs::File, Writeback)>,
    tmp: crate::fs::blob::TmpGuard,
    target: PathBuf,
}

impl LocalSink {
    async fn blocking<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut std::fs::File, &mut Writeback) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (mut file, mut writeback) = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("blob sink already failed"))?;
        let (file, writeback, out) = tokio::task::spawn_blocking(move || {
            let out = op(&mut file, &mut writeback);
            (file, writeback, out)
        })
        .await
        .map_err(io::Error::other)?;
        self.file = Some((file, writeback));
        Ok(out?)
    }
}

#[async_trait::async_trait]
impl Blobs for LocalBlobs {
    async fn create(&self, path: &str) -> Result<Box<dyn BlobSink>> {
        let target = self.file(path)?;
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        let file = std::fs::File::create(&tmp)?;
        Ok(Box::new(LocalSink {
            file: Some((file, Writeback::default())),
            tmp: crate::fs::blob::TmpGuard::new(tmp),
            target,
        }))
    }

    async fn read(&self, path: &str, range: Range<u64>) -> Result<ByteStream> {
        let file = self.file(path)?;
        let file = match tokio::task::spawn_blocking(move || std::fs::File::open(file))
            .await
            .map_err(io::Error::other)?
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NoSuchKey),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
        if len < range.end {
            return Err(StoreError::Corrupt(format!(
                "blob is {len} bytes, expected at least {}",
                range.end
            )));
        }
        Ok(read_segments(vec![Segment {
            file,
            offset: range.start,
            len: range.end - range.start,
        }]))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match tokio::fs::remove_file(self.file(path)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>> {
        let dir = self.file(prefix.trim_end_matches('/'))?;
        let prefix = prefix.trim_end_matches('/').to_owned();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            walk(&dir, &prefix, &mut found)?;
            Ok(found)
        })
        .await
        .map_err(io::Error::other)?
    }
}

fn walk(dir: &Path, prefix: &str, found: &mut Vec<BlobEntry>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}/{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &path, found)?;
        } else if kind.is_file() {
            found.push(BlobEntry {
                path,
                size: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl BlobSink for LocalSink {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.blocking(move |file, writeback| {
            file.write_all(&chunk)?;
            writeback.wrote(file, chunk.len() as u64);
            Ok(())
        })
        .await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.blocking(|file, _| file.sync_data()).await?;
        let LocalSink { tmp, target, .. } = *self;
        let from = tmp.path().to_owned();
        tokio::task::spawn_blocking(move || durable_rename(&from, &target))
            .await
            .map_err(io::Error::other)??;
        tmp.disarm();
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        // Dropping the guard removes the staging file.
    }
}
