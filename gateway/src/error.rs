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

/// An error with the message AWS gives for its code, so that clients print more than the code
/// (the aws CLI shows "Unknown" for an error without one).
pub fn aws(code: S3ErrorCode) -> S3Error {
    match aws_message(&code) {
        Some(message) => S3Error::with_message(code, message),
        None => S3Error::new(code),
    }
}

/// The message AWS gives for `code`, where we know it.
pub fn aws_message(code: &S3ErrorCode) -> Option<&'static str> {
    use S3ErrorCode::*;
    let message = match code {
        NoSuchBucket => "The specified bucket does not exist",
        BucketAlreadyOwnedByYou => "Your previous request to create the named bucket succeeded and you already own it.",
        BucketNotEmpty => "The bucket you tried to delete is not empty",
        InvalidBucketName => "The specified bucket is not valid.",
        NoSuchKey => "The specified key does not exist.",
        KeyTooLongError => "Your key is too long",
        NoSuchUpload => {
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        }
        InvalidPartOrder => "The list of parts was not in ascending order. Parts must be ordered by part number.",
        InvalidRange => "The requested range is not satisfiable",
        PreconditionFailed => "At least one of the pre-conditions you specified did not hold",
        BadDigest => "The Content-MD5 you specified did not match what we received.",
        EntityTooLarge => "Your proposed upload exceeds the maximum allowed object size.",
        InvalidDigest => "The Content-MD5 you specified is not valid.",
        NoSuchCORSConfiguration => "The CORS configuration does not exist",
        InternalError => "We encountered an internal error. Please try again.",
        MalformedXML => "The XML you provided was not well-formed or did not validate against our published schema.",
        AccessDenied => "Access Denied",
        SignatureDoesNotMatch => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        InvalidArgument => "Invalid Argument",
        MethodNotAllowed => "The specified method is not allowed against this resource.",
        _ => return None,
    };
    Some(message)
}

pub fn to_s3(err: StoreError) -> S3Error {
    match err {
        StoreError::NoSuchBucket => aws(S3ErrorCode::NoSuchBucket),
        StoreError::BucketAlreadyExists => aws(S3ErrorCode::BucketAlreadyOwnedByYou),
        StoreError::ReservedBucketName => s3_error!(BucketAlreadyExists, "this bucket name is reserved by the relay"),
        StoreError::BucketNotEmpty => aws(S3ErrorCode::BucketNotEmpty),
        StoreError::InvalidBucketName => aws(S3ErrorCode::InvalidBucketName),
        StoreError::NoSuchKey => aws(S3ErrorCode::NoSuchKey),
        StoreError::KeyTooLong => aws(S3ErrorCode::KeyTooLongError),
        StoreError::InvalidKey(why) => s3_error!(InvalidArgument, "object key {why}"),
        StoreError::NoSuchUpload => aws(S3ErrorCode::NoSuchUpload),
        StoreError::InvalidArgument(why) => S3Error::with_message(S3ErrorCode::InvalidArgument, why.to_string()),
        StoreError::InvalidPart(msg) => S3Error::with_message(S3ErrorCode::InvalidPart, msg),
        StoreError::InvalidPartOrder => aws(S3ErrorCode::InvalidPartOrder),
        StoreError::EntityTooSmall(n) => s3_error!(EntityTooSmall, "part {n} is smaller than the minimum allowed size"),
        StoreError::InvalidRange { .. } => aws(S3ErrorCode::InvalidRange),
        StoreError::PreconditionFailed => aws(S3ErrorCode::PreconditionFailed),
        StoreError::BadDigest => aws(S3ErrorCode::BadDigest),
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
        StoreError::BackendRefused(why) => {
            tracing::warn!(%why, "a storage backend refused the relay's credentials or setup");
            s3_error!(ServiceUnavailable, "the storage backends are unavailable; retry later")
        }
        StoreError::Setup(why) => {
            tracing::error!(%why, "the store is misconfigured");
            s3_error!(InternalError, "the relay's storage is misconfigured")
        }
        StoreError::Io(e) => {
            tracing::error!(error = %e, "storage I/O failed");
            s3_error!(InternalError, "storage I/O failed")
        }
    }
}

fn body_error(e: &std::io::Error) -> S3Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<BodyError>()) {
        Some(BodyError::TooLarge { .. }) => aws(S3ErrorCode::EntityTooLarge),
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
