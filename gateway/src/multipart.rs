//! Multipart uploads: create, upload parts, complete (validated, AWS ETags), abort, list.

use backends::{CompletedPart as StorePart, PutOptions, StoreError, UploadChecksum};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::Gateway;
use crate::body::{BodyChecks, request_body};
use crate::convert;
use crate::error::to_s3;
use crate::put::{apply_write_conditions, requested_algorithms};

const MAX_PARTS_PER_PAGE: usize = 1000;

pub async fn create(
    gw: &Gateway,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    crate::access::owner_only_acl!(input)?;
    let algorithm = convert::algorithm(input.checksum_algorithm.as_ref())?;
    let checksum = upload_checksum(algorithm, input.checksum_type.as_ref())?;
    let attrs = convert::attrs(
        input.content_type,
        input.cache_control,
        input.content_disposition,
        input.content_encoding,
        input.content_language,
        input.expires.as_ref(),
        input.metadata,
    );
    let upload_id = gw
        .store
        .create_multipart(&input.bucket, &input.key, attrs, checksum)
        .await
        .map_err(to_s3)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_algorithm: input.checksum_algorithm,
        checksum_type: checksum.map(|c| checksum_type_of(&c)),
        ..Default::default()
    }))
}

/// The checksum an upload's object will carry, from CreateMultipartUpload's algorithm and
/// `x-amz-checksum-type`, refused as S3 refuses the combinations it does not support.
fn upload_checksum(
    algorithm: Option<backends::ChecksumAlgorithm>,
    requested: Option<&ChecksumType>,
) -> S3Result<Option<UploadChecksum>> {
    use backends::ChecksumAlgorithm as A;
    let Some(algorithm) = algorithm else {
        return match requested {
            None => Ok(None),
            Some(_) => Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header"
            )),
        };
    };
    let is_crc = matches!(algorithm, A::Crc32 | A::Crc32c | A::Crc64nvme);
    let full_object = match requested.map(ChecksumType::as_str) {
        // CRC64NVME exists only as a whole-object checksum.
        None => algorithm == A::Crc64nvme,
        Some(ChecksumType::FULL_OBJECT) if is_crc => true,
        Some(ChecksumType::COMPOSITE) if algorithm != A::Crc64nvme => false,
        Some(kind) => {
            return Err(s3_error!(
                InvalidRequest,
                "The {kind} checksum type cannot be used with the {} checksum algorithm",
                algorithm.s3_name().to_lowercase()
            ));
        }
    };
    Ok(Some(UploadChecksum { algorithm, full_object }))
}

fn checksum_type_of(c: &UploadChecksum) -> ChecksumType {
    ChecksumType::from_static(if c.full_object {
        ChecksumType::FULL_OBJECT
    } else {
        ChecksumType::COMPOSITE
    })
}

pub async fn upload_part(gw: &Gateway, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
    let checks = BodyChecks::from_request(&req)?;
    let input = req.input;
    gw.check_declared_size(input.content_length)?;
    convert::check_content_md5(input.content_md5.as_ref())?;
    let part_number = u32::try_from(input.part_number).map_err(|_| s3_error!(InvalidArgument, "bad part number"))?;
    let opts = PutOptions {
        compute: requested_algorithms(convert::algorithm(input.checksum_algorithm.as_ref())?, checks.trailer()),
        content_md5: input.content_md5,
        expected: convert::checksums_of!(input),
        ..Default::default()
    };
    let (_reserved, limit) = gw.reserve_part(checks.declared_size(input.content_length))?;
    let body = request_body(input.body, limit, checks);
    let part = gw
        .store
        .upload_part(&input.bucket, &input.key, &input.upload_id, part_number, body, opts)
        .await
        .map_err(to_s3)?;
    gw.part_staged(part.size);
    let c = convert::checksum_fields(&part.checksums);
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(convert::etag(&part.etag)),
        checksum_crc32: c.crc32,
        checksum_crc32c: c.crc32c,
        checksum_crc64nvme: c.crc64nvme,
        checksum_sha1: c.sha1,
        checksum_sha256: c.sha256,
        ..Default::default()
    }))
}

pub async fn complete(
    gw: &Gateway,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let parts = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let part_number = p
                .part_number
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| s3_error!(InvalidPart, "missing part number"))?;
            let etag = p
                .e_tag
                .map(ETag::into_value)
                .ok_or_else(|| s3_error!(InvalidPart, "missing ETag"))?;
            Ok(StorePart { part_number, etag })
        })
        .collect::<S3Result<Vec<_>>>()?;
    if parts.is_empty() {
        return Err(s3_error!(MalformedXML, "the request lists no parts"));
    }
    let mut opts = PutOptions {
        // What the client computed over what it uploaded: checked before anything commits.
        expected: convert::checksums_of!(input),
        ..PutOptions::default()
    };
    apply_write_conditions(&mut opts, input.if_match, input.if_none_match)?;
    gw.check_completion(&input.bucket, &input.key, &input.upload_id, &parts)
        .await?;
    // In a task of its own: a client that hangs up mid-completion (and will retry) must not
    // cancel it between the store's commit and its being remembered.
    let completion = tokio::spawn({
        let (store, completed) = (gw.store.clone(), gw.completed.clone());
        let (bucket, key, upload_id, parts) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
            parts.clone(),
        );
        async move {
            let meta = store
                .complete_multipart(&bucket, &key, &upload_id, &parts, opts)
                .await?;
            completed.remember(&bucket, &key, &upload_id, &parts, &meta);
            Ok::<_, StoreError>(meta)
        }
    });
    let completed = completion
        .await
        .map_err(|e| s3_error!(InternalError, "completing the upload failed: {e}"))?;
    let meta = match completed {
        Ok(meta) => {
            gw.upload_ended();
            meta
        }
        // The same completion again (an SDK retrying after a lost answer): the same answer,
        // as long as the object it made is still the one under the key.
        Err(StoreError::NoSuchUpload) => {
            let made = gw.completed.made(&input.bucket, &input.key, &input.upload_id, &parts);
            let current = gw.store.head_object(&input.bucket, &input.key).await.ok();
            match (made, current) {
                (Some(made), Some(current)) if made.etag == current.etag => made,
                _ => return Err(to_s3(StoreError::NoSuchUpload)),
            }
        }
        Err(e) => return Err(to_s3(e)),
    };
    let c = convert::checksum_fields(&meta.checksums);
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        e_tag: Some(convert::etag(&meta.etag)),
        checksum_crc32: c.crc32,
        checksum_crc32c: c.crc32c,
        checksum_crc64nvme: c.crc64nvme,
        checksum_sha1: c.sha1,
        checksum_sha256: c.sha256,
        checksum_type: convert::checksum_type(&meta.checksums),
        ..Default::default()
    }))
}

pub async fn abort(
    gw: &Gateway,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    gw.store
        .abort_multipart(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(to_s3)?;
    gw.upload_ended();
    Ok(S3Response::with_status(
        AbortMultipartUploadOutput::default(),
        hyper::StatusCode::NO_CONTENT,
    ))
}

pub async fn list_parts(gw: &Gateway, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let upload = gw
        .store
        .list_parts(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(to_s3)?;
    let max = input
        .max_parts
        .map_or(MAX_PARTS_PER_PAGE, |m| (m.max(0) as usize).min(MAX_PARTS_PER_PAGE));
    let marker = input
        .part_number_marker
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0);
    let remaining: Vec<_> = upload.parts.into_iter().filter(|p| p.part_number > marker).collect();
    let truncated = remaining.len() > max;
    let page: Vec<_> = remaining.into_iter().take(max).collect();
    let next = truncated.then(|| page.last().map(|p| p.part_number as i32)).flatten();
    let parts = page
        .into_iter()
        .map(|p| {
            let c = convert::checksum_fields(&p.checksums);
            Part {
                part_number: Some(p.part_number as i32),
                size: Some(p.size as i64),
                e_tag: Some(convert::etag(&p.etag)),
                last_modified: Some(convert::timestamp_ms(p.last_modified_ms)),
                checksum_crc32: c.crc32,
                checksum_crc32c: c.crc32c,
                checksum_crc64nvme: c.crc64nvme,
                checksum_sha1: c.sha1,
                checksum_sha256: c.sha256,
            }
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        parts: Some(parts),
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        checksum_algorithm: upload
            .checksum
            .map(|c| ChecksumAlgorithm::from(c.algorithm.s3_name().to_owned())),
        checksum_type: upload.checksum.map(|c| checksum_type_of(&c)),
        owner: Some(convert::owner()),
        initiator: Some(Initiator {
            display_name: Some("haven-relay".into()),
            id: Some("haven-relay".into()),
        }),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    gw: &Gateway,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let prefix = input.prefix.clone().unwrap_or_default();
    let uploads = gw
        .store
        .list_multipart_uploads(&input.bucket, &prefix)
        .await
        .map_err(to_s3)?;
    let max = input.max_uploads.map_or(1000, |m| (m.max(0) as usize).min(1000));
    let start = resume_after(&uploads, input.key_marker.as_deref(), input.upload_id_marker.as_deref());
    let mut page: Vec<_> = uploads.into_iter().skip(start).take(max + 1).collect();
    let truncated = page.len() > max;
    page.truncate(max);
    let next_key_marker = truncated.then(|| page.last().map(|u| u.key.clone())).flatten();
    let next_upload_id_marker = truncated.then(|| page.last().map(|u| u.upload_id.clone())).flatten();
    let uploads = page
        .into_iter()
        .map(|u| MultipartUpload {
            key: Some(u.key),
            upload_id: Some(u.upload_id),
            initiated: Some(convert::timestamp_ms(u.initiated_ms)),
            owner: Some(convert::owner()),
            initiator: Some(Initiator {
                display_name: Some("haven-relay".into()),
                id: Some("haven-relay".into()),
            }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker,
        next_upload_id_marker,
        uploads: Some(uploads),
        ..Default::default()
    }))
}

/// Where a ListMultipartUploads page resumes in the store's (key, initiated) order: after
/// every upload of keys before `key_marker`, and, when `upload_id_marker` names one of that
/// key's uploads, after that upload too; without it, after all of `key_marker`'s uploads.
fn resume_after(
    uploads: &[backends::UploadSummary],
    key_marker: Option<&str>,
    upload_id_marker: Option<&str>,
) -> usize {
    let Some(key_marker) = key_marker.filter(|k| !k.is_empty()) else {
        return 0;
    };
    let same_key_start = uploads.partition_point(|u| u.key.as_str() < key_marker);
    let after_key = uploads.partition_point(|u| u.key.as_str() <= key_marker);
    upload_id_marker
        .and_then(|id| {
            uploads[same_key_start..after_key]
                .iter()
                .position(|u| u.upload_id == id)
        })
        .map_or(after_key, |i| same_key_start + i + 1)
}
