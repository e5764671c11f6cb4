//! Where things live under the store root, and the name checks that keep them there.
//!
//! ```text
//! <root>/tmp/                              staging; wiped on start
//! <root>/buckets/<bucket>/bucket.json      creation time
//! <root>/buckets/<bucket>/docs/<name>      bucket documents (CORS rules)
//! <root>/buckets/<bucket>/objects/<hh>/<sha256(key)>   one file per object
//! <root>/buckets/<bucket>/uploads/<id>/    multipart uploads in progress
//! <root>/buckets/<bucket>/blobs/<id>/      parts of completed multipart objects
//! ```
//! Object files are named by the SHA-256 of the key, so no key (`../x`, `/abs`, 1 KiB of
//! unicode) ever becomes a path component; the key itself lives in the file's metadata.

use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::error::{Result, StoreError};

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn tmp_file(&self) -> PathBuf {
        self.tmp_dir().join(uuid::Uuid::new_v4().simple().to_string())
    }
    pub fn buckets_dir(&self) -> PathBuf {
        self.root.join("buckets")
    }
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.buckets_dir().join(bucket)
    }
    pub fn doc_file(&self, bucket: &str, name: &str) -> PathBuf {
        self.bucket_dir(bucket).join("docs").join(name)
    }
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        let hash = crate::digest::hex(&sha2::Sha256::digest(key.as_bytes()));
        self.bucket_dir(bucket).join("objects").join(&hash[..2]).join(hash)
    }
    pub fn uploads_dir(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join("uploads")
    }
    pub fn upload_dir(&self, bucket: &str, upload_id: &str) -> PathBuf {
        self.uploads_dir(bucket).join(upload_id)
    }
    pub fn blobs_dir(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join("blobs")
    }
    pub fn blob_dir(&self, bucket: &str, blob: &str) -> PathBuf {
        self.blobs_dir(bucket).join(blob)
    }
}

pub(crate) fn part_file_name(part_number: u32) -> String {
    format!("part-{part_number:05}")
}

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
    fn object_paths_stay_inside_the_bucket() {
        let layout = Layout::new(PathBuf::from("/store"));
        for key in ["../x", "a/../../b", "/abs", "..", "a\\..\\b"] {
            let path = layout.object_file("bkt", key);
            assert!(path.starts_with("/store/buckets/bkt/objects/"), "{key}: {path:?}");
            assert_eq!(path.components().count(), 7, "{key}: {path:?}");
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
