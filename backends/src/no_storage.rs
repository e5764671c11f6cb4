//! `--no-storage`: a connection-only relay. Every storage call is refused with one clear error,
//! so S3 clients learn why instead of seeing an empty relay they could mistake for data loss.

use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::model::*;
use crate::store::{ByteStream, Store};

#[derive(Debug, Default, Clone, Copy)]
pub struct NoStorage;

#[async_trait::async_trait]
impl Store for NoStorage {
    async fn create_bucket(&self, _: &str) -> Result<()> {
        Err(StoreError::NoStorage)
    }
    async fn delete_bucket(&self, _: &str) -> Result<()> {
        Err(StoreError::NoStorage)
    }
    async fn head_bucket(&self, _: &str) -> Result<BucketInfo> {
        Err(StoreError::NoStorage)
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        Err(StoreError::NoStorage)
    }
    async fn get_bucket_doc(&self, _: &str, _: &str) -> Result<Option<Bytes>> {
        Err(StoreError::NoStorage)
    }
    async fn put_bucket_doc(&self, _: &str, _: &str, _: Option<Bytes>) -> Result<()> {
        Err(StoreError::NoStorage)
    }
    async fn put_object(&self, _: &str, _: &str, _: ObjectAttrs, _: ByteStream, _: PutOptions) -> Result<ObjectMeta> {
        Err(StoreError::NoStorage)
    }
    async fn get_object(&self, _: &str, _: &str, _: Option<ByteRange>) -> Result<GetResult> {
        Err(StoreError::NoStorage)
    }
    async fn head_object(&self, _: &str, _: &str) -> Result<ObjectMeta> {
        Err(StoreError::NoStorage)
    }
    async fn delete_object(&self, _: &str, _: &str) -> Result<()> {
        Err(StoreError::NoStorage)
    }
    async fn list_objects(&self, _: &str, _: &ListQuery) -> Result<ListPage> {
        Err(StoreError::NoStorage)
    }
    async fn create_multipart(
        &self,
        _: &str,
        _: &str,
        _: ObjectAttrs,
        _: Option<crate::UploadChecksum>,
    ) -> Result<String> {
        Err(StoreError::NoStorage)
    }
    async fn upload_part(&self, _: &str, _: &str, _: &str, _: u32, _: ByteStream, _: PutOptions) -> Result<PartMeta> {
        Err(StoreError::NoStorage)
    }
    async fn list_parts(&self, _: &str, _: &str, _: &str) -> Result<UploadInfo> {
        Err(StoreError::NoStorage)
    }
    async fn complete_multipart(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &[CompletedPart],
        _: PutOptions,
    ) -> Result<ObjectMeta> {
        Err(StoreError::NoStorage)
    }
    async fn abort_multipart(&self, _: &str, _: &str, _: &str) -> Result<()> {
        Err(StoreError::NoStorage)
    }
    async fn list_multipart_uploads(&self, _: &str, _: &str) -> Result<Vec<UploadSummary>> {
        Err(StoreError::NoStorage)
    }
}
