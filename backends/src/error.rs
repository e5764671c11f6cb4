use std::io;
use std::time::Duration;

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
    InvalidArgument(InvalidArgument),
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
    Unavailable(Unavailable),
    /// A backend refused the relay itself (credentials, permissions, its configuration):
    /// counted as down like [`StoreError::Unavailable`], but named for what it is, since it
    /// lasts until someone fixes the keys or the setup.
    #[error("a storage backend refused the relay (check its credentials and permissions): {0}")]
    BackendRefused(String),
    /// The store cannot be opened as configured (found at start, never per request).
    #[error("{0}")]
    Setup(Setup),
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
}

/// A request argument the store refuses (S3's InvalidArgument; the text is its message).
#[derive(Debug, thiserror::Error)]
pub enum InvalidArgument {
    #[error("part number must be between 1 and {max}")]
    PartNumber { max: u32 },
    #[error("at least one part must be specified")]
    NoParts,
}

/// A store configured in a way it cannot run (found at start, or by a background task that
/// uses the configuration, such as the S3 upload janitor).
#[derive(Debug, thiserror::Error)]
pub enum Setup {
    #[error("a mirror set needs at least one backend")]
    NoBackends,
    #[error("the same backend is listed twice")]
    BackendListedTwice,
    #[error("S3 backend settings: {0}")]
    S3Settings(String),
}

/// Why storage cannot serve now. Each is a 503 to the client; the reason goes to the log and
/// to `doctor`, so it names what to look at.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// A local directory (a hung NAS mount, a dying disk) did not answer in time.
    #[error("the directory did not answer {what} within {} s", .after.as_secs_f32())]
    Timeout { what: &'static str, after: Duration },
    /// What a remote backend, or the network on the way to it, said.
    #[error("{0}")]
    Remote(String),
    /// A remote backend answered with an S3 error status.
    #[error("the backend answered {status} {code}")]
    Status { status: u16, code: String },
    /// A body being read from a backend broke off.
    #[error("reading from a backend: {0}")]
    Read(io::Error),
    #[error("stored on {stored} of {mirrors} mirrors, {needed} required")]
    TooFewCopies {
        stored: usize,
        mirrors: usize,
        needed: usize,
    },
    #[error("no mirror accepted the write")]
    NoMirrorAccepted,
    /// The write to this mirror stopped because the object was not committed.
    #[error("the write was abandoned")]
    WriteAbandoned,
    #[error("no configured mirror holds this object")]
    NotOnAnyMirror,
    #[error("no mirror returned a good copy")]
    NoGoodCopy,
    #[error("the copy ended early")]
    CopyEndedEarly,
    /// The catalog journal's write failed (the text is shared by every change of the batch).
    #[error("writing the catalog journal: {0}")]
    Journal(String),
    #[error("the catalog journal was not written")]
    JournalNotWritten,
    /// The mailbox's delivery receipts could not be stored (shared by the batch's waiters).
    #[error("storing delivery receipts: {0}")]
    Receipts(String),
}

impl From<InvalidArgument> for StoreError {
    fn from(why: InvalidArgument) -> Self {
        StoreError::InvalidArgument(why)
    }
}

impl From<Setup> for StoreError {
    fn from(why: Setup) -> Self {
        StoreError::Setup(why)
    }
}

impl From<Unavailable> for StoreError {
    fn from(why: Unavailable) -> Self {
        StoreError::Unavailable(why)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
