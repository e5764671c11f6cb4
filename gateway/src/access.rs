//! Cheap, honest answers to the access settings tools probe: ACLs, public access blocks,
//! versioning and the expected bucket owner.
//!
//! Only the circle ever gets in, with one key, so every bucket and object is private to one
//! owner: ACLs read back as that owner with FULL_CONTROL, and a request for any other grant is
//! refused (`NotImplemented`) rather than silently ignored. Versioning is never on.

use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use crate::Gateway;
use crate::convert;
use crate::error::to_s3;

/// The bucket document holding a bucket's public access block.
const PUBLIC_ACCESS_BLOCK: &str = "publicaccessblock";

/// Canned ACLs that only ever give the owner access: the owner is the only one who writes.
const OWNER_ONLY: [&str; 3] = ["private", "bucket-owner-full-control", "bucket-owner-read"];

fn not_shared() -> S3Error {
    s3_error!(
        NotImplemented,
        "only the circle reaches this relay, with one key: objects and buckets stay private, so ACLs other than private are not supported"
    )
}

/// Every canned ACL S3 knows; any other name is a malformed request, not a sharing one.
const CANNED: [&str; 8] = [
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// Refuses a canned ACL (`x-amz-acl`) or grant header that would share with anyone else.
pub fn check_canned(acl: Option<&str>, grants: &[Option<&String>]) -> S3Result<()> {
    if let Some(acl) = acl.filter(|a| !CANNED.contains(a)) {
        return Err(s3_error!(InvalidArgument, "{acl:?} is not a canned ACL"));
    }
    if acl.is_some_and(|a| !OWNER_ONLY.contains(&a)) || grants.iter().any(Option::is_some) {
        return Err(not_shared());
    }
    Ok(())
}

/// [`check_canned`] on a request's `x-amz-acl` and grant headers (the four every writing
/// request has; name more, such as `grant_write`, where the request has them).
macro_rules! owner_only_acl {
    ($input:expr $(, $more:ident)*) => {
        $crate::access::check_canned(
            $input.acl.as_ref().map(|acl| acl.as_str()),
            &[
                $input.grant_full_control.as_ref(),
                $input.grant_read.as_ref(),
                $input.grant_read_acp.as_ref(),
                $input.grant_write_acp.as_ref(),
                $($input.$more.as_ref(),)*
            ],
        )
    };
}
pub(crate) use owner_only_acl;

/// `x-amz-expected-bucket-owner` (and the copy source's): S3 answers 403 when it names
/// another account. This relay's one owner has the id [`convert::owner`] shows.
pub fn check_expected_owner(headers: &http::HeaderMap) -> Option<S3Error> {
    let owner = convert::owner().id.unwrap_or_default();
    ["x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner"]
        .iter()
        .filter_map(|name| headers.get(*name))
        .any(|value| value.as_bytes() != owner.as_bytes())
        .then(|| s3_error!(AccessDenied, "Access Denied"))
}

fn owner_full_control() -> (Option<Grants>, Option<Owner>) {
    let owner = convert::owner();
    let grant = Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name.clone(),
            email_address: None,
            id: owner.id.clone(),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    };
    (Some(vec![grant]), Some(owner))
}

/// An explicit access control policy is acceptable if it grants only the owner.
fn check_policy(policy: Option<&AccessControlPolicy>) -> S3Result<()> {
    let Some(policy) = policy else { return Ok(()) };
    let owner = convert::owner().id;
    let only_owner = policy.grants.iter().flatten().all(|g| {
        g.grantee
            .as_ref()
            .is_some_and(|who| who.type_.as_str() == Type::CANONICAL_USER && who.id == owner)
    });
    if only_owner { Ok(()) } else { Err(not_shared()) }
}

pub async fn get_bucket_acl(
    gw: &Gateway,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    gw.store.head_bucket(&req.input.bucket).await.map_err(to_s3)?;
    let (grants, owner) = owner_full_control();
    Ok(S3Response::new(GetBucketAclOutput { grants, owner }))
}

pub async fn put_bucket_acl(
    gw: &Gateway,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let input = req.input;
    owner_only_acl!(input, grant_write)?;
    check_policy(input.access_control_policy.as_ref())?;
    gw.store.head_bucket(&input.bucket).await.map_err(to_s3)?;
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub async fn get_object_acl(
    gw: &Gateway,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = req.input;
    gw.store.head_object(&input.bucket, &input.key).await.map_err(to_s3)?;
    let (grants, owner) = owner_full_control();
    Ok(S3Response::new(GetObjectAclOutput {
        grants,
        owner,
        ..Default::default()
    }))
}

pub async fn put_object_acl(
    gw: &Gateway,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let input = req.input;
    owner_only_acl!(input, grant_write)?;
    check_policy(input.access_control_policy.as_ref())?;
    gw.store.head_object(&input.bucket, &input.key).await.map_err(to_s3)?;
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

/// Versioning is never enabled: S3 then answers an empty configuration.
pub async fn get_bucket_versioning(
    gw: &Gateway,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    gw.store.head_bucket(&req.input.bucket).await.map_err(to_s3)?;
    Ok(S3Response::new(GetBucketVersioningOutput::default()))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Block {
    block_public_acls: Option<bool>,
    block_public_policy: Option<bool>,
    ignore_public_acls: Option<bool>,
    restrict_public_buckets: Option<bool>,
}

pub async fn put_public_access_block(
    gw: &Gateway,
    req: S3Request<PutPublicAccessBlockInput>,
) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
    let input = req.input;
    let c = input.public_access_block_configuration;
    let block = Block {
        block_public_acls: c.block_public_acls,
        block_public_policy: c.block_public_policy,
        ignore_public_acls: c.ignore_public_acls,
        restrict_public_buckets: c.restrict_public_buckets,
    };
    let doc = serde_json::to_vec(&block).map_err(|_| crate::error::aws(s3s::S3ErrorCode::InternalError))?;
    gw.store
        .put_bucket_doc(&input.bucket, PUBLIC_ACCESS_BLOCK, Some(Bytes::from(doc)))
        .await
        .map_err(to_s3)?;
    Ok(S3Response::new(PutPublicAccessBlockOutput::default()))
}

pub async fn get_public_access_block(
    gw: &Gateway,
    req: S3Request<GetPublicAccessBlockInput>,
) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
    let doc = gw
        .store
        .get_bucket_doc(&req.input.bucket, PUBLIC_ACCESS_BLOCK)
        .await
        .map_err(to_s3)?;
    let Some(block) = doc.and_then(|d| serde_json::from_slice::<Block>(&d).ok()) else {
        let mut e = S3Error::with_message(
            s3s::S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
            "The public access block configuration was not found",
        );
        e.set_status_code(hyper::StatusCode::NOT_FOUND);
        return Err(e);
    };
    Ok(S3Response::new(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: block.block_public_acls,
            block_public_policy: block.block_public_policy,
            ignore_public_acls: block.ignore_public_acls,
            restrict_public_buckets: block.restrict_public_buckets,
        }),
    }))
}

pub async fn delete_public_access_block(
    gw: &Gateway,
    req: S3Request<DeletePublicAccessBlockInput>,
) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
    gw.store
        .put_bucket_doc(&req.input.bucket, PUBLIC_ACCESS_BLOCK, None)
        .await
        .map_err(to_s3)?;
    Ok(S3Response::with_status(
        DeletePublicAccessBlockOutput::default(),
        hyper::StatusCode::NO_CONTENT,
    ))
}
