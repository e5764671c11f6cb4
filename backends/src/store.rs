use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::model::*;

/// A streamed body. Errors from a request body surface as [`crate::StoreError::Body`].
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + Sync>>;

/// The one seam between the S3 gateway and storage.
///
/// Contract shared by every implementation:
/// - `put_object` and `complete_multipart` return only once data and metadata are durable, and
///   an interrupted write never leaves a partial object visible;
/// - metadata ([`ObjectMeta`]) round-trips exactly and survives restarts;
/// - bucket names and keys are validated here too, so no implementation can be tricked into
///   touching anything outside its own storage.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_bucket(&self, bucket: &str) -> Result<()>;
    /// Fails with `BucketNotEmpty` while objects remain; pending multipart uploads are dropped.
    async fn delete_bucket(&self, bucket: &str) -> Result<()>;
    async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo>;
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>>;
    /// Small per-bucket documents (e.g. the CORS rules), stored opaquely by name.
    async fn get_bucket_doc(&self, bucket: &str, name: &str) -> Result<Option<Bytes>>;
    async fn put_bucket_doc(&self, bucket: &str, name: &str, doc: Option<Bytes>) -> Result<()>;

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta>;
    /// Opens the object; with a range, the stream yields only those bytes.
    async fn get_object(&self, bucket: &str, key: &str, range: Option<ByteRange>) -> Result<GetResult>;
    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta>;
    /// The size of the object under `key`, if there is one, as cheaply as the store can say
    /// (the storage quota asks before every write).
    async fn object_size(&self, bucket: &str, key: &str) -> Option<u64> {
        self.head_object(bucket, key).await.ok().map(|m| m.size)
    }
    /// Idempotent: deleting a missing key succeeds.
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()>;
    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage>;

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        checksum: Option<UploadChecksum>,
    ) -> Result<String>;
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartMeta>;
    async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadInfo>;
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        opts: PutOptions,
    ) -> Result<ObjectMeta>;
    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()>;
    async fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadSummary>>;
}
