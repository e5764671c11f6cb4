//! Reads: the fastest healthy holder first, nothing served that was not checked, and another
//! holder from the byte where one failed.
//!
//! How a read is checked depends on what the catalog knows. Objects with chunk sums (every
//! blob written since they were introduced, and older ones once repaired or scrubbed) have
//! each chunk of any range checked before its bytes go out; a bad chunk moves the read to the
//! next holder at that byte. Older objects are checked against the whole-object ETag, which a
//! ranged read cannot be: those ranges are served as stored.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::Inner;
use super::catalog::ObjectRecord;
use super::verify::EtagCheck;
use crate::blobs::blob_path;
use crate::chunks::{self, ChunkSums};
use crate::error::{Result, StoreError, Unavailable};
use crate::model::ObjectMeta;
use crate::store::ByteStream;

/// Whole-object reads up to this size are read and checked before the first byte goes out.
/// Larger ones are checked as they stream: chunk by chunk, or against the ETag with the last
/// chunk held back (a mismatch then cuts the response short: the client sees an incomplete
/// body, never wrong bytes).
const VERIFY_BEFORE_SENDING: u64 = 1024 * 1024;

/// The object a read is for.
struct Target {
    bucket: String,
    record: ObjectRecord,
    path: String,
}

impl Target {
    fn meta(&self) -> &ObjectMeta {
        &self.record.meta
    }

    fn sums(&self) -> Option<&ChunkSums> {
        self.meta().chunks.as_ref().filter(|s| s.fit(self.meta().size))
    }
}

impl Inner {
    /// Streams `span` of `record` from its holders.
    pub(super) async fn read_object(
        self: &Arc<Self>,
        bucket: &str,
        record: ObjectRecord,
        span: Range<u64>,
    ) -> Result<ByteStream> {
        let order = self.read_order(&record.holders);
        if order.is_empty() {
            tracing::error!("an object has no copy on any configured mirror");
            return Err(Unavailable::NotOnAnyMirror.into());
        }
        let size = record.meta.size;
        let whole = span == (0..size);
        let target = Arc::new(Target {
            bucket: bucket.to_owned(),
            path: blob_path(&record.blob),
            record,
        });
        let mut last_error = None;
        for (n, &i) in order.iter().enumerate() {
            let last = n + 1 == order.len();
            let started = Instant::now();
            if whole && size <= VERIFY_BEFORE_SENDING {
                match self.read_verified(i, &target, last).await {
                    Ok(Some(bytes)) => {
                        self.mirrors[i].health.record_latency(started.elapsed());
                        return Ok(Box::pin(futures::stream::once(async { Ok(bytes) })));
                    }
                    Ok(None) => self.lost(&target, i, "corrupt"),
                    Err(StoreError::NoSuchKey | StoreError::Corrupt(_)) => self.lost(&target, i, "missing"),
                    Err(e) => {
                        self.mark_down(i, &e);
                        last_error = Some(e);
                    }
                }
                continue;
            }
            match self.open_checked(i, &target, span.clone(), last).await {
                Ok(body) => {
                    self.mirrors[i].health.record_latency(started.elapsed());
                    let rest = order[n + 1..].to_vec();
                    let body = resuming(self.clone(), target.clone(), i, rest, span, body);
                    if !whole || target.sums().is_some() {
                        return Ok(body);
                    }
                    let (inner, t) = (self.clone(), target.clone());
                    return Ok(verifying(body, target.meta(), move || inner.lost(&t, i, "corrupt")));
                }
                Err(StoreError::NoSuchKey | StoreError::Corrupt(_)) => self.lost(&target, i, "missing"),
                Err(e) => {
                    self.mark_down(i, &e);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(Unavailable::NoGoodCopy.into()))
    }

    fn lost(self: &Arc<Self>, target: &Target, i: usize, why: &str) {
        let meta = target.meta();
        self.copy_lost(&target.bucket, &meta.key, &target.record.blob, i, why);
    }

    /// The last mirror to try gets the backend's retries; earlier ones fail over at once.
    async fn read_from(&self, i: usize, path: &str, span: Range<u64>, last: bool) -> Result<ByteStream> {
        let blobs = &self.mirrors[i].blobs;
        if last {
            blobs.read(path, span).await
        } else {
            blobs.read_once(path, span).await
        }
    }

    /// Reads a whole small object from mirror `i` and checks it.
    async fn read_verified(&self, i: usize, target: &Target, last: bool) -> Result<Option<Bytes>> {
        let meta = target.meta();
        let mut stream = self.read_from(i, &target.path, 0..meta.size, last).await?;
        let mut buf = BytesMut::with_capacity(meta.size as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(read_failure)?);
            if buf.len() as u64 > meta.size {
                break;
            }
        }
        let mut check = EtagCheck::new(meta);
        check.update(&buf);
        Ok(check.matches().then(|| buf.freeze()))
    }

    /// Opens `span` on mirror `i`, checked chunk by chunk when the object has chunk sums.
    async fn open_checked(
        self: &Arc<Self>,
        i: usize,
        target: &Arc<Target>,
        span: Range<u64>,
        last: bool,
    ) -> Result<ByteStream> {
        let Some(sums) = target.sums() else {
            return self.open_stream(i, &target.path, span, last).await;
        };
        let size = target.meta().size;
        let raw = self
            .open_stream(i, &target.path, chunks::aligned(&span, size), last)
            .await?;
        let (inner, t) = (self.clone(), target.clone());
        Ok(chunks::checked(raw, sums.clone(), size, span, move || {
            inner.lost(&t, i, "corrupt")
        }))
    }

    /// Opens a stream on mirror `i` and waits for its first chunk, so a missing or
    /// unreachable copy can still fall back to the next mirror.
    async fn open_stream(&self, i: usize, path: &str, span: Range<u64>, last: bool) -> Result<ByteStream> {
        let mut stream = self.read_from(i, path, span, last).await?;
        match stream.next().await {
            None => Ok(Box::pin(futures::stream::empty())),
            Some(Err(e)) => Err(read_failure(e)),
            Some(Ok(first)) => Ok(Box::pin(futures::stream::once(async { Ok(first) }).chain(stream))),
        }
    }
}

/// Wraps a streamed read so that a copy failing mid-stream (connection lost, timeout, a short
/// body, a chunk failing its sum) is replaced by the next holder from the byte where it
/// stopped: the client sees one uninterrupted body. Only when no holder is left does the
/// stream end with the error.
fn resuming(
    inner: Arc<Inner>,
    target: Arc<Target>,
    current: usize,
    rest: Vec<usize>,
    span: Range<u64>,
    body: ByteStream,
) -> ByteStream {
    struct Resume {
        inner: Arc<Inner>,
        target: Arc<Target>,
        current: Option<(usize, ByteStream)>,
        rest: VecDeque<usize>,
        next: u64,
        end: u64,
        failure: Option<io::Error>,
    }
    let state = Resume {
        inner,
        target,
        current: Some((current, body)),
        rest: rest.into(),
        next: span.start,
        end: span.end,
        failure: None,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.next >= s.end {
                return None;
            }
            if let Some((i, body)) = &mut s.current {
                let failure = match body.next().await {
                    Some(Ok(chunk)) => {
                        s.next += chunk.len() as u64;
                        return Some((Ok(chunk), s));
                    }
                    Some(Err(e)) => e,
                    None => io::Error::new(io::ErrorKind::UnexpectedEof, "the mirror's body ended early"),
                };
                // A bad chunk is the copy's fault (already reported), not the mirror's.
                if failure.kind() != io::ErrorKind::InvalidData {
                    let why = Unavailable::Read(io::Error::new(failure.kind(), failure.to_string()));
                    s.inner.mark_down(*i, &why.into());
                }
                s.failure = Some(failure);
                s.current = None;
            }
            let Some(j) = s.rest.pop_front() else {
                s.next = s.end;
                let failure = s.failure.take().unwrap_or_else(|| io::Error::other("no mirror left"));
                return Some((Err(failure), s));
            };
            let last = s.rest.is_empty();
            // Opened on its own task: the stream this runs in must stay `Sync`.
            let (inner, target, range) = (s.inner.clone(), s.target.clone(), s.next..s.end);
            let opened = tokio::spawn(async move { inner.open_checked(j, &target, range, last).await })
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e).into()));
            match opened {
                Ok(body) => {
                    tracing::info!(to = %s.inner.mirrors[j].label, "a read moved to another mirror mid-stream");
                    s.current = Some((j, body));
                }
                Err(StoreError::NoSuchKey | StoreError::Corrupt(_)) => s.inner.lost(&s.target, j, "missing"),
                Err(e) => s.inner.mark_down(j, &e),
            }
        }
    }))
}

/// Wraps a whole-object stream: checks the ETag as it goes and, on a mismatch, fails the
/// last chunk instead of delivering it, and reports the bad copy.
fn verifying(body: ByteStream, meta: &ObjectMeta, on_bad: impl FnOnce() + Send + Sync + 'static) -> ByteStream {
    struct Verify<F> {
        body: ByteStream,
        check: Option<EtagCheck>,
        held: Option<Bytes>,
        on_bad: Option<F>,
    }
    let state = Verify {
        body,
        check: Some(EtagCheck::new(meta)),
        held: None,
        on_bad: Some(on_bad),
    };
    // One chunk is held back so that the end of the stream can still be refused.
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            match s.body.next().await {
                Some(Ok(chunk)) => {
                    if let Some(check) = &mut s.check {
                        check.update(&chunk);
                    }
                    if let Some(prev) = s.held.replace(chunk) {
                        return Some((Ok(prev), s));
                    }
                }
                Some(Err(e)) => {
                    s.check = None;
                    s.held = None;
                    return Some((Err(e), s));
                }
                None => {
                    let check = s.check.take()?;
                    if check.matches() {
                        return s.held.take().map(|last| (Ok(last), s));
                    }
                    s.held = None;
                    if let Some(report) = s.on_bad.take() {
                        report();
                    }
                    let e = io::Error::new(io::ErrorKind::InvalidData, "the stored copy failed its integrity check");
                    return Some((Err(e), s));
                }
            }
        }
    }))
}

/// What a mirror's failed read means for the caller: the copy is missing, or the mirror
/// cannot serve now (503, try again), never a relay fault (500).
fn read_failure(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NoSuchKey
    } else {
        Unavailable::Read(e).into()
    }
}
