//! Where things live under the store root.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_stay_inside_the_bucket() {
        let layout = Layout::new(PathBuf::from("/store"));
        for key in ["../x", "a/../../b", "/abs", "..", "a\\..\\b"] {
            let path = layout.object_file("bkt", key);
            assert!(path.starts_with("/store/buckets/bkt/objects/"), "{key}: {path:?}");
            assert_eq!(path.components().count(), 7, "{key}: {path:?}");
        }
    }
}
