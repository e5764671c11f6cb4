//! Per-chunk checksums, so that any range of a stored copy can be checked before it is served.
//!
//! A whole-object ETag can only judge a read that covers the whole object. Each blob written
//! by a mirror set therefore also records the CRC32C of every [`CHUNK_SIZE`] slice of its
//! body (the last one may be shorter). A read of any range is widened to chunk boundaries,
//! each chunk is checked as it arrives, and only the requested bytes of good chunks are passed
//! on; a chunk that fails ends that copy's stream with [`io::ErrorKind::InvalidData`], so the
//! caller can continue from another copy at the same byte. CRC32C finds the flipped bits and
//! torn writes of disks and providers; tampering is the apps' seal to catch, not ours.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{base64, base64_decode};
use crate::store::ByteStream;

/// 256 KiB: a small range read costs at most two chunks from the backend, and the sums of a
/// 1 GiB object take 5.5 KiB in the catalog.
pub const CHUNK_SIZE: u64 = 256 * 1024;

/// The CRC32C of each chunk of a body, in order. Serialized as base64 of the big-endian sums.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkSums(Arc<[u32]>);

impl ChunkSums {
    /// Whether these are the sums of a body of `size` bytes (a wrong count is never trusted).
    pub fn fit(&self, size: u64) -> bool {
        self.0.len() as u64 == size.div_ceil(CHUNK_SIZE)
    }
}

impl std::fmt::Debug for ChunkSums {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkSums({} chunks)", self.0.len())
    }
}

impl Serialize for ChunkSums {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = self.0.iter().flat_map(|c| c.to_be_bytes()).collect();
        s.serialize_str(&base64(&bytes))
    }
}

impl<'de> Deserialize<'de> for ChunkSums {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64_decode(&text)
            .filter(|b| b.len() % 4 == 0)
            .ok_or_else(|| serde::de::Error::custom("chunk sums are not base64 of 4-byte sums"))?;
        let sums: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self(sums.into()))
    }
}

/// Computes [`ChunkSums`] over a body fed in pieces of any size.
pub struct ChunkSummer {
    sums: Vec<u32>,
    crc: crc_fast::Digest,
    in_chunk: u64,
}

impl Default for ChunkSummer {
    fn default() -> Self {
        Self {
            sums: Vec::new(),
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi),
            in_chunk: 0,
        }
    }
}

impl ChunkSummer {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((CHUNK_SIZE - self.in_chunk) as usize).min(data.len());
            self.crc.update(&data[..take]);
            self.in_chunk += take as u64;
            data = &data[take..];
            if self.in_chunk == CHUNK_SIZE {
                self.sums.push(self.crc.finalize_reset() as u32);
                self.in_chunk = 0;
            }
        }
    }

    pub fn finish(mut self) -> ChunkSums {
        if self.in_chunk > 0 {
            self.sums.push(self.crc.finalize() as u32);
        }
        ChunkSums(self.sums.into())
    }
}

/// `span` widened to whole chunks of a body of `size` bytes.
pub fn aligned(span: &Range<u64>, size: u64) -> Range<u64> {
    let start = span.start / CHUNK_SIZE * CHUNK_SIZE;
    let end = span.end.div_ceil(CHUNK_SIZE).saturating_mul(CHUNK_SIZE).min(size);
    start..end
}

/// Checks `body` (the bytes of [`aligned`]`(span, size)`) chunk by chunk and yields only the
/// bytes of `span`. A chunk that fails its sum calls `on_bad` once and ends the stream with
/// `InvalidData`; a body that ends early ends it with `UnexpectedEof`. No byte of a chunk is
/// yielded before the whole chunk has been checked, so at most one chunk is held.
pub fn checked(
    body: ByteStream,
    sums: ChunkSums,
    size: u64,
    span: Range<u64>,
    on_bad: impl FnOnce() + Send + Sync + 'static,
) -> ByteStream {
    struct Check<F> {
        body: ByteStream,
        sums: ChunkSums,
        size: u64,
        span: Range<u64>,
        /// Offset in the object of the first byte of `buf`.
        at: u64,
        buf: BytesMut,
        on_bad: Option<F>,
        done: bool,
    }
    let at = aligned(&span, size).start;
    let state = Check {
        body,
        sums,
        size,
        span,
        at,
        buf: BytesMut::new(),
        on_bad: Some(on_bad),
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done || s.at >= s.span.end {
                return None;
            }
            let chunk_len = CHUNK_SIZE.min(s.size - s.at) as usize;
            if s.buf.len() >= chunk_len {
                let chunk = s.buf.split_to(chunk_len).freeze();
                let index = (s.at / CHUNK_SIZE) as usize;
                if crc_fast::crc32_iscsi(&chunk) != s.sums.0[index] {
                    s.done = true;
                    if let Some(report) = s.on_bad.take() {
                        report();
                    }
                    let e = io::Error::new(io::ErrorKind::InvalidData, "a stored chunk failed its checksum");
                    return Some((Err(e), s));
                }
                let start = s.at;
                s.at += chunk_len as u64;
                if let Some(part) = within(&chunk, start, &s.span) {
                    return Some((Ok(part), s));
                }
                continue;
            }
            match s.body.next().await {
                Some(Ok(data)) => s.buf.extend_from_slice(&data),
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.done = true;
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "the copy ended before the range did");
                    return Some((Err(e), s));
                }
            }
        }
    }))
}

/// The part of `chunk` (which starts at object offset `start`) that lies in `span`.
fn within(chunk: &Bytes, start: u64, span: &Range<u64>) -> Option<Bytes> {
    let from = span.start.saturating_sub(start) as usize;
    let to = ((span.end - start) as usize).min(chunk.len());
    (from < to).then(|| chunk.slice(from..to))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    fn sums_of(data: &[u8], piece: usize) -> ChunkSums {
        let mut s = ChunkSummer::default();
        data.chunks(piece.max(1)).for_each(|c| s.update(c));
        s.finish()
    }

    fn stream(data: Vec<u8>, piece: usize) -> ByteStream {
        let pieces: Vec<io::Result<Bytes>> = data.chunks(piece).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures::stream::iter(pieces))
    }

    async fn read(data: &[u8], sums: &ChunkSums, span: Range<u64>, piece: usize) -> (Vec<u8>, Option<io::ErrorKind>) {
        let size = data.len() as u64;
        let a = aligned(&span, size);
        let raw = data[a.start as usize..a.end as usize].to_vec();
        let mut out = checked(stream(raw, piece), sums.clone(), size, span, || {});
        let mut got = Vec::new();
        while let Some(item) = out.next().await {
            match item {
                Ok(b) => got.extend_from_slice(&b),
                Err(e) => return (got, Some(e.kind())),
            }
        }
        (got, None)
    }

    #[test]
    fn sums_do_not_depend_on_how_the_body_was_cut() {
        let data = body(3 * CHUNK_SIZE as usize + 5);
        let whole = sums_of(&data, data.len());
        for piece in [1usize, 1000, CHUNK_SIZE as usize, CHUNK_SIZE as usize + 1] {
            assert!(sums_of(&data, piece) == whole, "piece {piece}");
        }
        assert!(whole.fit(data.len() as u64));
        assert!(!whole.fit(data.len() as u64 + CHUNK_SIZE));
        assert!(ChunkSummer::default().finish().fit(0));
        let json = serde_json::to_string(&whole).unwrap();
        assert!(serde_json::from_str::<ChunkSums>(&json).unwrap() == whole);
        assert!(serde_json::from_str::<ChunkSums>("\"AAA\"").is_err());
    }

    #[tokio::test]
    async fn ranges_come_back_exactly_and_a_flipped_byte_is_refused() {
        let c = CHUNK_SIZE;
        let data = body((3 * c + 1000) as usize);
        let size = data.len() as u64;
        let sums = sums_of(&data, 4096);
        let spans = [
            0..size,
            0..1,
            c - 1..c + 1,
            5..3 * c,
            3 * c..size,
            size - 1..size,
            c..2 * c,
        ];
        for span in spans {
            for piece in [7usize, 65536, c as usize * 2] {
                let (got, err) = read(&data, &sums, span.clone(), piece).await;
                assert_eq!(err, None, "{span:?}");
                assert_eq!(
                    got,
                    &data[span.start as usize..span.end as usize],
                    "{span:?} piece {piece}"
                );
            }
        }
        let mut bad = data.clone();
        bad[(c + 10) as usize] ^= 0x40;
        let reported = Arc::new(AtomicUsize::new(0));
        let span = 100..2 * c;
        let a = aligned(&span, size);
        let raw = bad[a.start as usize..a.end as usize].to_vec();
        let count = reported.clone();
        let mut out = checked(stream(raw, 4096), sums.clone(), size, span, move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        let mut got = Vec::new();
        let mut err = None;
        while let Some(item) = out.next().await {
            match item {
                Ok(b) => got.extend_from_slice(&b),
                Err(e) => err = Some(e.kind()),
            }
        }
        // The good first chunk is served, then the stream stops before the bad one.
        assert_eq!(got, &data[100..c as usize]);
        assert_eq!(err, Some(io::ErrorKind::InvalidData));
        assert_eq!(reported.load(Ordering::SeqCst), 1);
        // A copy that ends early is an error, never a short success.
        let short = &data[..(c + 5) as usize];
        let mut out = checked(stream(short.to_vec(), 4096), sums.clone(), size, 0..2 * c, || {});
        let mut kinds = Vec::new();
        while let Some(item) = out.next().await {
            kinds.push(item.map(|b| b.len()).map_err(|e| e.kind()));
        }
        assert_eq!(kinds, vec![Ok(c as usize), Err(io::ErrorKind::UnexpectedEof)]);
    }
}
