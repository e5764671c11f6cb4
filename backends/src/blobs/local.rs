//! `fs:PATH`: blobs as files in a local directory (a USB disk, a NAS mount).
//!
//! Same durability as the embedded store: `tmp → fdatasync → rename → fsync(dir)`, so a
//! committed blob survives power loss and a half-written one is never visible.
//!
//! File calls run on the blocking pool, each under a deadline: a directory that does not
//! answer in time (a hung NAS mount, a dying USB disk) is a mirror that is down, as an S3
//! backend that does not answer is, and the mirror set moves on. The stuck call is left to
//! finish on its blocking thread.
//!
//! A sink gathers the body's chunks and goes to the blocking pool once per [`WRITE_BATCH`]
//! bytes: a small blob is created, written, flushed and renamed in one trip. Each trip is a
//! thread hand-off, and a mirror set pays them once per mirror for every PUT.

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

/// Bytes a sink gathers before writing them out. The chunks are the ones the fan-out shares
/// between all mirrors, so this is held once per upload, not once per mirror.
const WRITE_BATCH: usize = 256 * 1024;

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
    /// Created at the first batch written out (a small blob's only one: its commit).
    file: Option<(std::fs::File, Writeback)>,
    /// Chunks not written yet.
    gathered: Vec<Bytes>,
    /// Set once a call failed or timed out: the file stays with the stuck call.
    failed: bool,
    /// The staging file, removed on drop unless committed.
    tmp: Option<PathBuf>,
    target: PathBuf,
    deadline: Duration,
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        let Some(tmp) = self.tmp.take() else { return };
        if self.file.is_none() && !self.failed {
            return; // nothing was created
        }
        // Not on this async thread: on a hung mount the remove would block it.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || std::fs::remove_file(tmp))),
            Err(_) => drop(std::fs::remove_file(tmp)),
        }
    }
}

impl LocalSink {
    /// Writes the gathered chunks (creating the staging file first if this is the first
    /// batch), then runs `then` on the file, all in one trip to the blocking pool.
    async fn write_out<T: Send + 'static>(
        &mut self,
        then: impl FnOnce(&mut std::fs::File) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.failed {
            return Err(io::Error::other("blob sink already failed").into());
        }
        let open = self.file.take();
        let tmp = self.tmp.clone().expect("a sink has its staging file until committed");
        let chunks = std::mem::take(&mut self.gathered);
        // Marked failed until the trip returns: a timeout leaves the file with the stuck call.
        self.failed = true;
        let (file, writeback, out) = blocking_within(self.deadline, "a write", move || {
            let (mut file, mut writeback) = match open {
                Some(open) => open,
                None => (std::fs::File::create(&tmp)?, Writeback::default()),
            };
            let written = chunks.iter().try_for_each(|chunk| {
                file.write_all(chunk)?;
                writeback.wrote(&file, chunk.len() as u64);
                Ok(())
            });
            let out = written.and_then(|()| then(&mut file));
            Ok((file, writeback, out))
        })
        .await?;
        let out = out?;
        self.file = Some((file, writeback));
        self.failed = false;
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Blobs for LocalBlobs {
    async fn create(&self, path: &str) -> Result<Box<dyn BlobSink>> {
        let target = self.file(path)?;
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        Ok(Box::new(LocalSink {
            file: None,
            gathered: Vec::new(),
            failed: false,
            tmp: Some(tmp),
            target,
            deadline: self.deadline,
        }))
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
        self.gathered.push(chunk);
        if self.gathered.iter().map(Bytes::len).sum::<usize>() >= WRITE_BATCH {
            self.write_out(|_| Ok(())).await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let from = self.tmp.clone().expect("a sink has its staging file until committed");
        let target = self.target.clone();
        // The last batch, the flush and the rename in one trip: a small blob is only this.
        self.write_out(move |file| {
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(blobs: &LocalBlobs, path: &str, len: u64) -> Vec<u8> {
        let mut body = blobs.read(path, 0..len).await.unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    fn staged(root: &Path) -> usize {
        std::fs::read_dir(root.join("tmp")).unwrap().count()
    }

    /// Gathered or written out in batches, a blob is visible only once committed and then
    /// holds every byte in order; one that is dropped or aborted leaves nothing behind.
    #[tokio::test]
    async fn blobs_appear_whole_at_commit_and_leave_nothing_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path(), Duration::from_secs(5)).await.unwrap();
        for (path, len) in [
            ("blobs/aa/small", 70_000usize),
            ("blobs/bb/large", 3 * WRITE_BATCH + 123),
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut sink = blobs.create(path).await.unwrap();
            for chunk in bytes.chunks(16 * 1024) {
                sink.write(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
            assert!(blobs.read(path, 0..1).await.is_err(), "visible before its commit");
            sink.commit().await.unwrap();
            assert_eq!(read_all(&blobs, path, len as u64).await, bytes);
        }
        assert_eq!(staged(dir.path()), 0);

        let mut dropped = blobs.create("blobs/cc/dropped").await.unwrap();
        dropped.write(Bytes::from(vec![1; 2 * WRITE_BATCH])).await.unwrap();
        assert_eq!(staged(dir.path()), 1, "a batch was written out");
        drop(dropped);
        let mut aborted = blobs.create("blobs/dd/aborted").await.unwrap();
        aborted.write(Bytes::from(vec![1; 10])).await.unwrap();
        aborted.abort().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(staged(dir.path()), 0);
        assert!(blobs.list("blobs/").await.unwrap().len() == 2);
    }
}
