//! GetObjectAttributes: what a client asks to know about an object without reading it
//! (ETag, checksum, size, storage class, and a multipart object's parts, paged).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::Gateway;
use crate::convert;
use crate::error::to_s3;

const MAX_PARTS: usize = 1000;

pub async fn get_object_attributes(
    gw: &Gateway,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    let wanted = |name: &str| input.object_attributes.iter().any(|a| a.as_str() == name);
    let known = [
        ObjectAttributes::CHECKSUM,
        ObjectAttributes::ETAG,
        ObjectAttributes::OBJECT_PARTS,
        ObjectAttributes::OBJECT_SIZE,
        ObjectAttributes::STORAGE_CLASS,
    ];
    if input.object_attributes.is_empty() || input.object_attributes.iter().any(|a| !known.contains(&a.as_str())) {
        return Err(s3_error!(
            InvalidArgument,
            "Invalid attribute name specified: x-amz-object-attributes takes ETag, Checksum, ObjectParts, ObjectSize, StorageClass"
        ));
    }
    let max_parts = match input.max_parts {
        None => MAX_PARTS,
        Some(n) if n >= 0 => (n as usize).min(MAX_PARTS),
        Some(_) => return Err(s3_error!(InvalidArgument, "max-parts must be non-negative")),
    };
    let marker = match input.part_number_marker {
        None => 0,
        Some(m) if m >= 0 => m as usize,
        Some(_) => return Err(s3_error!(InvalidArgument, "part-number-marker must not be negative")),
    };
    let meta = gw.store.head_object(&input.bucket, &input.key).await.map_err(to_s3)?;
    let checksum = (wanted(ObjectAttributes::CHECKSUM) && !meta.checksums.is_empty()).then(|| {
        let c = convert::checksum_fields(&meta.checksums);
        Checksum {
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_crc64nvme: c.crc64nvme,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_type: convert::checksum_type(&meta.checksums),
        }
    });
    // S3 describes parts only for objects uploaded in parts.
    let object_parts = (wanted(ObjectAttributes::OBJECT_PARTS) && !meta.part_sizes.is_empty()).then(|| {
        let parts: Vec<ObjectPart> = meta
            .part_sizes
            .iter()
            .enumerate()
            .map(|(i, size)| (i + 1, *size))
            .filter(|(n, _)| *n > marker)
            .take(max_parts)
            .map(|(n, size)| ObjectPart {
                part_number: Some(n as i32),
                size: Some(size as i64),
                ..Default::default()
            })
            .collect();
        let last = parts.last().and_then(|p| p.part_number).unwrap_or(marker as i32);
        let is_truncated = (last as usize) < meta.part_sizes.len();
        GetObjectAttributesParts {
            is_truncated: Some(is_truncated),
            max_parts: Some(max_parts as i32),
            next_part_number_marker: Some(last),
            part_number_marker: Some(marker as i32),
            parts: Some(parts),
            total_parts_count: Some(meta.part_sizes.len() as i32),
        }
    });
    Ok(S3Response::new(GetObjectAttributesOutput {
        checksum,
        e_tag: wanted(ObjectAttributes::ETAG).then(|| convert::etag(&meta.etag)),
        last_modified: Some(convert::timestamp_ms(meta.last_modified_ms)),
        object_parts,
        object_size: wanted(ObjectAttributes::OBJECT_SIZE).then_some(meta.size as i64),
        storage_class: wanted(ObjectAttributes::STORAGE_CLASS)
            .then(|| StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}
