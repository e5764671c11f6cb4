//! The `s3s::S3` trait, implemented by delegating each operation to its module.
//! Operations not listed here answer `NotImplemented` (see docs/S3-COMPATIBILITY.md).

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

use crate::quota::Reservation;
use crate::{Gateway, access, attributes, bucket, copy, cors, delete, get, lifecycle, list, multipart, put};

impl Gateway {
    /// Holds the `declared` size of a write to `bucket` against the storage quotas, if there
    /// are any, and gives the cap on its body: without a declared size, what they have room for.
    pub(crate) fn reserve(&self, bucket: &str, declared: Option<u64>) -> S3Result<(Option<Reservation>, u64)> {
        let Some(quota) = &self.quota else {
            return Ok((None, self.max_object_size));
        };
        match declared {
            Some(bytes) => Ok((Some(quota.reserve(Some(bucket), bytes)?), self.max_object_size)),
            None => Ok((None, self.max_object_size.min(quota.room(bucket)))),
        }
    }

    /// As [`Gateway::reserve`] for a multipart part: it counts against the relay's quota now
    /// and against its bucket's when the upload completes.
    pub(crate) fn reserve_part(&self, declared: Option<u64>) -> S3Result<(Option<Reservation>, u64)> {
        let Some(quota) = &self.quota else {
            return Ok((None, self.max_object_size));
        };
        match declared {
            Some(bytes) => Ok((Some(quota.reserve(None, bytes)?), self.max_object_size)),
            None => Ok((None, self.max_object_size.min(quota.max().saturating_sub(quota.used())))),
        }
    }

    /// Refuses a multipart completion whose parts would take `bucket` past its own quota.
    pub(crate) async fn check_completion(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[backends::CompletedPart],
    ) -> S3Result<()> {
        let Some(quota) = self.quota.as_ref().filter(|q| q.limits_bucket(bucket)) else {
            return Ok(());
        };
        let Ok(upload) = self.store.list_parts(bucket, key, upload_id).await else {
            return Ok(()); // the completion itself says what is wrong
        };
        let bytes: u64 = upload
            .parts
            .iter()
            .filter(|p| parts.iter().any(|c| c.part_number == p.part_number))
            .map(|p| p.size)
            .sum();
        let replaced = self.store.object_size(bucket, key).await.unwrap_or(0);
        quota.check_completion(bucket, bytes.saturating_sub(replaced))
    }

    /// As [`Gateway::reserve`] for a write to `bucket`/`key`: what it replaces there is not
    /// counted twice, so an object can be rewritten or re-described at the quota's edge.
    pub(crate) async fn reserve_replacing(
        &self,
        declared: Option<u64>,
        bucket: &str,
        key: &str,
    ) -> S3Result<(Option<Reservation>, u64)> {
        let (Some(_), Some(bytes)) = (&self.quota, declared) else {
            return self.reserve(bucket, declared);
        };
        let replaced = self.store.object_size(bucket, key).await.unwrap_or(0);
        let (reserved, _) = self.reserve(bucket, Some(bytes.saturating_sub(replaced)))?;
        Ok((reserved, self.max_object_size))
    }

    /// Tells the quota that an upload's staged parts are gone (completed or aborted).
    pub(crate) fn upload_ended(&self) {
        if let Some(quota) = &self.quota {
            quota.upload_ended();
        }
    }

    /// Counts a part now staged.
    pub(crate) fn part_staged(&self, bytes: u64) {
        if let Some(quota) = &self.quota {
            quota.part_staged(bytes);
        }
    }

    /// The `x-amz-expiration` header for an object a lifecycle rule will expire: the
    /// midnight (UTC) after its last day, and the rule's id.
    pub(crate) async fn expiration(&self, bucket: &str, meta: &backends::ObjectMeta) -> Option<String> {
        let (last_day, rule) = self.lifecycle.expiration(bucket, meta).await?;
        let midnight = lifecycle::rules::day_timestamp(last_day.plus(1).0)?;
        let date = crate::convert::expires_to_string(Some(&midnight))?;
        Some(format!(
            "expiry-date=\"{date}\", rule-id=\"{}\"",
            rule.unwrap_or_default().replace('"', "")
        ))
    }

    /// Refuses a body whose declared length is already over the cap, before reading it.
    pub(crate) fn check_declared_size(&self, content_length: Option<i64>) -> S3Result<()> {
        match content_length {
            Some(n) if n > 0 && n as u64 > self.max_object_size => {
                Err(crate::error::aws(s3s::S3ErrorCode::EntityTooLarge))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        bucket::list_buckets(self, req).await
    }
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket::create_bucket(self, req).await
    }
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        bucket::head_bucket(self, req).await
    }
    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        bucket::delete_bucket(self, req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        bucket::get_bucket_location(self, req).await
    }
    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
        cors::put(self, req).await
    }
    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
        cors::get(self, req).await
    }
    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        cors::delete(self, req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        lifecycle::put(self, req).await
    }
    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        lifecycle::get(self, req).await
    }
    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        lifecycle::delete(self, req).await
    }

    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
        access::get_bucket_acl(self, req).await
    }
    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
        access::put_bucket_acl(self, req).await
    }
    async fn get_object_acl(&self, req: S3Request<GetObjectAclInput>) -> S3Result<S3Response<GetObjectAclOutput>> {
        access::get_object_acl(self, req).await
    }
    async fn put_object_acl(&self, req: S3Request<PutObjectAclInput>) -> S3Result<S3Response<PutObjectAclOutput>> {
        access::put_object_acl(self, req).await
    }
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        access::get_bucket_versioning(self, req).await
    }
    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        access::put_public_access_block(self, req).await
    }
    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        access::get_public_access_block(self, req).await
    }
    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        access::delete_public_access_block(self, req).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        put::put_object(self, req).await
    }
    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        get::get_object(self, req).await
    }
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        attributes::get_object_attributes(self, req).await
    }
    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        get::head_object(self, req).await
    }
    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        delete::delete_object(self, req).await
    }
    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        delete::delete_objects(self, req).await
    }
    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }
    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        list::list_objects(self, req).await
    }
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        list::list_objects_v2(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }
    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        copy::upload_part_copy(self, req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }
    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }
}
