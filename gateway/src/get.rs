//! GetObject and HeadObject: ranges, part numbers and the four HTTP preconditions.

use backends::{ByteRange, ObjectMeta, StoreError};
use s3s::dto::{
    ChecksumMode, ETagCondition, GetObjectInput, GetObjectOutput, HeadObjectInput, HeadObjectOutput, Timestamp,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::Gateway;
use crate::body::response_body;
use crate::convert;
use crate::error::to_s3;

/// The request's preconditions, evaluated in the order RFC 9110 §13.2.2 gives.
pub struct Preconditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

impl Preconditions<'_> {
    fn any(&self) -> bool {
        self.if_match.is_some()
            || self.if_none_match.is_some()
            || self.if_modified_since.is_some()
            || self.if_unmodified_since.is_some()
    }

    /// Decides the preconditions from the object's metadata before any body is opened, so a
    /// 304 or 412 never reads bytes (on a mirror set, a download from a backend).
    /// The answer of the read that follows is checked again, in case the object changed.
    pub async fn check_before_reading(
        &self,
        gw: &Gateway,
        bucket: &str,
        key: &str,
        not_modified: fn(&ObjectMeta) -> S3Error,
    ) -> S3Result<()> {
        if self.any() {
            let meta = gw.store.head_object(bucket, key).await.map_err(to_s3)?;
            self.check(&meta, not_modified)?;
        }
        Ok(())
    }

    /// `not_modified` is the error for a failed If-None-Match / If-Modified-Since: 304 on
    /// reads, 412 on copy sources.
    pub fn check(&self, meta: &ObjectMeta, not_modified: fn(&ObjectMeta) -> S3Error) -> S3Result<()> {
        let matches = |c: &ETagCondition| c.is_any() || c.as_etag().is_some_and(|t| t.value() == meta.etag);
        let modified_secs = meta.last_modified_ms.div_euclid(1000);
        let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
        if let Some(c) = self.if_match {
            if !matches(c) {
                return Err(crate::error::aws(s3s::S3ErrorCode::PreconditionFailed));
            }
        } else if let Some(t) = self.if_unmodified_since
            && modified_secs > secs(t)
        {
            return Err(crate::error::aws(s3s::S3ErrorCode::PreconditionFailed));
        }
        if let Some(c) = self.if_none_match {
            if matches(c) {
                return Err(not_modified(meta));
            }
        } else if let Some(t) = self.if_modified_since
            && modified_secs <= secs(t)
        {
            return Err(not_modified(meta));
        }
        Ok(())
    }
}

/// 304 with the object's ETag and Last-Modified, as RFC 9110 §15.4.5 asks: a cache
/// revalidating its copy learns which version it still holds.
fn not_modified(meta: &ObjectMeta) -> S3Error {
    let mut error = s3_error!(NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(etag) = http::HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
        headers.insert(http::header::ETAG, etag);
    }
    let mut date = Vec::new();
    if convert::timestamp_ms(meta.last_modified_ms)
        .format(s3s::dto::TimestampFormat::HttpDate, &mut date)
        .is_ok()
        && let Ok(date) = http::HeaderValue::from_bytes(&date)
    {
        headers.insert(http::header::LAST_MODIFIED, date);
    }
    error.set_headers(headers);
    error
}

/// The byte range of part `n` of a multipart object (a plain object is one part).
fn part_range(meta: &ObjectMeta, n: i32) -> S3Result<ByteRange> {
    if !(1..=10_000).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    let sizes = if meta.part_sizes.is_empty() {
        vec![meta.size]
    } else {
        meta.part_sizes.clone()
    };
    let idx = usize::try_from(n)
        .ok()
        .filter(|&i| i >= 1 && i <= sizes.len())
        .ok_or_else(invalid_part_number)?;
    let first: u64 = sizes[..idx - 1].iter().sum();
    let size = sizes[idx - 1];
    if size == 0 {
        return Err(invalid_part_number());
    }
    Ok(ByteRange::FromTo {
        first,
        last: Some(first + size - 1),
    })
}

fn invalid_part_number() -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    e.set_status_code(hyper::StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

fn parts_count(meta: &ObjectMeta) -> Option<i32> {
    (!meta.part_sizes.is_empty()).then_some(meta.part_sizes.len() as i32)
}

pub async fn get_object(gw: &Gateway, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let pre = Preconditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    let mut range = input.range.map(convert::range);
    if let Some(n) = input.part_number {
        if range.is_some() {
            return Err(s3_error!(InvalidRequest, "Range and partNumber cannot both be given"));
        }
        let meta = gw.store.head_object(&input.bucket, &input.key).await.map_err(to_s3)?;
        range = Some(part_range(&meta, n)?);
    }
    pre.check_before_reading(gw, &input.bucket, &input.key, not_modified)
        .await?;
    let got = match gw.store.get_object(&input.bucket, &input.key, range).await {
        Ok(got) => got,
        Err(StoreError::InvalidRange { .. }) => {
            // Preconditions are decided before the range.
            let meta = gw.store.head_object(&input.bucket, &input.key).await.map_err(to_s3)?;
            pre.check(&meta, not_modified)?;
            return Err(crate::error::aws(s3s::S3ErrorCode::InvalidRange));
        }
        Err(e) => return Err(to_s3(e)),
    };
    let meta = got.meta;
    pre.check(&meta, not_modified)?;
    let expiration = gw.expiration(&input.bucket, &meta).await;
    let partial = range.is_some();
    let content_range = partial.then(|| {
        format!(
            "bytes {}-{}/{}",
            got.span.start,
            got.span.end.saturating_sub(1),
            meta.size
        )
    });
    let full = !partial || (got.span.start == 0 && got.span.end == meta.size);
    let want_checksums = full
        && input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    let none = backends::Checksums::new();
    let c = convert::checksum_fields(if want_checksums { &meta.checksums } else { &none });
    let output = GetObjectOutput {
        body: Some(response_body(got.body)),
        content_length: Some((got.span.end - got.span.start) as i64),
        content_range,
        accept_ranges: Some("bytes".into()),
        e_tag: Some(convert::etag(&meta.etag)),
        last_modified: Some(convert::timestamp_ms(meta.last_modified_ms)),
        metadata: convert::user_metadata(&meta),
        parts_count: parts_count(&meta),
        checksum_crc32: c.crc32,
        checksum_crc32c: c.crc32c,
        checksum_crc64nvme: c.crc64nvme,
        checksum_sha1: c.sha1,
        checksum_sha256: c.sha256,
        checksum_type: want_checksums
            .then(|| convert::checksum_type(&meta.checksums))
            .flatten(),
        expires: convert::expires_from_string(meta.attrs.expires.as_deref()),
        expiration,
        content_type: meta.attrs.content_type,
        cache_control: meta.attrs.cache_control,
        content_disposition: meta.attrs.content_disposition,
        content_encoding: meta.attrs.content_encoding,
        content_language: meta.attrs.content_language,
        ..Default::default()
    };
    let status = if partial {
        hyper::StatusCode::PARTIAL_CONTENT
    } else {
        hyper::StatusCode::OK
    };
    Ok(S3Response::with_status(output, status))
}

pub async fn head_object(gw: &Gateway, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let meta = gw.store.head_object(&input.bucket, &input.key).await.map_err(to_s3)?;
    Preconditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    }
    .check(&meta, not_modified)?;
    let mut length = meta.size;
    let mut content_range = None;
    if let Some(range) = input
        .range
        .map(convert::range)
        .or(input.part_number.map(|n| part_range(&meta, n)).transpose()?)
    {
        let span = range
            .resolve(meta.size)
            .ok_or_else(|| crate::error::aws(s3s::S3ErrorCode::InvalidRange))?;
        length = span.end - span.start;
        content_range = Some(format!("bytes {}-{}/{}", span.start, span.end - 1, meta.size));
    }
    let want_checksums = input
        .checksum_mode
        .as_ref()
        .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    let none = backends::Checksums::new();
    let c = convert::checksum_fields(if want_checksums { &meta.checksums } else { &none });
    let expiration = gw.expiration(&input.bucket, &meta).await;
    Ok(S3Response::new(HeadObjectOutput {
        content_length: Some(length as i64),
        content_range,
        accept_ranges: Some("bytes".into()),
        e_tag: Some(convert::etag(&meta.etag)),
        last_modified: Some(convert::timestamp_ms(meta.last_modified_ms)),
        metadata: convert::user_metadata(&meta),
        parts_count: parts_count(&meta),
        checksum_crc32: c.crc32,
        checksum_crc32c: c.crc32c,
        checksum_crc64nvme: c.crc64nvme,
        checksum_sha1: c.sha1,
        checksum_sha256: c.sha256,
        checksum_type: want_checksums
            .then(|| convert::checksum_type(&meta.checksums))
            .flatten(),
        expires: convert::expires_from_string(meta.attrs.expires.as_deref()),
        expiration,
        content_type: meta.attrs.content_type,
        cache_control: meta.attrs.cache_control,
        content_disposition: meta.attrs.content_disposition,
        content_encoding: meta.attrs.content_encoding,
        content_language: meta.attrs.content_language,
        ..Default::default()
    }))
}
