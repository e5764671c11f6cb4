//! PutObject: stream the body into the store, verifying every digest the client sent.

use backends::{ChecksumAlgorithm, IfMatch, PutOptions};
use s3s::dto::{ETagCondition, PutObjectInput, PutObjectOutput};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::Gateway;
use crate::body::{BodyChecks, request_body};
use crate::convert;
use crate::error::to_s3;

pub async fn put_object(gw: &Gateway, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
    let checks = BodyChecks::from_request(&req)?;
    let input = req.input;
    crate::access::owner_only_acl!(input)?;
    gw.check_declared_size(input.content_length)?;
    convert::check_content_md5(input.content_md5.as_ref())?;
    let mut opts = PutOptions {
        content_md5: input.content_md5,
        expected: convert::checksums_of!(input),
        ..PutOptions::default()
    };
    opts.compute = requested_algorithms(convert::algorithm(input.checksum_algorithm.as_ref())?, checks.trailer());
    apply_write_conditions(&mut opts, input.if_match, input.if_none_match)?;
    let attrs = convert::attrs(
        input.content_type,
        input.cache_control,
        input.content_disposition,
        input.content_encoding,
        input.content_language,
        input.expires.as_ref(),
        input.metadata,
    );
    let (_reserved, limit) = gw
        .reserve_replacing(checks.declared_size(input.content_length), &input.bucket, &input.key)
        .await?;
    let body = request_body(input.body, limit, checks);
    let meta = gw
        .store
        .put_object(&input.bucket, &input.key, attrs, body, opts)
        .await
        .map_err(to_s3)?;
    let c = convert::checksum_fields(&meta.checksums);
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(convert::etag(&meta.etag)),
        checksum_crc32: c.crc32,
        checksum_crc32c: c.crc32c,
        checksum_crc64nvme: c.crc64nvme,
        checksum_sha1: c.sha1,
        checksum_sha256: c.sha256,
        checksum_type: convert::checksum_type(&meta.checksums),
        size: Some(meta.size as i64),
        ..Default::default()
    }))
}

/// The algorithms to compute and store: the one the client named, and the trailer's.
pub fn requested_algorithms(
    named: Option<ChecksumAlgorithm>,
    trailer: Option<&crate::body::Trailer>,
) -> Vec<ChecksumAlgorithm> {
    let mut algos: Vec<_> = named.into_iter().chain(trailer.map(|t| t.algorithm)).collect();
    algos.dedup();
    algos
}

/// S3 conditional writes: `If-None-Match: *` (create only) and `If-Match: <etag>` or `*`
/// (overwrite only).
pub fn apply_write_conditions(
    opts: &mut PutOptions,
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
) -> S3Result<()> {
    if let Some(cond) = if_none_match {
        if !cond.is_any() {
            return Err(s3_error!(NotImplemented, "If-None-Match on writes supports only '*'"));
        }
        opts.if_none_match_any = true;
    }
    opts.if_match = if_match.map(|cond| match cond.as_etag() {
        Some(tag) => IfMatch::ETag(tag.value().to_owned()),
        None => IfMatch::Any,
    });
    Ok(())
}
