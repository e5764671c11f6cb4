//! Blob files: the body bytes followed by a JSON metadata trailer.
//!
//! ```text
//! [body bytes][metadata JSON][u32 LE: JSON length][8 bytes magic]
//! ```
//! One file carries data and metadata, so one `rename` makes both visible at once and one
//! `fdatasync` makes both durable. The trailer comes last because the ETag and checksums are
//! only known once the body has streamed through.
//!
//! All file I/O runs on tokio's blocking pool; the async side only moves `Bytes` through
//! bounded channels, so memory per transfer is a few chunks whatever the object size.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::digest::{Digester, Digests};
use crate::error::{Result, StoreError};
use crate::model::ChecksumAlgorithm;
use crate::store::ByteStream;

const MAGIC: &[u8; 8] = b"HAVNBLB1";
const TRAILER_FIXED: u64 = 12;
/// Metadata larger than this is not ours (S3 caps user metadata at 2 KiB).
const MAX_META: u32 = 1 << 20;
/// Read chunk size: large enough for fast sequential reads, small enough to keep memory flat.
const READ_CHUNK: usize = 256 * 1024;
/// Chunks in flight between the network and the disk, per transfer. With the gateway's
/// 128 KiB read buffer this bounds an upload to well under 1 MiB of memory.
const CHANNEL_DEPTH: usize = 4;

/// Removes a staging file unless disarmed; covers errors and dropped (cancelled) requests.
pub(crate) struct TmpGuard(Option<PathBuf>);

impl TmpGuard {
    pub fn new(path: PathBuf) -> Self {
        Self(Some(path))
    }
    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("guard still armed")
    }
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A body written to a staging file, hashed, not yet sealed or visible.
pub(crate) struct Staged {
    file: File,
    pub guard: TmpGuard,
    pub digests: Digests,
}

/// Streams `body` into a new staging file at `path`, hashing as it goes.
pub(crate) async fn stage(path: PathBuf, mut body: ByteStream, algorithms: Vec<ChecksumAlgorithm>) -> Result<Staged> {
    let guard = TmpGuard::new(path.clone());
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let writer = tokio::task::spawn_blocking(move || -> io::Result<(File, Digests)> {
        let mut file = File::create(&path)?;
        let mut digester = Digester::new(&algorithms);
        let mut writeback = Writeback::default();
        while let Some(chunk) = rx.blocking_recv() {
            digester.update(&chunk);
            file.write_all(&chunk)?;
            writeback.wrote(&file, chunk.len() as u64);
        }
        Ok((file, digester.finish()))
    });
    let mut body_error = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                if tx.send(bytes).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Err(e) => {
                body_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.map_err(io::Error::other)?;
    if let Some(e) = body_error {
        return Err(StoreError::Body(e));
    }
    let (file, digests) = written?;
    Ok(Staged { file, guard, digests })
}

impl Staged {
    /// Appends the metadata trailer and makes the file durable; it is still in staging.
    pub async fn seal<M: Serialize>(self, meta: &M) -> Result<TmpGuard> {
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        let Staged { mut file, guard, .. } = self;
        tokio::task::spawn_blocking(move || -> io::Result<TmpGuard> {
            write_trailer(&mut file, &json)?;
            file.sync_data()?;
            Ok(guard)
        })
        .await
        .map_err(io::Error::other)?
        .map_err(StoreError::Io)
    }
}

/// Starts writeback of a large body while it is still arriving, so that the fdatasync
/// before the acknowledgement only waits for the tail instead of the whole object.
#[derive(Default)]
pub(crate) struct Writeback {
    written: u64,
    flushed: u64,
}

impl Writeback {
    const STEP: u64 = 8 * 1024 * 1024;

    #[cfg(target_os = "linux")]
    pub(crate) fn wrote(&mut self, file: &File, len: u64) {
        use std::os::fd::AsRawFd;
        self.written += len;
        if self.written - self.flushed >= Self::STEP {
            // Only a hint: failure changes nothing, the fdatasync in `seal` is the guarantee.
            // SAFETY: plain syscall on a file descriptor we own for the duration of the call.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    self.flushed as libc::off64_t,
                    (self.written - self.flushed) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushed = self.written;
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn wrote(&mut self, _file: &File, len: u64) {
        self.written += len;
    }
}

/// The bytes that follow a blob's body: its metadata, the metadata's length and the magic.
pub(crate) fn encode_trailer(json: &[u8]) -> Vec<u8> {
    let mut trailer = Vec::with_capacity(json.len() + TRAILER_FIXED as usize);
    trailer.extend_from_slice(json);
    trailer.extend_from_slice(&(json.len() as u32).to_le_bytes());
    trailer.extend_from_slice(MAGIC);
    trailer
}

/// The metadata JSON from the last bytes of a blob (`tail` must include the whole trailer).
pub(crate) fn decode_trailer(tail: &[u8]) -> Result<&[u8]> {
    let n = tail.len();
    if n < TRAILER_FIXED as usize || &tail[n - 8..] != MAGIC {
        return Err(StoreError::Corrupt("bad blob magic".into()));
    }
    let json_len = u32::from_le_bytes(tail[n - 12..n - 8].try_into().expect("4 bytes")) as usize;
    if json_len as u32 > MAX_META || json_len + TRAILER_FIXED as usize > n {
        return Err(StoreError::Corrupt("bad metadata length".into()));
    }
    Ok(&tail[n - 12 - json_len..n - 12])
}

fn write_trailer(file: &mut File, json: &[u8]) -> io::Result<()> {
    file.write_all(&encode_trailer(json))
}

/// Writes a metadata-only blob (no body) durably at `path` (a staging path).
pub(crate) fn write_meta_only<M: Serialize>(path: &Path, meta: &M) -> io::Result<()> {
    let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let mut file = File::create(path)?;
    write_trailer(&mut file, &json)?;
    file.sync_data()
}

/// Reads the metadata trailer of an open blob file.
pub(crate) fn read_meta<M: DeserializeOwned>(file: &mut File) -> Result<M> {
    let len = file.metadata()?.len();
    if len < TRAILER_FIXED {
        return Err(StoreError::Corrupt("blob shorter than its trailer".into()));
    }
    let mut fixed = [0u8; TRAILER_FIXED as usize];
    file.seek(SeekFrom::Start(len - TRAILER_FIXED))?;
    file.read_exact(&mut fixed)?;
    if &fixed[4..] != MAGIC {
        return Err(StoreError::Corrupt("bad blob magic".into()));
    }
    let json_len = u32::from_le_bytes(fixed[..4].try_into().expect("4 bytes"));
    if json_len > MAX_META || u64::from(json_len) + TRAILER_FIXED > len {
        return Err(StoreError::Corrupt("bad metadata length".into()));
    }
    let mut json = vec![0u8; json_len as usize];
    file.seek(SeekFrom::Start(len - TRAILER_FIXED - u64::from(json_len)))?;
    file.read_exact(&mut json)?;
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))
}

/// Opens a blob and reads its metadata; `Ok(None)` if it does not exist.
pub(crate) fn open_with_meta<M: DeserializeOwned>(path: &Path) -> Result<Option<(File, M)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = read_meta(&mut file)?;
    Ok(Some((file, meta)))
}

/// One contiguous piece of a read: `len` bytes from `offset` in `file`.
pub(crate) struct Segment {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

/// Streams the segments in order from the blocking pool.
pub(crate) fn read_segments(segments: Vec<Segment>) -> ByteStream {
    read_segments_lazily(segments.into_iter().map(Ok))
}

/// Streams segments in order from the blocking pool, each taken from `segments` (opened) only
/// when the one before it has been read: a long list never holds more than one file open.
pub(crate) fn read_segments_lazily<I>(segments: I) -> ByteStream
where
    I: Iterator<Item = io::Result<Segment>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        for seg in segments {
            let mut seg = match seg {
                Ok(seg) => seg,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if let Err(e) = seg.file.seek(SeekFrom::Start(seg.offset)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            let mut left = seg.len;
            while left > 0 {
                let n = left.min(READ_CHUNK as u64) as usize;
                let mut buf = BytesMut::zeroed(n);
                let item = seg.file.read_exact(&mut buf).map(|()| buf.freeze());
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return; // reader gone, or error delivered
                }
                left -= n as u64;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// `fsync` on a directory, so a rename or unlink inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to` and makes the rename durable, creating `to`'s parent if needed.
pub(crate) fn durable_rename(from: &Path, to: &Path) -> io::Result<()> {
    let parent = to.parent().expect("target has a parent");
    if !parent.exists() {
        std::fs::create_dir_all(parent)?;
        if let Some(grand) = parent.parent() {
            sync_dir(grand)?;
        }
    }
    std::fs::rename(from, to)?;
    sync_dir(parent)
}
