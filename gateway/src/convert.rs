//! Small translations between s3s DTOs and the store's plain types.

use std::time::{Duration, SystemTime};

use backends::{ByteRange, ChecksumAlgorithm, Checksums, ObjectAttrs, ObjectMeta};
use s3s::dto::{self, ETag, Timestamp};
use s3s::{S3Result, s3_error};

pub fn timestamp_ms(ms: i64) -> Timestamp {
    Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

pub fn etag(hex: &str) -> ETag {
    ETag::Strong(hex.to_owned())
}

pub fn range(r: dto::Range) -> ByteRange {
    match r {
        dto::Range::Int { first, last } => ByteRange::FromTo { first, last },
        dto::Range::Suffix { length } => ByteRange::Suffix(length),
    }
}

/// `Expires` is kept as the HTTP date the client sent.
pub fn expires_to_string(t: Option<&Timestamp>) -> Option<String> {
    let mut buf = Vec::new();
    t?.format(dto::TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

pub fn expires_from_string(s: Option<&str>) -> Option<Timestamp> {
    Timestamp::parse(dto::TimestampFormat::HttpDate, s?).ok()
}

#[allow(clippy::too_many_arguments)]
pub fn attrs(
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<&Timestamp>,
    metadata: Option<dto::Metadata>,
) -> ObjectAttrs {
    ObjectAttrs {
        content_type,
        cache_control,
        content_disposition,
        content_encoding: content_encoding.and_then(|e| without_aws_chunked(&e)),
        content_language,
        expires: expires_to_string(expires),
        user_metadata: metadata.unwrap_or_default().into_iter().collect(),
    }
}

/// `aws-chunked` describes how a request body was framed, not the object: AWS drops it from
/// the stored Content-Encoding (`gzip, aws-chunked` is stored as `gzip`), and so do we, or a GET
/// would claim a framing its body does not have.
fn without_aws_chunked(encoding: &str) -> Option<String> {
    let kept: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

pub fn user_metadata(meta: &ObjectMeta) -> Option<dto::Metadata> {
    let m = &meta.attrs.user_metadata;
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// The checksum values a request carried in `x-amz-checksum-*` headers.
pub fn header_checksums(
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
) -> Checksums {
    [
        (ChecksumAlgorithm::Crc32, crc32),
        (ChecksumAlgorithm::Crc32c, crc32c),
        (ChecksumAlgorithm::Crc64nvme, crc64nvme),
        (ChecksumAlgorithm::Sha1, sha1),
        (ChecksumAlgorithm::Sha256, sha256),
    ]
    .into_iter()
    .filter_map(|(a, v)| v.map(|v| (a, v)))
    .collect()
}

/// [`header_checksums`] of a request input with the five `checksum_*` fields (PutObject,
/// UploadPart, CompleteMultipartUpload), moved out of it.
macro_rules! checksums_of {
    ($input:expr) => {
        $crate::convert::header_checksums(
            $input.checksum_crc32,
            $input.checksum_crc32c,
            $input.checksum_crc64nvme,
            $input.checksum_sha1,
            $input.checksum_sha256,
        )
    };
}
pub(crate) use checksums_of;

pub fn algorithm(a: Option<&dto::ChecksumAlgorithm>) -> S3Result<Option<ChecksumAlgorithm>> {
    match a {
        None => Ok(None),
        Some(a) => ChecksumAlgorithm::from_s3_name(a.as_str())
            .map(Some)
            .ok_or_else(|| s3_error!(InvalidArgument, "unknown checksum algorithm")),
    }
}

/// Checks a `Content-MD5` header is well formed before any byte is stored.
pub fn check_content_md5(md5: Option<&String>) -> S3Result<()> {
    match md5 {
        Some(v) if backends::digest::base64_decode(v).is_none_or(|b| b.len() != 16) => {
            Err(crate::error::aws(s3s::S3ErrorCode::InvalidDigest))
        }
        _ => Ok(()),
    }
}

/// Stored checksums in the shape of the many `checksum_*` output fields.
pub struct ChecksumFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

pub fn checksum_fields(c: &Checksums) -> ChecksumFields {
    let get = |a| c.get(&a).cloned();
    ChecksumFields {
        crc32: get(ChecksumAlgorithm::Crc32),
        crc32c: get(ChecksumAlgorithm::Crc32c),
        crc64nvme: get(ChecksumAlgorithm::Crc64nvme),
        sha1: get(ChecksumAlgorithm::Sha1),
        sha256: get(ChecksumAlgorithm::Sha256),
    }
}

pub fn checksum_type(c: &Checksums) -> Option<dto::ChecksumType> {
    let composite = c.values().next()?.contains('-');
    Some(dto::ChecksumType::from_static(if composite {
        dto::ChecksumType::COMPOSITE
    } else {
        dto::ChecksumType::FULL_OBJECT
    }))
}

/// The owner shown in listings: this relay has exactly one.
pub fn owner() -> dto::Owner {
    dto::Owner {
        display_name: Some("haven-relay".into()),
        id: Some("haven-relay".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_not_stored_as_the_objects_encoding() {
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(without_aws_chunked("gzip, aws-chunked").as_deref(), Some("gzip"));
        assert_eq!(without_aws_chunked("AWS-CHUNKED,gzip").as_deref(), Some("gzip"));
        assert_eq!(without_aws_chunked("gzip").as_deref(), Some("gzip"));
    }
}
