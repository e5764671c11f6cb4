//! Every storage failure becomes exactly one S3 error, decided here and nowhere else.

use backends::StoreError;
use s3s::{S3Error, S3ErrorCode, s3_error};

/// Failures of a request body that the store only sees as an I/O error.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the object is larger than this relay accepts ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("the {0} checksum in the trailer does not match the body")]
    TrailerMismatch(&'static str),
    #[error("the body ended without the announced {0} trailer")]
    MissingTrailer(&'static str),
    #[error("the payload's length differs from x-amz-decoded-content-length")]
    LengthMismatch,
    #[error("malformed aws-chunked body: {0}")]
    Malformed(&'static str),
    #[error("x-amz-content-sha256 does not match the payload")]
    Sha256Mismatch,
}

pub fn to_s3(err: StoreError) -> S3Error {
    match err {
        StoreError::NoSuchBucket => s3_error!(NoSuchBucket),
        StoreError::BucketAlreadyExists => s3_error!(BucketAlreadyOwnedByYou),
        StoreError::ReservedBucketName => s3_error!(BucketAlreadyExists, "this bucket name is reserved by the relay"),
        StoreError::BucketNotEmpty => s3_error!(BucketNotEmpty),
        StoreError::InvalidBucketName => s3_error!(InvalidBucketName),
        StoreError::NoSuchKey => s3_error!(NoSuchKey),
        StoreError::KeyTooLong => s3_error!(KeyTooLongError),
        StoreError::InvalidKey(why) => s3_error!(InvalidArgument, "object key {why}"),
        StoreError::NoSuchUpload => s3_error!(NoSuchUpload),
        StoreError::InvalidArgument(msg) => S3Error::with_message(S3ErrorCode::InvalidArgument, msg),
        StoreError::InvalidPart(msg) => S3Error::with_message(S3ErrorCode::InvalidPart, msg),
        StoreError::InvalidPartOrder => s3_error!(InvalidPartOrder),
        StoreError::EntityTooSmall(n) => s3_error!(EntityTooSmall, "part {n} is smaller than the minimum allowed size"),
        StoreError::InvalidRange { .. } => s3_error!(InvalidRange),
        StoreError::PreconditionFailed => s3_error!(PreconditionFailed),
        StoreError::BadDigest => s3_error!(BadDigest),
        // 501, which clients do not retry: retrying cannot make a connection-only relay store.
        StoreError::NoStorage => S3Error::with_message(S3ErrorCode::NotImplemented, StoreError::NoStorage.to_string()),
        StoreError::ChecksumMismatch(algo) => {
            s3_error!(
                BadDigest,
                "the {algo} you specified did not match the calculated checksum"
            )
        }
        StoreError::Body(e) => body_error(&e),
        StoreError::Corrupt(why) => {
            tracing::error!(%why, "stored data is corrupt");
            s3_error!(InternalError, "stored data failed an integrity check")
        }
        StoreError::InUse(_) | StoreError::OwnedByAnother(_) => {
            s3_error!(InternalError, "the store is in use by another process")
        }
        StoreError::Unavailable(why) => {
            tracing::warn!(%why, "storage backend unavailable");
            s3_error!(ServiceUnavailable, "the storage backends are unavailable; retry later")
        }
        StoreError::Io(e) => {
            tracing::error!(error = %e, "storage I/O failed");
            s3_error!(InternalError, "storage I/O failed")
        }
    }
}

fn body_error(e: &std::io::Error) -> S3Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<BodyError>()) {
        Some(BodyError::TooLarge { .. }) => s3_error!(EntityTooLarge),
        Some(BodyError::TrailerMismatch(algo)) => {
            s3_error!(
                BadDigest,
                "the {algo} you specified did not match the calculated checksum"
            )
        }
        Some(BodyError::MissingTrailer(algo)) => {
            s3_error!(InvalidRequest, "missing {algo} checksum trailer")
        }
        Some(BodyError::LengthMismatch) => s3_error!(
            IncompleteBody,
            "the decoded payload's length differs from x-amz-decoded-content-length"
        ),
        Some(e @ BodyError::Sha256Mismatch) => S3Error::with_message(S3ErrorCode::BadDigest, e.to_string()),
        Some(e @ BodyError::Malformed(_)) => S3Error::with_message(S3ErrorCode::InvalidRequest, e.to_string()),
        None => {
            tracing::debug!(error = %e, "request body failed");
            s3_error!(IncompleteBody, "the request body could not be read completely")
        }
    }
}
