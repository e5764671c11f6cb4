use std::io;

/// Everything a [`crate::Store`] can refuse or fail with. The gateway maps each variant to
/// exactly one S3 error code, so the variants follow S3's vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("bucket already exists")]
    BucketAlreadyExists,
    /// A bucket name the relay keeps for itself (the mailbox's): taken, and not by the client.
    #[error("this bucket name is reserved by the relay")]
    ReservedBucketName,
    #[error("bucket is not empty")]
    BucketNotEmpty,
    #[error("invalid bucket name")]
    InvalidBucketName,
    #[error("no such key")]
    NoSuchKey,
    #[error("object key is not allowed: {0}")]
    InvalidKey(&'static str),
    #[error("object key is longer than 1024 bytes")]
    KeyTooLong,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is smaller than the 5 MiB minimum")]
    EntityTooSmall(u32),
    #[error("the requested range cannot be satisfied (object size {size})")]
    InvalidRange { size: u64 },
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("the Content-MD5 does not match the body")]
    BadDigest,
    #[error("the {0} checksum does not match the body")]
    ChecksumMismatch(&'static str),
    /// The request body stream failed (client went away, size cap, trailer mismatch ...).
    /// The gateway inspects the inner error to pick the S3 code.
    #[error("reading the request body: {0}")]
    Body(io::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("another haven-relay is already using the store at {0}")]
    InUse(std::path::PathBuf),
    #[error(
        "backend {0} belongs to another haven-relay: two relays on one backend would delete each other's objects. Give this relay its own folder (fs:PATH, s3://BUCKET/FOLDER, rclone:REMOTE:FOLDER) or, if that relay is gone for good (a lost data dir, a new machine), start once with --take-over to rebuild its catalog from the backends"
    )]
    OwnedByAnother(String),
    #[error("this relay stores nothing (started with --no-storage)")]
    NoStorage,
    /// Not enough backends answered (a mirror set below its acknowledgement policy, a
    /// timeout, a remote that refused us). Clients may retry.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// A backend refused the relay itself (credentials, permissions, its configuration):
    /// counted as down like [`StoreError::Unavailable`], but named for what it is, since it
    /// lasts until someone fixes the keys or the setup.
    #[error("a storage backend refused the relay (check its credentials and permissions): {0}")]
    BackendRefused(String),
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
