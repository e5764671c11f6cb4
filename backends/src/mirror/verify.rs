//! Checks a copy read back from a mirror against the ETag recorded when it was written.
//!
//! The ETag is the body's MD5, or for a multipart object the MD5 of its parts' MD5s; the
//! catalog keeps the part sizes, so both can be recomputed in one streaming pass.

use std::sync::Arc;

use futures::StreamExt;
use md5::Digest as _;

use super::Inner;
use super::catalog::{ObjectRecord, Record};
use super::scrub::Pacer;
use crate::blobs::blob_path;
use crate::chunks::{ChunkSummer, ChunkSums};
use crate::digest::{hex, multipart_etag};
use crate::error::{Result, StoreError, Unavailable};
use crate::model::ObjectMeta;

/// Whether mirror `i`'s copy of `object` is whole and matches its ETag, reading it at the
/// `pace` given (the scrub's) or as fast as it comes: its chunk sums if it is, `None` if not.
/// `Err`: mirror `i` failed while read.
pub(super) async fn verify_copy(
    inner: &Arc<Inner>,
    i: usize,
    object: &ObjectRecord,
    mut pace: Option<&mut Pacer>,
) -> Result<Option<ChunkSums>> {
    let path = blob_path(&object.blob);
    let mut body = match inner.mirrors[i].blobs.read(&path, 0..object.meta.size).await {
        Ok(body) => body,
        Err(StoreError::NoSuchKey | StoreError::Corrupt(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut check = EtagCheck::new(&object.meta);
    let mut sums = ChunkSummer::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(Unavailable::Read)?;
        check.update(&chunk);
        sums.update(&chunk);
        if let Some(pace) = pace.as_deref_mut() {
            pace.spend(chunk.len()).await;
        }
    }
    Ok(check.matches().then(|| sums.finish()))
}

/// Records `sums`, computed from a copy that matched the ETag, unless the catalog already
/// has exactly these: objects written before chunk sums existed gain them this way.
pub(super) fn learned_chunks(bucket: &str, object: &ObjectRecord, sums: ChunkSums) -> Option<Record> {
    (object.meta.chunks.as_ref() != Some(&sums)).then(|| Record::Chunks {
        bucket: bucket.to_owned(),
        key: object.meta.key.clone(),
        blob: object.blob.clone(),
        chunks: sums,
    })
}

pub(crate) struct EtagCheck {
    expected: String,
    size: u64,
    /// Sizes of the parts still to come, the current one first; empty for a plain object.
    parts: std::collections::VecDeque<u64>,
    multipart: bool,
    md5: md5::Md5,
    part_md5s: Vec<[u8; 16]>,
    seen: u64,
    in_part: u64,
}

impl EtagCheck {
    pub fn new(meta: &ObjectMeta) -> Self {
        Self {
            expected: meta.etag.clone(),
            size: meta.size,
            parts: meta.part_sizes.iter().copied().collect(),
            multipart: !meta.part_sizes.is_empty(),
            md5: md5::Md5::new(),
            part_md5s: Vec::new(),
            seen: 0,
            in_part: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.seen += data.len() as u64;
        if !self.multipart {
            self.md5.update(data);
            return;
        }
        while !data.is_empty() {
            let Some(&part) = self.parts.front() else {
                self.md5.update(data); // more bytes than the parts: fails in `matches`
                return;
            };
            let take = ((part - self.in_part) as usize).min(data.len());
            self.md5.update(&data[..take]);
            self.in_part += take as u64;
            data = &data[take..];
            if self.in_part == part {
                self.close_part();
            }
        }
    }

    fn close_part(&mut self) {
        let md5 = std::mem::replace(&mut self.md5, md5::Md5::new());
        self.part_md5s.push(md5.finalize().into());
        self.parts.pop_front();
        self.in_part = 0;
    }

    /// Whether the bytes seen are exactly the object that was written.
    pub fn matches(mut self) -> bool {
        if self.seen != self.size {
            return false;
        }
        if !self.multipart {
            return hex(&self.md5.finalize()) == self.expected;
        }
        // Zero-length trailing parts never see a byte.
        while self.parts.front() == Some(&0) {
            self.close_part();
        }
        self.parts.is_empty() && multipart_etag(&self.part_md5s) == self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digester;

    fn meta(etag: String, size: u64, part_sizes: Vec<u64>) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            size,
            etag,
            last_modified_ms: 0,
            attrs: Default::default(),
            checksums: Default::default(),
            part_sizes,
            chunks: None,
        }
    }

    fn md5(data: &[u8]) -> [u8; 16] {
        let mut d = Digester::new(&[]);
        d.update(data);
        d.finish().md5
    }

    #[test]
    fn plain_and_multipart_etags_verify_in_any_chunking() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let plain = meta(hex(&md5(&body)), body.len() as u64, vec![]);
        let parts = [4000usize, 4000, 2000];
        let mut at = 0;
        let md5s: Vec<_> = parts
            .iter()
            .map(|n| {
                let m = md5(&body[at..at + n]);
                at += n;
                m
            })
            .collect();
        let multi = meta(
            multipart_etag(&md5s),
            body.len() as u64,
            parts.iter().map(|&n| n as u64).collect(),
        );
        for m in [&plain, &multi] {
            for chunk in [1usize, 333, 4000, 10_000] {
                let mut check = EtagCheck::new(m);
                body.chunks(chunk).for_each(|c| check.update(c));
                assert!(check.matches(), "chunk {chunk}, parts {:?}", m.part_sizes);
            }
            let mut corrupt = body.clone();
            corrupt[5000] ^= 1;
            let mut check = EtagCheck::new(m);
            check.update(&corrupt);
            assert!(!check.matches());
            let mut short = EtagCheck::new(m);
            short.update(&body[..9999]);
            assert!(!short.matches());
        }
    }
}
