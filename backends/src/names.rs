//! The names clients choose (buckets, keys) and the ones we do (upload ids, document names),
//! checked the same way by every store so that none of them can be tricked into a path.

use crate::error::{Result, StoreError};

/// S3's bucket naming rules; anything else is `InvalidBucketName`.
pub(crate) fn check_bucket_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.");
    if ok { Ok(()) } else { Err(StoreError::InvalidBucketName) }
}

/// Keys are stored by hash, so any UTF-8 is safe on disk; these are the limits S3 itself sets.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey("empty"));
    }
    if key.len() > 1024 {
        return Err(StoreError::KeyTooLong);
    }
    if key.contains('\0') {
        return Err(StoreError::InvalidKey("contains NUL"));
    }
    Ok(())
}

/// Upload ids are ours (32 lowercase hex); anything else cannot name an upload, and so can
/// never become a path.
pub(crate) fn check_upload_id(id: &str) -> Result<()> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(StoreError::NoSuchUpload)
    }
}

/// Document names are ours (`cors`), never the client's.
pub(crate) fn check_doc_name(name: &str) -> Result<()> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(StoreError::InvalidKey("bad document name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for good in ["abc", "my.bucket", "a-b-c", "123", "a.b.c"] {
            assert!(check_bucket_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "ABC",
            "a..b",
            "..",
            "-ab",
            "ab-",
            ".ab",
            "a_b",
            "a/b",
            "a.-b",
            &"a".repeat(64),
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_and_upload_ids_are_checked() {
        assert!(check_key("ok/key with spaces+%").is_ok());
        assert!(matches!(check_key(&"k".repeat(1025)), Err(StoreError::KeyTooLong)));
        assert!(check_key("a\0b").is_err());
        assert!(check_upload_id("../../etc").is_err());
        assert!(check_upload_id("0123456789abcdef0123456789abcdef").is_ok());
    }
}
