//! Moving a relay's embedded store onto a mirror set, when it is given backends.

use super::MirrorStore;
use crate::error::{Result, StoreError};
use crate::fs::FsStore;
use crate::model::*;
use crate::store::Store;

impl MirrorStore {
    /// Copies every bucket, bucket document and object of `source` (the embedded store a
    /// relay used before it had backends) into this set, keeping ETags and metadata. Keys
    /// the set already has are left alone, so a cut-short import can simply run again.
    /// Returns how many objects were copied.
    pub async fn import_from(&self, source: &FsStore) -> Result<u64> {
        let mut copied = 0;
        for bucket in source.list_buckets().await? {
            let name = bucket.name;
            match self.create_bucket(&name).await {
                Ok(()) | Err(StoreError::BucketAlreadyExists) => {}
                Err(e) => return Err(e),
            }
            for doc in source.bucket_doc_names(&name).await? {
                let bytes = source.get_bucket_doc(&name, &doc).await?;
                self.put_bucket_doc(&name, &doc, bytes).await?;
            }
            let mut query = ListQuery {
                max_keys: 1000,
                ..ListQuery::default()
            };
            loop {
                let page = source.list_objects(&name, &query).await?;
                for object in &page.objects {
                    if self.inner.catalog.read().object(&name, &object.key).is_ok() {
                        continue;
                    }
                    let got = source.get_object(&name, &object.key, None).await?;
                    let only_if_new = PutOptions {
                        if_none_match_any: true,
                        ..PutOptions::default()
                    };
                    match self.inner.write_known(&name, got.meta, got.body, only_if_new).await {
                        Ok(_) => copied += 1,
                        Err(StoreError::PreconditionFailed) => {}
                        Err(e) => return Err(e),
                    }
                }
                if !page.truncated {
                    break;
                }
                query.start_after = page.last;
            }
        }
        Ok(copied)
    }
}
