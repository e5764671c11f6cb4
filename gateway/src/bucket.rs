//! Bucket operations: create, head, delete, list, location.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use crate::Gateway;
use crate::convert;
use crate::error::to_s3;

pub async fn create_bucket(
    gw: &Gateway,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let bucket = req.input.bucket;
    gw.store.create_bucket(&bucket).await.map_err(to_s3)?;
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{bucket}")),
    }))
}

pub async fn head_bucket(gw: &Gateway, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
    gw.store.head_bucket(&req.input.bucket).await.map_err(to_s3)?;
    Ok(S3Response::new(HeadBucketOutput::default()))
}

pub async fn delete_bucket(
    gw: &Gateway,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    gw.store.delete_bucket(&req.input.bucket).await.map_err(to_s3)?;
    Ok(S3Response::with_status(
        DeleteBucketOutput::default(),
        hyper::StatusCode::NO_CONTENT,
    ))
}

pub async fn list_buckets(gw: &Gateway, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
    let buckets = gw
        .store
        .list_buckets()
        .await
        .map_err(to_s3)?
        .into_iter()
        .map(|b| Bucket {
            name: Some(b.name),
            creation_date: Some(Timestamp::from(b.created)),
            bucket_region: None,
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(convert::owner()),
        ..Default::default()
    }))
}

pub async fn get_bucket_location(
    gw: &Gateway,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    gw.store.head_bucket(&req.input.bucket).await.map_err(to_s3)?;
    // An empty LocationConstraint means us-east-1, the region clients sign for by default.
    Ok(S3Response::new(GetBucketLocationOutput::default()))
}
