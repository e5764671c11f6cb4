//! The store as the S3 API sees it: the same, minus the mailbox's bucket.
//!
//! Messages live in the relay's store so that they are as durable as objects (mirrored,
//! repaired, scrubbed), but they are not objects: no S3 request, whatever its credentials or
//! path, can list, read, write or even learn of the mailbox bucket. The gateway is handed
//! this wrapper; only the mailbox holds the store itself.

use std::sync::Arc;

use backends::{
    BucketInfo, ByteRange, ByteStream, CompletedPart, GetResult, ListPage, ListQuery, ObjectAttrs, ObjectMeta,
    PartMeta, PutOptions, Result, Store, StoreError, UploadInfo, UploadSummary,
};

use crate::keys::BUCKET;

pub struct WithoutMailbox(pub Arc<dyn Store>);

fn visible(bucket: &str) -> Result<()> {
    if bucket == BUCKET {
        Err(StoreError::NoSuchBucket)
    } else {
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for WithoutMailbox {
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        if bucket == BUCKET {
            return Err(StoreError::ReservedBucketName);
        }
        self.0.create_bucket(bucket).await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        visible(bucket)?;
        self.0.delete_bucket(bucket).await
    }

    async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo> {
        visible(bucket)?;
        self.0.head_bucket(bucket).await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let mut all = self.0.list_buckets().await?;
        all.retain(|b| b.name != BUCKET);
        Ok(all)
    }

    async fn get_bucket_doc(&self, bucket: &str, name: &str) -> Result<Option<bytes::Bytes>> {
        visible(bucket)?;
        self.0.get_bucket_doc(bucket, name).await
    }

    async fn put_bucket_doc(&self, bucket: &str, name: &str, doc: Option<bytes::Bytes>) -> Result<()> {
        visible(bucket)?;
        self.0.put_bucket_doc(bucket, name, doc).await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        visible(bucket)?;
        self.0.put_object(bucket, key, attrs, body, opts).await
    }

    async fn get_object(&self, bucket: &str, key: &str, range: Option<ByteRange>) -> Result<GetResult> {
        visible(bucket)?;
        self.0.get_object(bucket, key, range).await
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        visible(bucket)?;
        self.0.head_object(bucket, key).await
    }

    async fn object_size(&self, bucket: &str, key: &str) -> Option<u64> {
        visible(bucket).ok()?;
        self.0.object_size(bucket, key).await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        visible(bucket)?;
        self.0.delete_object(bucket, key).await
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        visible(bucket)?;
        self.0.list_objects(bucket, query).await
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        checksum: Option<backends::UploadChecksum>,
    ) -> Result<String> {
        visible(bucket)?;
        self.0.create_multipart(bucket, key, attrs, checksum).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartMeta> {
        visible(bucket)?;
        self.0
            .upload_part(bucket, key, upload_id, part_number, body, opts)
            .await
    }

    async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadInfo> {
        visible(bucket)?;
        self.0.list_parts(bucket, key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        visible(bucket)?;
        self.0.complete_multipart(bucket, key, upload_id, parts, opts).await
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        visible(bucket)?;
        self.0.abort_multipart(bucket, key, upload_id).await
    }

    async fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadSummary>> {
        visible(bucket)?;
        self.0.list_multipart_uploads(bucket, prefix).await
    }
}
