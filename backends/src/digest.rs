//! One pass over the bytes computes the ETag (MD5) and any requested S3 checksums.

use md5::Digest as _;

use crate::model::{ChecksumAlgorithm, Checksums};

/// Hashes a body as it streams by.
pub struct Digester {
    md5: md5::Md5,
    crc32: Option<crc_fast::Digest>,
    crc32c: Option<crc_fast::Digest>,
    crc64nvme: Option<crc_fast::Digest>,
    sha1: Option<sha1::Sha1>,
    sha256: Option<sha2::Sha256>,
    len: u64,
}

/// The result of a [`Digester`].
#[derive(Debug, Clone)]
pub struct Digests {
    pub md5: [u8; 16],
    pub checksums: Checksums,
    /// Raw checksum bytes, for composing multipart checksums.
    pub raw: Vec<(ChecksumAlgorithm, Vec<u8>)>,
    pub len: u64,
}

impl Digester {
    pub fn new(algorithms: &[ChecksumAlgorithm]) -> Self {
        let has = |a| algorithms.contains(&a);
        let crc = |a, alg| has(a).then(|| crc_fast::Digest::new(alg));
        Self {
            md5: md5::Md5::new(),
            crc32: crc(ChecksumAlgorithm::Crc32, crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            crc32c: crc(ChecksumAlgorithm::Crc32c, crc_fast::CrcAlgorithm::Crc32Iscsi),
            crc64nvme: crc(ChecksumAlgorithm::Crc64nvme, crc_fast::CrcAlgorithm::Crc64Nvme),
            sha1: has(ChecksumAlgorithm::Sha1).then(sha1::Sha1::new),
            sha256: has(ChecksumAlgorithm::Sha256).then(sha2::Sha256::new),
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        self.md5.update(data);
        for crc in [&mut self.crc32, &mut self.crc32c, &mut self.crc64nvme]
            .into_iter()
            .flatten()
        {
            crc.update(data);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
    }

    pub fn finish(self) -> Digests {
        let mut raw = Vec::new();
        if let Some(c) = self.crc32 {
            raw.push((ChecksumAlgorithm::Crc32, (c.finalize() as u32).to_be_bytes().to_vec()));
        }
        if let Some(c) = self.crc32c {
            raw.push((ChecksumAlgorithm::Crc32c, (c.finalize() as u32).to_be_bytes().to_vec()));
        }
        if let Some(c) = self.crc64nvme {
            raw.push((ChecksumAlgorithm::Crc64nvme, c.finalize().to_be_bytes().to_vec()));
        }
        if let Some(h) = self.sha1 {
            raw.push((ChecksumAlgorithm::Sha1, h.finalize().to_vec()));
        }
        if let Some(h) = self.sha256 {
            raw.push((ChecksumAlgorithm::Sha256, h.finalize().to_vec()));
        }
        let checksums = raw.iter().map(|(a, v)| (*a, base64(v))).collect();
        Digests {
            md5: self.md5.finalize().into(),
            checksums,
            raw,
            len: self.len,
        }
    }
}

impl Digests {
    pub fn etag(&self) -> String {
        hex(&self.md5)
    }
}

/// S3's multipart ETag: `hex(md5(concat(part md5s)))-N`.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = md5::Md5::new();
    for m in part_md5s {
        h.update(m);
    }
    format!("{}-{}", hex(&h.finalize()), part_md5s.len())
}

/// S3's composite checksum: the checksum of the concatenated raw part checksums, `-N`.
pub fn composite_checksum(algorithm: ChecksumAlgorithm, part_values: &[Vec<u8>]) -> String {
    let mut d = Digester::new(&[algorithm]);
    for v in part_values {
        d.update(v);
    }
    let digests = d.finish();
    format!("{}-{}", digests.checksums[&algorithm], part_values.len())
}

/// S3's FULL_OBJECT checksum of a multipart object: the CRC of the whole body, combined from
/// each part's CRC (big-endian bytes) and size. `None` for a non-CRC algorithm or a part value
/// of the wrong length.
pub fn full_object_crc(algorithm: ChecksumAlgorithm, part_values: &[Vec<u8>], part_sizes: &[u64]) -> Option<String> {
    let (crc, width) = match algorithm {
        ChecksumAlgorithm::Crc32 => (crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
        ChecksumAlgorithm::Crc32c => (crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
        ChecksumAlgorithm::Crc64nvme => (crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => return None,
    };
    let mut whole: Option<u64> = None;
    for (value, size) in part_values.iter().zip(part_sizes) {
        if value.len() != width {
            return None;
        }
        let part = value.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        whole = Some(match whole {
            None => part,
            Some(before) => crc_fast::checksum_combine(crc, before, part, *size),
        });
    }
    let bytes = whole?.to_be_bytes();
    Some(base64(&bytes[8 - width..]))
}

pub fn base64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    base64_simd::STANDARD.decode_to_vec(s.as_bytes()).ok()
}

pub fn hex(bytes: &[u8]) -> String {
    hex_simd::encode_to_string(bytes, hex_simd::AsciiCase::Lower)
}

pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    hex_simd::decode_to_vec(s.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let mut d = Digester::new(&ChecksumAlgorithm::ALL);
        d.update(b"hello ");
        d.update(b"world");
        let out = d.finish();
        assert_eq!(out.etag(), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(out.checksums[&ChecksumAlgorithm::Crc32], "DUoRhQ==");
        assert_eq!(
            out.checksums[&ChecksumAlgorithm::Sha256],
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
        assert_eq!(out.len, 11);
    }

    #[test]
    fn a_full_object_crc_is_the_crc_of_the_whole_body() {
        for algorithm in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64nvme,
        ] {
            let parts: [&[u8]; 3] = [b"sealed ", b"bytes in ", b"three parts"];
            let raw: Vec<Vec<u8>> = parts
                .iter()
                .map(|p| {
                    let mut d = Digester::new(&[algorithm]);
                    d.update(p);
                    base64_decode(&d.finish().checksums[&algorithm]).unwrap()
                })
                .collect();
            let sizes: Vec<u64> = parts.iter().map(|p| p.len() as u64).collect();
            let mut whole = Digester::new(&[algorithm]);
            whole.update(&parts.concat());
            assert_eq!(
                full_object_crc(algorithm, &raw, &sizes).as_deref(),
                Some(whole.finish().checksums[&algorithm].as_str()),
                "{algorithm:?}"
            );
        }
        assert_eq!(full_object_crc(ChecksumAlgorithm::Sha256, &[vec![0; 32]], &[1]), None);
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        // Two parts "a" and "b": md5(md5("a") || md5("b")) computed independently.
        let mut a = Digester::new(&[]);
        a.update(b"a");
        let mut b = Digester::new(&[]);
        b.update(b"b");
        let etag = multipart_etag(&[a.finish().md5, b.finish().md5]);
        // Reference value from Python's hashlib: md5(md5(b"a").digest() + md5(b"b").digest()).
        assert_eq!(etag, "96e024ba2074fe77e8e965ba43a704be-2");
    }
}
