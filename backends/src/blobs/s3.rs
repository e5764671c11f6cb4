//! `s3://BUCKET`: blobs in an S3-compatible bucket (R2, B2, MinIO, AWS) through OpenDAL —
//! and, behind a supervised `rclone serve s3`, in any rclone remote.
//!
//! Every operation runs under OpenDAL's timeout layer inside its retry layer: a backend that
//! hangs costs at most `(retries + 1) × timeout`, never a stuck request, and a short outage
//! (rclone being restarted) is ridden over by the retries.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};

use super::s3_uploads::{PendingUpload, UploadJanitor};
use super::{BlobEntry, BlobSink, Blobs};
use crate::error::{Result, Setup, StoreError, Unavailable};
use crate::store::ByteStream;

/// How to reach one bucket. The keys come from the environment or relay.json, never from
/// the command line; `Debug` does not print them.
#[derive(Clone)]
pub struct S3Settings {
    /// `https://<account>.r2.cloudflarestorage.com`, `http://127.0.0.1:9000`, ...
    pub endpoint: String,
    pub bucket: String,
    /// A folder inside the bucket; empty for the bucket root.
    pub root: String,
    /// `auto` suits R2 and most non-AWS services.
    pub region: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Limit for one attempt of one operation, and for each read or write of a transfer.
    pub timeout: Duration,
    /// Extra attempts after a failure.
    pub retries: usize,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

pub struct S3Blobs {
    op: Operator,
    /// The same without the retry layer, for reads another mirror can take over.
    once: Operator,
    uploads: UploadJanitor,
}

/// OpenDAL's HTTP transport and rustls' crypto provider, installed once per process. The
/// `ring` provider is the one iroh already links, so TLS costs no second crypto library.
fn init_http() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
    });
}

impl S3Blobs {
    pub fn new(settings: &S3Settings) -> Result<Self> {
        init_http();
        let mut builder = opendal::services::S3::default()
            .endpoint(&settings.endpoint)
            .bucket(&settings.bucket)
            .root(&format!("/{}", settings.root.trim_matches('/')))
            .region(&settings.region)
            .access_key_id(&settings.access_key_id)
            .secret_access_key(&settings.secret_access_key)
            .disable_config_load()
            .disable_ec2_metadata();
        if !settings.path_style {
            builder = builder.enable_virtual_host_style();
        }
        let once = Operator::new(builder)
            .map_err(|e| Setup::S3Settings(e.to_string()))?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(settings.timeout)
                    .with_io_timeout(settings.timeout),
            );
        let op = once.clone().layer(
            RetryLayer::new()
                .with_max_times(settings.retries)
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_jitter(),
        );
        let uploads = UploadJanitor::new(settings)?;
        Ok(Self { op, once, uploads })
    }
}

/// OpenDAL's error kinds kept apart: a provider that refuses our credentials or our setup
/// will not get better by waiting, and saying "down" would send the operator looking at the
/// network instead of the keys.
fn to_store_error(e: opendal::Error) -> StoreError {
    // With its causes: "error sending request" alone hides "connection refused".
    let text = || {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    };
    match e.kind() {
        opendal::ErrorKind::NotFound => StoreError::NoSuchKey,
        opendal::ErrorKind::PermissionDenied | opendal::ErrorKind::ConfigInvalid => StoreError::BackendRefused(text()),
        _ => Unavailable::Remote(text()).into(),
    }
}

async fn read_with(op: &Operator, path: &str, range: Range<u64>) -> Result<ByteStream> {
    if range.is_empty() {
        // A zero-length range is not expressible as an HTTP Range; make sure it exists.
        op.stat(path).await.map_err(to_store_error)?;
        return Ok(Box::pin(futures::stream::empty()));
    }
    let reader = op.reader(path).await.map_err(to_store_error)?;
    let mut stream = reader.into_bytes_stream(range).await.map_err(to_store_error)?;
    // OpenDAL's stream is not `Sync`; a small channel makes it so and keeps at most two
    // chunks in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}

struct S3Sink {
    writer: opendal::Writer,
}

#[async_trait::async_trait]
impl Blobs for S3Blobs {
    async fn create(&self, path: &str) -> Result<Box<dyn BlobSink>> {
        // Bodies go up in 5 MiB parts (S3's minimum), one at a time: memory per transfer
        // stays at about one part, whatever the object size.
        let writer = self.op.writer_with(path).concurrent(1).await.map_err(to_store_error)?;
        Ok(Box::new(S3Sink { writer }))
    }

    async fn read(&self, path: &str, range: Range<u64>) -> Result<ByteStream> {
        read_with(&self.op, path, range).await
    }

    async fn read_once(&self, path: &str, range: Range<u64>) -> Result<ByteStream> {
        read_with(&self.once, path, range).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.op.delete(path).await {
            Err(e) if e.kind() != opendal::ErrorKind::NotFound => Err(to_store_error(e)),
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>> {
        let mut lister = self
            .op
            .lister_with(prefix)
            .recursive(true)
            .await
            .map_err(to_store_error)?;
        let mut found = Vec::new();
        while let Some(entry) = lister.next().await {
            let entry = entry.map_err(to_store_error)?;
            if entry.metadata().is_dir() {
                continue;
            }
            found.push(BlobEntry {
                path: entry.path().trim_start_matches('/').to_owned(),
                size: entry.metadata().content_length(),
            });
        }
        Ok(found)
    }

    async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        self.uploads.list(prefix).await
    }

    async fn abort_upload(&self, upload: &PendingUpload) -> Result<()> {
        self.uploads.abort(upload).await
    }
}

#[async_trait::async_trait]
impl BlobSink for S3Sink {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.writer.write(chunk).await.map_err(to_store_error)
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.writer.close().await.map(|_| ()).map_err(to_store_error)
    }

    async fn abort(mut self: Box<Self>) {
        let _ = self.writer.abort().await;
    }
}
