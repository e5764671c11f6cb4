//! Uploads completed lately, so that a CompleteMultipartUpload repeated with the same parts
//! (an SDK retrying after a lost response) gets the same answer instead of `NoSuchUpload`, as
//! AWS gives it. Kept in memory, for an hour and at most a few thousand uploads: retries come
//! within seconds, and one after a restart gets `NoSuchUpload` as before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backends::{CompletedPart, ObjectMeta};

const KEEP_FOR: Duration = Duration::from_secs(3600);
const KEEP_AT_MOST: usize = 4096;

/// One completed upload: what it was completed with, and the object it made.
struct Completion {
    at: Instant,
    bucket: String,
    key: String,
    parts: Vec<(u32, String)>,
    meta: ObjectMeta,
}

#[derive(Default)]
pub(crate) struct CompletedUploads {
    inner: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    by_id: HashMap<String, Completion>,
    order: VecDeque<String>,
}

impl CompletedUploads {
    pub(crate) fn remember(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        meta: &ObjectMeta,
    ) {
        let mut recent = self.inner.lock().expect("completed uploads lock");
        recent.by_id.insert(
            upload_id.to_owned(),
            Completion {
                at: Instant::now(),
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                parts: CompletedPart::normalized(parts),
                meta: meta.clone(),
            },
        );
        recent.order.push_back(upload_id.to_owned());
        while recent.order.len() > KEEP_AT_MOST
            || recent
                .order
                .front()
                .and_then(|id| recent.by_id.get(id))
                .is_some_and(|c| c.at.elapsed() > KEEP_FOR)
        {
            if let Some(id) = recent.order.pop_front() {
                recent.by_id.remove(&id);
            }
        }
    }

    /// The object a completion of `upload_id` with exactly these parts made, if one did lately.
    pub(crate) fn made(&self, bucket: &str, key: &str, upload_id: &str, parts: &[CompletedPart]) -> Option<ObjectMeta> {
        let recent = self.inner.lock().expect("completed uploads lock");
        let c = recent.by_id.get(upload_id)?;
        (c.at.elapsed() <= KEEP_FOR
            && c.bucket == bucket
            && c.key == key
            && c.parts == CompletedPart::normalized(parts))
        .then(|| c.meta.clone())
    }
}
