//! ListObjects (v1) and ListObjectsV2, paged from a cursor in the store's sorted index.

use backends::{ListPage, ListQuery};
use s3s::dto::{
    CommonPrefix, EncodingType, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input, ListObjectsV2Output, Object,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::Gateway;
use crate::convert;
use crate::error::to_s3;

const MAX_KEYS: usize = 1000;

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be non-negative")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

/// `encoding-type=url`: keys and prefixes go out percent-encoded, as S3 does.
struct Encoder(bool);

impl Encoder {
    fn new(e: Option<&EncodingType>) -> S3Result<Self> {
        match e.map(EncodingType::as_str) {
            None => Ok(Self(false)),
            Some(EncodingType::URL) => Ok(Self(true)),
            Some(_) => Err(s3_error!(InvalidArgument, "invalid encoding-type")),
        }
    }
    fn apply(&self, s: String) -> String {
        if self.0 {
            urlencoding::encode(&s).replace("%2F", "/")
        } else {
            s
        }
    }
    fn opt(&self, s: Option<String>) -> Option<String> {
        s.map(|s| self.apply(s))
    }
}

fn contents(page: &mut ListPage, enc: &Encoder, fetch_owner: bool) -> (Option<Vec<Object>>, Option<Vec<CommonPrefix>>) {
    let objects = std::mem::take(&mut page.objects)
        .into_iter()
        .map(|o| Object {
            key: Some(enc.apply(o.key)),
            size: Some(o.size as i64),
            e_tag: Some(convert::etag(&o.etag)),
            last_modified: Some(convert::timestamp_ms(o.last_modified_ms)),
            storage_class: Some(s3s::dto::ObjectStorageClass::from_static(
                s3s::dto::ObjectStorageClass::STANDARD,
            )),
            owner: fetch_owner.then(convert::owner),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let prefixes = std::mem::take(&mut page.common_prefixes)
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc.apply(p)),
        })
        .collect::<Vec<_>>();
    (
        (!objects.is_empty()).then_some(objects),
        (!prefixes.is_empty()).then_some(prefixes),
    )
}

/// A page of the listing. `max-keys=0` asks for nothing: S3 answers an empty page that is not
/// truncated (once it knows the bucket).
async fn page(gw: &Gateway, bucket: &str, query: &ListQuery) -> S3Result<ListPage> {
    if query.max_keys == 0 {
        gw.store.head_bucket(bucket).await.map_err(to_s3)?;
        return Ok(ListPage::default());
    }
    gw.store.list_objects(bucket, query).await.map_err(to_s3)
}

/// Continuation tokens are the last key or prefix returned, base64url-encoded: opaque to
/// clients, and a page resumes with one index seek.
pub(crate) fn encode_token(last: &str) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(last.as_bytes())
}

pub(crate) fn decode_token(token: &str) -> S3Result<String> {
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(token.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token provided is incorrect"))
}

pub async fn list_objects_v2(
    gw: &Gateway,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let mut input = req.input;
    // `delimiter=` (empty) is no delimiter, and S3 does not echo it.
    input.delimiter = input.delimiter.filter(|d| !d.is_empty());
    let enc = Encoder::new(input.encoding_type.as_ref())?;
    let start_after = match &input.continuation_token {
        Some(t) => Some(decode_token(t)?),
        None => input.start_after.clone(),
    };
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone(),
        start_after,
        max_keys: max_keys(input.max_keys)?,
    };
    let mut page = page(gw, &input.bucket, &query).await?;
    let (contents, common_prefixes) = contents(&mut page, &enc, input.fetch_owner.unwrap_or(false));
    let key_count = contents.as_ref().map_or(0, Vec::len) + common_prefixes.as_ref().map_or(0, Vec::len);
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(enc.apply(query.prefix)),
        delimiter: enc.opt(input.delimiter),
        max_keys: Some(query.max_keys as i32),
        key_count: Some(key_count as i32),
        continuation_token: input.continuation_token,
        next_continuation_token: page.truncated.then(|| page.last.as_deref().map(encode_token)).flatten(),
        is_truncated: Some(page.truncated),
        start_after: enc.opt(input.start_after),
        encoding_type: input.encoding_type,
        contents,
        common_prefixes,
        ..Default::default()
    }))
}

pub async fn list_objects(gw: &Gateway, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
    let mut input = req.input;
    // `delimiter=` (empty) is no delimiter, and S3 does not echo it.
    input.delimiter = input.delimiter.filter(|d| !d.is_empty());
    let enc = Encoder::new(input.encoding_type.as_ref())?;
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone(),
        start_after: input.marker.clone().filter(|m| !m.is_empty()),
        max_keys: max_keys(input.max_keys)?,
    };
    let mut page = page(gw, &input.bucket, &query).await?;
    let (contents, common_prefixes) = contents(&mut page, &enc, true);
    // S3 returns NextMarker only with a delimiter; without one clients use the last key.
    let next_marker = (page.truncated && input.delimiter.is_some())
        .then(|| enc.opt(page.last.clone()))
        .flatten();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(enc.apply(query.prefix)),
        delimiter: enc.opt(input.delimiter),
        marker: Some(enc.apply(input.marker.unwrap_or_default())),
        max_keys: Some(query.max_keys as i32),
        is_truncated: Some(page.truncated),
        next_marker,
        encoding_type: input.encoding_type,
        contents,
        common_prefixes,
        ..Default::default()
    }))
}
