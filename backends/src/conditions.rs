//! What every store checks before making a write visible: the client's digests and its
//! conditional-write headers.

use crate::digest::Digests;
use crate::error::{Result, StoreError};
use crate::model::{ChecksumAlgorithm, IfMatch, PutOptions};

/// Content-MD5 and the checksums the client announced, against what the body hashed to.
pub(crate) fn verify_digests(digests: &Digests, opts: &PutOptions) -> Result<()> {
    if let Some(md5) = &opts.content_md5
        && crate::digest::base64_decode(md5).as_deref() != Some(&digests.md5[..])
    {
        return Err(StoreError::BadDigest);
    }
    for (algorithm, expected) in &opts.expected {
        if digests.checksums.get(algorithm) != Some(expected) {
            return Err(StoreError::ChecksumMismatch(algorithm.s3_name()));
        }
    }
    Ok(())
}

/// `If-None-Match: *` and `If-Match` (`*` or an ETag) against the current object's ETag, if
/// there is one.
pub(crate) fn check_write_conditions(current_etag: Option<&str>, opts: &PutOptions) -> Result<()> {
    if opts.if_none_match_any && current_etag.is_some() {
        return Err(StoreError::PreconditionFailed);
    }
    match (&opts.if_match, current_etag) {
        (None, _) | (Some(IfMatch::Any), Some(_)) => {}
        (Some(_), None) => return Err(StoreError::NoSuchKey),
        (Some(IfMatch::ETag(want)), Some(etag)) if etag == want.trim_matches('"') => {}
        (Some(IfMatch::ETag(_)), Some(_)) => return Err(StoreError::PreconditionFailed),
    }
    Ok(())
}

/// Every checksum algorithm a write must compute: requested ones and verified ones, once each.
pub(crate) fn unique_algorithms(opts: &PutOptions) -> Vec<ChecksumAlgorithm> {
    let mut algos: Vec<_> = opts.compute.iter().chain(opts.expected.keys()).copied().collect();
    algos.sort();
    algos.dedup();
    algos
}
