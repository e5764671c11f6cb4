//! CopyObject and UploadPartCopy: stream the source through, never buffer it.

use backends::{ByteRange, ObjectMeta, PutOptions};
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use crate::Gateway;
use crate::convert;
use crate::error::to_s3;
use crate::get::Preconditions;

fn source(src: &CopySource) -> S3Result<(&str, &str)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id: None,
        } => Ok((bucket, key)),
        CopySource::Bucket { .. } => Err(s3_error!(NotImplemented, "versioned copy sources are not supported")),
        _ => Err(s3_error!(NotImplemented, "access-point copy sources are not supported")),
    }
}

/// Failed copy-source conditions are all 412, unlike reads.
fn precondition_failed(_: &ObjectMeta) -> S3Error {
    crate::error::aws(s3s::S3ErrorCode::PreconditionFailed)
}

pub async fn copy_object(gw: &Gateway, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
    let input = req.input;
    crate::access::owner_only_acl!(input)?;
    let (src_bucket, src_key) = source(&input.copy_source)?;
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    if src_bucket == input.bucket && src_key == input.key && !replace {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let pre = Preconditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    };
    pre.check_before_reading(gw, src_bucket, src_key, precondition_failed)
        .await?;
    let src = gw.store.get_object(src_bucket, src_key, None).await.map_err(to_s3)?;
    pre.check(&src.meta, precondition_failed)?;
    let (_reserved, _) = gw
        .reserve_replacing(Some(src.meta.size), &input.bucket, &input.key)
        .await?;
    let attrs = if replace {
        convert::attrs(
            input.content_type,
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.expires.as_ref(),
            input.metadata,
        )
    } else {
        src.meta.attrs.clone()
    };
    let mut opts = PutOptions {
        compute: src.meta.checksums.keys().copied().collect(),
        ..Default::default()
    };
    // A multipart source's checksums are composite; a copy is one part, so recompute plainly.
    if let Some(a) = convert::algorithm(input.checksum_algorithm.as_ref())? {
        opts.compute.push(a);
    }
    let meta: ObjectMeta = gw
        .store
        .put_object(&input.bucket, &input.key, attrs, src.body, opts)
        .await
        .map_err(to_s3)?;
    let c = convert::checksum_fields(&meta.checksums);
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(convert::etag(&meta.etag)),
            last_modified: Some(convert::timestamp_ms(meta.last_modified_ms)),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_crc64nvme: c.crc64nvme,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_type: convert::checksum_type(&meta.checksums),
        }),
        ..Default::default()
    }))
}

/// `x-amz-copy-source-range: bytes=first-last`, both required, as S3 specifies.
fn copy_range(s: Option<&str>) -> S3Result<Option<ByteRange>> {
    let Some(s) = s else { return Ok(None) };
    let bad = || {
        s3_error!(
            InvalidArgument,
            "the x-amz-copy-source-range value must be of the form bytes=first-last"
        )
    };
    let (first, last) = s
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(Some(ByteRange::FromTo {
        first,
        last: Some(last),
    }))
}

pub async fn upload_part_copy(
    gw: &Gateway,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let (src_bucket, src_key) = source(&input.copy_source)?;
    let range = copy_range(input.copy_source_range.as_deref())?;
    let src = gw.store.get_object(src_bucket, src_key, range).await.map_err(to_s3)?;
    if let Some(ByteRange::FromTo { last: Some(last), .. }) = range
        && last >= src.meta.size
    {
        return Err(s3_error!(InvalidRange, "the copy source range is outside the object"));
    }
    Preconditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    }
    .check(&src.meta, precondition_failed)?;
    let part_number = u32::try_from(input.part_number).map_err(|_| s3_error!(InvalidArgument, "bad part number"))?;
    let (_reserved, _) = gw.reserve_part(Some(src.span.end - src.span.start))?;
    let part = gw
        .store
        .upload_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            part_number,
            src.body,
            PutOptions::default(),
        )
        .await
        .map_err(to_s3)?;
    gw.part_staged(part.size);
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(convert::etag(&part.etag)),
            last_modified: Some(convert::timestamp_ms(part.last_modified_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}
