//! S3 lifecycle rules and the relay-wide lifetime (`--ttl`): objects expire, in coarse time.
//!
//! - [`rules`]: the configuration, checked as S3 checks it and kept as a bucket document.
//! - [`Expiring`]: the store the gateway serves; expired objects vanish from every read at
//!   their expiry moment.
//! - [`sweep`]: deletes their bytes later.
//!
//! Expiry is kept to the day: an object lives through its last day (S3's rounding up to the
//! next midnight UTC) and goes at a moment in the 24 hours after it, fixed per object, the
//! same rule as the mailbox's. When an object goes thus says no more than the day.

mod expiring;
pub mod rules;
pub mod sweep;

use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

pub use expiring::Expiring;
use rules::Rules;

use crate::Gateway;
use crate::error::to_s3;

pub async fn put(
    gw: &Gateway,
    req: S3Request<PutBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
    let input = req.input;
    let rules = Rules::from_s3(input.lifecycle_configuration)?;
    // The bucket must exist before its rules are checked against anything.
    gw.store.head_bucket(&input.bucket).await.map_err(to_s3)?;
    let doc = serde_json::to_vec(&rules).map_err(|_| crate::error::aws(s3s::S3ErrorCode::InternalError))?;
    gw.store
        .put_bucket_doc(&input.bucket, expiring::DOC, Some(Bytes::from(doc)))
        .await
        .map_err(to_s3)?;
    Ok(S3Response::new(PutBucketLifecycleConfigurationOutput::default()))
}

pub async fn get(
    gw: &Gateway,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
    let rules = gw.lifecycle.own_rules(&req.input.bucket).await.map_err(to_s3)?;
    let Some(rules) = rules else {
        return Err(s3s::s3_error!(
            NoSuchLifecycleConfiguration,
            "The lifecycle configuration does not exist"
        ));
    };
    Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
        rules: Some(rules.to_s3()),
        ..Default::default()
    }))
}

pub async fn delete(
    gw: &Gateway,
    req: S3Request<DeleteBucketLifecycleInput>,
) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
    gw.store
        .put_bucket_doc(&req.input.bucket, expiring::DOC, None)
        .await
        .map_err(to_s3)?;
    Ok(S3Response::with_status(
        DeleteBucketLifecycleOutput::default(),
        hyper::StatusCode::NO_CONTENT,
    ))
}
