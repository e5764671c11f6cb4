//! DeleteObject and DeleteObjects (quiet and verbose).

use s3s::dto::{DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput, DeleteObjectsOutput, DeletedObject, Error};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::Gateway;
use crate::error::to_s3;

const MAX_DELETE_KEYS: usize = 1000;

pub async fn delete_object(
    gw: &Gateway,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    gw.store.delete_object(&input.bucket, &input.key).await.map_err(to_s3)?;
    Ok(S3Response::with_status(
        DeleteObjectOutput::default(),
        hyper::StatusCode::NO_CONTENT,
    ))
}

pub async fn delete_objects(
    gw: &Gateway,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    let objects = input.delete.objects;
    if objects.len() > MAX_DELETE_KEYS {
        return Err(s3_error!(MalformedXML, "at most 1000 keys per DeleteObjects request"));
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    gw.store.head_bucket(&input.bucket).await.map_err(to_s3)?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for obj in objects {
        match gw.store.delete_object(&input.bucket, &obj.key).await {
            Ok(()) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(obj.key),
                        ..Default::default()
                    });
                }
            }
            Err(e) => {
                let e = to_s3(e);
                errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    message: e.message().map(str::to_owned),
                    key: Some(obj.key),
                    version_id: None,
                });
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: (!deleted.is_empty()).then_some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    }))
}
