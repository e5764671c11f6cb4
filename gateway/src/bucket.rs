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
    let input = &req.input;
    crate::access::owner_only_acl!(input, grant_write)?;
    let bucket = req.input.bucket;
    match gw.store.create_bucket(&bucket).await {
        // AWS in us-east-1, the one region here: creating a bucket you already own is 200 OK
        // ("for legacy compatibility"); other regions answer BucketAlreadyOwnedByYou.
        Ok(()) | Err(backends::StoreError::BucketAlreadyExists) => {}
        Err(e) => return Err(to_s3(e)),
    }
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

/// ListBuckets, paged as AWS pages it when asked (`max-buckets`, `continuation-token`,
/// `prefix`); without `max-buckets` every bucket comes in one answer.
pub async fn list_buckets(gw: &Gateway, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
    let input = req.input;
    let page_size = match input.max_buckets {
        None => usize::MAX,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(_) => {
            return Err(s3s::s3_error!(
                InvalidArgument,
                "max-buckets must be between 1 and 10000"
            ));
        }
    };
    let after = match &input.continuation_token {
        Some(token) => Some(crate::list::decode_token(token)?),
        None => None,
    };
    // Every bucket here is in the one region clients sign for.
    let other_region = input
        .bucket_region
        .as_deref()
        .is_some_and(|r| !r.is_empty() && r != "us-east-1");
    let mut all = gw.store.list_buckets().await.map_err(to_s3)?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let prefix = input.prefix.as_deref().unwrap_or("");
    let mut matching = all
        .into_iter()
        .filter(|b| !other_region && b.name.starts_with(prefix))
        .filter(|b| after.as_deref().is_none_or(|after| b.name.as_str() > after))
        .peekable();
    let mut buckets = Vec::new();
    while buckets.len() < page_size {
        let Some(b) = matching.next() else { break };
        buckets.push(Bucket {
            name: Some(b.name),
            creation_date: Some(Timestamp::from(b.created)),
            bucket_region: Some("us-east-1".into()),
        });
    }
    let continuation_token = matching
        .peek()
        .is_some()
        .then(|| {
            buckets
                .last()
                .and_then(|b| b.name.as_deref())
                .map(crate::list::encode_token)
        })
        .flatten();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(convert::owner()),
        continuation_token,
        prefix: input.prefix,
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
