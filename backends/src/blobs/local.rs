//! `fs:PATH`: blobs as files in a local directory (a USB disk, a NAS mount).
//!
//! Same durability as the embedded store: `tmp → fdatasync → rename → fsync(dir)`, so a
//! committed blob survives power loss and a half-written one is never visible.
//!
//! File calls run on the blocking pool, each under a deadline: a directory that does not
//! answer in time (a hung NAS mount, a dying USB disk) is a mirror that is down, as an S3
//! backend that does not answer is, and the mirror set moves on. The stuck call is left to
//! finish on its blocking thread.

use std::future::Future;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{BlobEntry, BlobSink, Blobs};
use crate::error::{Result, StoreError, Unavailable};
use crate::fs::blob::{Segment, Writeback, durable_rename, read_segments};
use crate::store::ByteStream;

pub struct LocalBlobs {
    root: PathBuf,
    /// How long one file call may take before the directory counts as not answering.
    deadline: Duration,
}

impl LocalBlobs {
    /// Creates the directory if needed and clears half-written blobs from a previous run.
    pub async fn open(root: impl Into<PathBuf>, deadline: Duration) -> Result<Self> {
        let root = root.into();
        let tmp = root.join("tmp");
        within(deadline, "opening", async {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            Ok(tokio::fs::create_dir_all(&tmp).await?)
        })
        .await?;
        Ok(Self { root, deadline })
    }

    fn file(&self, path: &str) -> Result<PathBuf> {
        let relative = Path::new(path);
        let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || path.is_empty() {
            // Blob paths are the relay's own names: another came from a damaged catalog.
            return Err(StoreError::Corrupt("not a blob path".into()));
        }
        Ok(self.root.join(relative))
    }
}

/// `op` if it finishes within `deadline`; else the directory counts as down.
async fn within<T>(deadline: Duration, what: &'static str, op: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(deadline, op).await {
        Ok(done) => done,
        Err(_) => Err(Unavailable::Timeout { what, after: deadline }.into()),
    }
}

/// `f` on the blocking pool, within `deadline`.
async fn blocking_within<T: Send + 'static>(
    deadline: Duration,
    what: &'static str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    within(deadline, what, async {
        Ok(tokio::task::spawn_blocking(f).await.map_err(io::Error::other)??)
    })
    .await
}

/// Each chunk of `stream` within `deadline`: a read that stalls part-way ends the stream
/// with an error (the reader falls back to another mirror) instead of hanging it.
fn chunks_within(stream: ByteStream, deadline: Duration) -> ByteStream {
    Box::pin(futures::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(deadline, stream.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the directory stopped answering",
                )),
                None,
            )),
        }
    }))
}

/// Writes run on the blocking pool with the chunk moved in, not copied into a buffer.
struct LocalSink {
    file: Option<(std::fs::File, Writeback)>,
    /// The staging file, removed on drop unless committed.
    tmp: Option<PathBuf>,
    target: PathBuf,
    deadline: Duration,
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        let Some(tmp) = self.tmp.take() else { return };
        // Not on this async thread: on a hung mount the remove would block it.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || std::fs::remove_file(tmp))),
            Err(_) => drop(std::fs::remove_file(tmp)),
        }
    }
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
        // Timed out, the file stays with the stuck call and the sink is failed for good.
        let (file, writeback, out) = blocking_within(self.deadline, "a write", move || {
            let out = op(&mut file, &mut writeback);
            Ok((file, writeback, out))
        })
        .await?;
        self.file = Some((file, writeback));
        Ok(out?)
    }
}

#[async_trait::async_trait]
impl Blobs for LocalBlobs {
    async fn create(&self, path: &str) -> Result<Box<dyn BlobSink>> {
        let target = self.file(path)?;
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        let mut sink = LocalSink {
            file: None,
            tmp: Some(tmp.clone()),
            target,
            deadline: self.deadline,
        };
        let file = blocking_within(self.deadline, "creating a file", move || std::fs::File::create(&tmp)).await?;
        sink.file = Some((file, Writeback::default()));
        Ok(Box::new(sink))
    }

    async fn read(&self, path: &str, range: Range<u64>) -> Result<ByteStream> {
        let file = self.file(path)?;
        let opened = blocking_within(self.deadline, "opening a file", move || {
            let file = std::fs::File::open(file)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await;
        let (file, len) = match opened {
            Ok(opened) => opened,
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NoSuchKey),
            Err(e) => return Err(e),
        };
        if len < range.end {
            return Err(StoreError::Corrupt(format!(
                "blob is {len} bytes, expected at least {}",
                range.end
            )));
        }
        let stream = read_segments(vec![Segment {
            file,
            offset: range.start,
            len: range.end - range.start,
        }]);
        Ok(chunks_within(stream, self.deadline))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let file = self.file(path)?;
        blocking_within(self.deadline, "a delete", move || match std::fs::remove_file(file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>> {
        let dir = self.file(prefix.trim_end_matches('/'))?;
        let prefix = prefix.trim_end_matches('/').to_owned();
        // A listing walks the whole directory: it gets ten times the deadline of one call.
        blocking_within(self.deadline * 10, "a listing", move || {
            let mut found = Vec::new();
            walk(&dir, &prefix, &mut found)?;
            Ok(found)
        })
        .await
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
        let (file, _) = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("blob sink already failed"))?;
        let from = self.tmp.clone().expect("a sink has its staging file until committed");
        let target = self.target.clone();
        // One trip to the blocking pool for both flushes: a small blob is mostly this call.
        blocking_within(self.deadline, "a commit", move || {
            file.sync_data()?;
            durable_rename(&from, &target)
        })
        .await?;
        self.tmp = None;
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        // Dropping the sink removes the staging file.
    }
}
