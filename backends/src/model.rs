//! Plain data passed across the [`crate::Store`] seam.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::ByteStream;

/// The checksum algorithms S3 clients send (`x-amz-checksum-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [Self::Crc32, Self::Crc32c, Self::Crc64nvme, Self::Sha1, Self::Sha256];

    /// The name S3 uses in headers and XML (`CRC32`, `SHA256`, ...).
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    pub fn from_s3_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.s3_name().eq_ignore_ascii_case(name))
    }
}

/// The checksum a multipart upload's object gets: S3's composite one (the checksum of the
/// parts' checksums, `-N`), or with `full_object` the whole body's CRC, combined from the
/// parts' CRCs and sizes (`x-amz-checksum-type: FULL_OBJECT`; CRCs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChecksum {
    pub algorithm: ChecksumAlgorithm,
    #[serde(default)]
    pub full_object: bool,
}

/// Base64 checksum values, keyed by algorithm. A multipart object's values are composite
/// (`<base64>-<parts>`), as in S3.
pub type Checksums = BTreeMap<ChecksumAlgorithm, String>;

/// What the client says about an object when writing it; stored verbatim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttrs {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_language: Option<String>,
    /// The `Expires` header as the client sent it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires: Option<String>,
    /// `x-amz-meta-*` without the prefix.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub user_metadata: BTreeMap<String, String>,
}

/// Everything known about a stored object, computed once at write time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Hex, without quotes: MD5 of the body, or `md5(part md5s)-N` for multipart objects.
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    #[serde(flatten)]
    pub attrs: ObjectAttrs,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub checksums: Checksums,
    /// Sizes of the parts of a multipart object, in order (for `partNumber` reads).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub part_sizes: Vec<u64>,
    /// The CRC32C of every chunk of the body, so any range read can be checked. Recorded by
    /// mirror sets (older blobs gain them when repaired or scrubbed); `None` elsewhere.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chunks: Option<crate::chunks::ChunkSums>,
}

impl ObjectMeta {
    pub fn last_modified(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(self.last_modified_ms.max(0) as u64)
    }
}

/// What a write must check before it becomes visible. Checked against the bytes actually
/// received, and atomically with the commit for the conditional parts.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Base64 `Content-MD5`.
    pub content_md5: Option<String>,
    /// Algorithms to compute and store.
    pub compute: Vec<ChecksumAlgorithm>,
    /// Values the client sent in headers; a mismatch refuses the write.
    pub expected: Checksums,
    /// `If-None-Match: *`: refuse if the key exists.
    pub if_none_match_any: bool,
    /// `If-Match`: refuse unless the key holds an object (with this ETag).
    pub if_match: Option<IfMatch>,
    /// The time to record as the object's last modification (metadata and, where the store
    /// controls it, file times) instead of now: the mailbox keeps no arrival times.
    pub recorded_time_ms: Option<i64>,
}

/// `If-Match` on a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: overwrite only; a key that holds nothing is `NoSuchKey`.
    Any,
    /// Overwrite only the object with this ETag (quotes optional).
    ETag(String),
}

/// A byte range as the client asked for it; resolved against the object size by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` (inclusive) or `bytes=first-` when `last` is `None`.
    FromTo { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open span this range covers in an object of `size` bytes.
    pub fn resolve(self, size: u64) -> Option<std::ops::Range<u64>> {
        match self {
            ByteRange::FromTo { first, last } => {
                if first >= size {
                    return None;
                }
                let end = last.map_or(size, |l| l.saturating_add(1).min(size));
                (end > first).then_some(first..end)
            }
            ByteRange::Suffix(n) => (n > 0 && size > 0).then(|| size.saturating_sub(n)..size),
        }
    }
}

pub struct GetResult {
    pub meta: ObjectMeta,
    /// The bytes the stream yields, within `0..meta.size`.
    pub span: std::ops::Range<u64>,
    pub body: ByteStream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created: SystemTime,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Exclusive lower bound: a key, or a common prefix returned on the previous page.
    pub start_after: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectSummary>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix on this page: where the next page starts after.
    pub last: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    pub part_number: u32,
    pub size: u64,
    pub etag: String,
    pub last_modified_ms: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub checksums: Checksums,
}

#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub key: String,
    pub attrs: ObjectAttrs,
    pub checksum: Option<UploadChecksum>,
    pub initiated_ms: i64,
    pub parts: Vec<PartMeta>,
}

#[derive(Debug, Clone)]
pub struct UploadSummary {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: i64,
}

#[derive(Debug, Clone)]
pub struct CompletedPart {
    pub part_number: u32,
    /// Hex, quotes optional.
    pub etag: String,
}

impl CompletedPart {
    /// The list as `(number, unquoted etag)` pairs, so two spellings of one completion compare
    /// equal (a retry may quote the ETags differently).
    pub fn normalized(parts: &[CompletedPart]) -> Vec<(u32, String)> {
        parts
            .iter()
            .map(|p| (p.part_number, p.etag.trim_matches('"').to_owned()))
            .collect()
    }
}

/// The smallest part S3 accepts, except for the last one.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn ranges_resolve_like_s3() {
        let r = |first, last| ByteRange::FromTo { first, last };
        assert_eq!(r(0, Some(9)).resolve(100), Some(0..10));
        assert_eq!(r(90, Some(200)).resolve(100), Some(90..100));
        assert_eq!(r(90, None).resolve(100), Some(90..100));
        assert_eq!(r(100, None).resolve(100), None);
        assert_eq!(ByteRange::Suffix(10).resolve(100), Some(90..100));
        assert_eq!(ByteRange::Suffix(500).resolve(100), Some(0..100));
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
        assert_eq!(r(0, None).resolve(0), None);
    }
}
