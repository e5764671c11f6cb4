//! The mirror set's catalog: the source of truth for buckets, bucket documents, and for every
//! object its metadata, its blob id and which mirrors hold a copy.
//!
//! Kept in memory and persisted as an append-only journal of JSON lines
//! (`<data-dir>/catalog/journal.jsonl`), fdatasync'ed before a change is acknowledged. On open
//! the journal is replayed (a torn last line from a crash is cut off); at open and while
//! running it is rewritten compactly whenever it has grown well past the live state. Listing therefore never depends on which
//! mirror is up.

mod journal;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chunks::ChunkSums;
use crate::digest::{base64, base64_decode};
use crate::error::{Result, StoreError};
use crate::index::{Entry, Index};
use crate::model::{BucketInfo, ObjectMeta};

use self::journal::{JOURNAL, Journal, Pending};

/// One change, as written to the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Record {
    Bucket {
        name: String,
        created_ms: i64,
    },
    BucketGone {
        name: String,
    },
    Doc {
        bucket: String,
        name: String,
        /// Base64; `None` removes the document.
        doc: Option<String>,
    },
    /// An object written (or overwritten): its blob and the mirrors that acknowledged it.
    Object {
        bucket: String,
        blob: String,
        holders: Vec<String>,
        meta: Box<ObjectMeta>,
    },
    ObjectGone {
        bucket: String,
        key: String,
    },
    /// A mirror gained (repair) or lost (missing, corrupt) its copy of an object's blob.
    Holder {
        bucket: String,
        key: String,
        blob: String,
        mirror: String,
        has: bool,
    },
    /// The chunk sums of an object's blob, computed from a copy that matched its ETag (an
    /// object written before chunk sums existed, found by repair or the scrub).
    Chunks {
        bucket: String,
        key: String,
        blob: String,
        chunks: ChunkSums,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct ObjectRecord {
    pub meta: ObjectMeta,
    pub blob: String,
    pub holders: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub(crate) struct BucketState {
    pub created_ms: i64,
    pub docs: BTreeMap<String, Bytes>,
    pub index: Index,
    pub objects: HashMap<String, ObjectRecord>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub buckets: BTreeMap<String, BucketState>,
}

impl State {
    pub fn bucket(&self, name: &str) -> Result<&BucketState> {
        self.buckets.get(name).ok_or(StoreError::NoSuchBucket)
    }

    pub fn bucket_info(&self, name: &str) -> Result<BucketInfo> {
        let b = self.bucket(name)?;
        Ok(BucketInfo {
            name: name.to_owned(),
            created: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(b.created_ms.max(0) as u64),
        })
    }

    pub fn object(&self, bucket: &str, key: &str) -> Result<&ObjectRecord> {
        self.bucket(bucket)?.objects.get(key).ok_or(StoreError::NoSuchKey)
    }

    /// Every object, with its bucket.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &ObjectRecord)> {
        self.buckets
            .iter()
            .flat_map(|(name, b)| b.objects.values().map(move |o| (name.as_str(), o)))
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Bucket { name, created_ms } => {
                self.buckets.entry(name).or_default().created_ms = created_ms;
            }
            Record::BucketGone { name } => {
                self.buckets.remove(&name);
            }
            Record::Doc { bucket, name, doc } => {
                let Some(b) = self.buckets.get_mut(&bucket) else { return };
                match doc.and_then(|d| base64_decode(&d)) {
                    Some(bytes) => b.docs.insert(name, bytes.into()),
                    None => b.docs.remove(&name),
                };
            }
            Record::Object {
                bucket,
                blob,
                holders,
                meta,
            } => {
                let Some(b) = self.buckets.get_mut(&bucket) else { return };
                b.index.insert(
                    meta.key.clone(),
                    Entry {
                        size: meta.size,
                        etag: meta.etag.clone(),
                        last_modified_ms: meta.last_modified_ms,
                        blob: Some(blob.clone()),
                    },
                );
                let record = ObjectRecord {
                    meta: *meta,
                    blob,
                    holders: holders.into_iter().collect(),
                };
                b.objects.insert(record.meta.key.clone(), record);
            }
            Record::ObjectGone { bucket, key } => {
                let Some(b) = self.buckets.get_mut(&bucket) else { return };
                b.index.remove(&key);
                b.objects.remove(&key);
            }
            Record::Holder {
                bucket,
                key,
                blob,
                mirror,
                has,
            } => {
                let Some(o) = self.buckets.get_mut(&bucket).and_then(|b| b.objects.get_mut(&key)) else {
                    return;
                };
                if o.blob != blob {
                    return; // the object was overwritten since; this copy no longer matters
                }
                if has {
                    o.holders.insert(mirror);
                } else {
                    o.holders.remove(&mirror);
                }
            }
            Record::Chunks {
                bucket,
                key,
                blob,
                chunks,
            } => {
                let Some(o) = self.buckets.get_mut(&bucket).and_then(|b| b.objects.get_mut(&key)) else {
                    return;
                };
                if o.blob == blob && chunks.fit(o.meta.size) {
                    o.meta.chunks = Some(chunks);
                }
            }
        }
    }

    /// Records that rebuild this state from nothing.
    fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (name, b) in &self.buckets {
            out.push(Record::Bucket {
                name: name.clone(),
                created_ms: b.created_ms,
            });
            for (doc_name, doc) in &b.docs {
                out.push(Record::Doc {
                    bucket: name.clone(),
                    name: doc_name.clone(),
                    doc: Some(base64(doc)),
                });
            }
            for o in b.objects.values() {
                out.push(Record::Object {
                    bucket: name.clone(),
                    blob: o.blob.clone(),
                    holders: o.holders.iter().cloned().collect(),
                    meta: Box::new(o.meta.clone()),
                });
            }
        }
        out
    }

    fn live_records(&self) -> usize {
        self.buckets.values().map(|b| 1 + b.docs.len() + b.objects.len()).sum()
    }
}

pub(crate) struct Catalog {
    state: RwLock<State>,
    /// Changes decided (and visible) but not yet durable, in the order they were decided.
    /// Deciding holds this lock, so every decision sees every earlier one.
    pending: std::sync::Mutex<Pending>,
    /// The journal file. Whoever holds it writes every pending change with one fdatasync.
    journal: tokio::sync::Mutex<Journal>,
}

impl Catalog {
    /// Replays (and if worthwhile compacts) the journal in `dir`. Blocking.
    pub fn open(dir: &Path) -> Result<Self> {
        let (state, journal) = Journal::open(dir)?;
        Ok(Self {
            state: RwLock::new(state),
            pending: Default::default(),
            journal: tokio::sync::Mutex::new(journal),
        })
    }

    pub fn exists(dir: &Path) -> bool {
        dir.join(JOURNAL).exists()
    }

    /// Starts a catalog from `records` (a rebuild). Blocking.
    pub fn seed(dir: &Path, records: &[Record]) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        journal::rewrite(dir, records).map(drop).map_err(|e| e.error)
    }

    /// The state as the journal has it, without changing the journal: for looking at the
    /// catalog of a relay that is running. Blocking.
    pub fn peek(dir: &Path) -> Result<State> {
        Ok(journal::replay(&dir.join(JOURNAL), false)?.0)
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("catalog lock")
    }

    /// Makes a change, and answers once it is durable. `decide` sees the current state,
    /// including changes decided before it and not yet durable, with every other decision held
    /// off, and returns the records to write (none: nothing to do) and a result.
    ///
    /// Group commit: the change is applied at once and joins the batch of changes waiting to
    /// be written; whoever next holds the journal writes the whole batch with one fdatasync
    /// and answers every change in it. Readers may therefore see a change up to one fdatasync
    /// before it is acknowledged, never an acknowledged change that is not durable. If the
    /// write fails, every change not yet durable is undone and fails.
    ///
    /// Runs as its own task, so a client hanging up cannot leave journal and memory apart.
    pub async fn change<T, F>(self: &Arc<Self>, decide: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> Result<(Vec<Record>, T)> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move {
            let (batch, out) = {
                let mut pending = this.pending.lock().expect("pending lock");
                let decided = decide(&this.read());
                match decided {
                    Ok((records, out)) if !records.is_empty() => {
                        let batch = pending.add(&records)?;
                        let mut state = this.state.write().expect("catalog lock");
                        for r in records {
                            state.apply(r);
                        }
                        (batch, Ok(out))
                    }
                    // Nothing to write (or refused): the answer may still rest on changes not
                    // yet durable (a 204 for a key whose pending delete may yet be undone), so
                    // it waits for them.
                    decided => match pending.unsettled() {
                        Some(batch) => (batch, decided.map(|(_, out)| out)),
                        None => return decided.map(|(_, out)| out),
                    },
                }
            };
            let mut journal = this.journal.lock().await;
            if !batch.is_done() {
                this.commit_pending(&mut journal).await;
            }
            drop(journal);
            batch.outcome()?;
            out
        })
        .await
        .map_err(io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;
    use crate::error::Unavailable;
    use crate::model::ObjectAttrs;

    fn meta(key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size: 3,
            etag: "abc".into(),
            last_modified_ms: 1,
            attrs: ObjectAttrs::default(),
            checksums: Default::default(),
            part_sizes: vec![],
            chunks: None,
        }
    }

    /// An object record in bucket `b`.
    fn object(key: &str, blob: &str) -> Record {
        Record::Object {
            bucket: "b".into(),
            blob: blob.into(),
            holders: vec!["m".into()],
            meta: Box::new(meta(key)),
        }
    }

    /// A catalog in `dir` holding bucket `b`.
    async fn with_bucket(dir: &Path) -> Arc<Catalog> {
        let catalog = Arc::new(Catalog::open(dir).unwrap());
        let bucket = Record::Bucket {
            name: "b".into(),
            created_ms: 7,
        };
        catalog.change(move |_| Ok((vec![bucket], ()))).await.unwrap();
        catalog
    }

    #[tokio::test]
    async fn changes_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::open(dir.path()).unwrap());
        let put = |key: &'static str| {
            move |_: &State| {
                Ok((
                    vec![Record::Object {
                        bucket: "b".into(),
                        blob: format!("blob-{key}"),
                        holders: vec!["m1".into()],
                        meta: Box::new(meta(key)),
                    }],
                    (),
                ))
            }
        };
        catalog
            .change(|_| {
                Ok((
                    vec![Record::Bucket {
                        name: "b".into(),
                        created_ms: 7,
                    }],
                    (),
                ))
            })
            .await
            .unwrap();
        catalog.change(put("k1")).await.unwrap();
        catalog.change(put("k2")).await.unwrap();
        drop(catalog);
        // A crash in the middle of appending a third record.
        let mut f = OpenOptions::new().append(true).open(dir.path().join(JOURNAL)).unwrap();
        f.write_all(br#"{"op":"object_gone","bucket":"b","ke"#).unwrap();
        drop(f);

        let catalog = Catalog::open(dir.path()).unwrap();
        let state = catalog.read();
        assert_eq!(state.object("b", "k1").unwrap().blob, "blob-k1");
        assert_eq!(state.object("b", "k2").unwrap().holders.len(), 1);
        assert_eq!(state.bucket("b").unwrap().created_ms, 7);
        drop(state);
        let text = std::fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert!(text.ends_with("}\n"), "torn tail not cut: {text}");
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_not_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(JOURNAL),
            "{\"op\":\"bucket\",\"name\":\"b\",\"created_ms\":1}\ngarbage\n{\"op\":\"bucket_gone\",\"name\":\"b\"}\n",
        )
        .unwrap();
        assert!(matches!(Catalog::open(dir.path()), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn compaction_keeps_the_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = String::from("{\"op\":\"bucket\",\"name\":\"b\",\"created_ms\":1}\n");
        for i in 0..3000 {
            let m = serde_json::to_string(&Record::Object {
                bucket: "b".into(),
                blob: format!("x{i}"),
                holders: vec!["m".into()],
                meta: Box::new(meta("same-key")),
            })
            .unwrap();
            lines.push_str(&m);
            lines.push('\n');
        }
        std::fs::write(dir.path().join(JOURNAL), lines).unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        assert_eq!(catalog.read().object("b", "same-key").unwrap().blob, "x2999");
        let compacted = std::fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(compacted.lines().count(), 2);
    }

    #[tokio::test]
    async fn a_running_catalog_compacts_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = with_bucket(dir.path()).await;
        let mut longest = 0;
        for i in 0..3000 {
            let record = object("overwritten", &format!("x{i}"));
            catalog.change(move |_| Ok((vec![record], ()))).await.unwrap();
            let lines = std::fs::read_to_string(dir.path().join(JOURNAL))
                .unwrap()
                .lines()
                .count();
            longest = longest.max(lines);
        }
        assert!(
            longest <= 2 * 2 + 1025,
            "the journal grew to {longest} lines for 2 live records"
        );
        drop(catalog);
        let reopened = Catalog::open(dir.path()).unwrap();
        assert_eq!(reopened.read().object("b", "overwritten").unwrap().blob, "x2999");
        assert_eq!(reopened.read().buckets.len(), 1);
    }

    /// Concurrent changes share fdatasyncs, and each still decides on every change before it:
    /// of 64 racing "create if absent" changes to one key, exactly one wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_are_written_together_and_decided_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = with_bucket(dir.path()).await;
        let writes_before = catalog.journal.lock().await.writes;
        let racers = (0..64).map(|i| {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                catalog
                    .change(move |state| {
                        if state.object("b", "once").is_ok() {
                            return Err(StoreError::PreconditionFailed);
                        }
                        let record = object("once", &format!("x{i}"));
                        Ok((vec![record], i))
                    })
                    .await
            })
        });
        let results = futures::future::join_all(racers).await;
        let winners: Vec<_> = results.into_iter().filter_map(|r| r.unwrap().ok()).collect();
        assert_eq!(winners.len(), 1, "{winners:?}");
        let others = (0..64).map(|i| {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                let record = object(&format!("k{i}"), &format!("y{i}"));
                catalog.change(move |_| Ok((vec![record], ()))).await
            })
        });
        for done in futures::future::join_all(others).await {
            done.unwrap().unwrap();
        }
        let writes = catalog.journal.lock().await.writes - writes_before;
        assert!(writes < 65, "65 changes took {writes} fdatasyncs");
        drop(catalog);
        let reopened = Catalog::open(dir.path()).unwrap();
        let state = reopened.read();
        assert_eq!(state.object("b", "once").unwrap().blob, format!("x{}", winners[0]));
        assert_eq!(state.bucket("b").unwrap().objects.len(), 65);
    }

    /// A journal write that fails undoes the change: it is answered with an error, is gone from
    /// memory, and the journal is still whole for the next change and the next start.
    #[tokio::test]
    async fn a_failed_journal_write_undoes_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = with_bucket(dir.path()).await;
        let put = |key: &'static str| move |_: &State| Ok((vec![object(key, &format!("blob-{key}"))], ()));
        catalog.change(put("kept")).await.unwrap();
        // The journal now refuses writes, as a failing disk would.
        let path = dir.path().join(JOURNAL);
        let writable = {
            let mut journal = catalog.journal.lock().await;
            std::mem::replace(&mut journal.file, std::fs::File::open(&path).unwrap())
        };
        let err = catalog.change(put("lost")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(Unavailable::Journal(_))),
            "{err:?}"
        );
        assert!(
            catalog.read().object("b", "lost").is_err(),
            "an unwritten change stayed visible"
        );
        assert!(catalog.read().object("b", "kept").is_ok());

        catalog.journal.lock().await.file = writable;
        catalog.change(put("after")).await.unwrap();
        drop(catalog);
        let reopened = Catalog::open(dir.path()).unwrap();
        let state = reopened.read();
        assert!(state.object("b", "kept").is_ok() && state.object("b", "after").is_ok());
        assert!(state.object("b", "lost").is_err());
    }

    /// A decision that writes nothing but saw a change not yet durable (a DELETE answered for
    /// a key whose pending delete may be undone) is answered only with that change: if the
    /// change fails, so does the answer that rested on it.
    #[tokio::test]
    async fn an_answer_waits_for_the_changes_it_saw() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = with_bucket(dir.path()).await;
        let path = dir.path().join(JOURNAL);
        // Held, the journal keeps the next change pending; then it refuses the write.
        let mut journal = catalog.journal.lock().await;
        let writable = std::mem::replace(&mut journal.file, std::fs::File::open(&path).unwrap());
        let pending = tokio::spawn({
            let catalog = catalog.clone();
            async move { catalog.change(|_| Ok((vec![object("x", "blob-x")], ()))).await }
        });
        while catalog.read().object("b", "x").is_err() {
            tokio::task::yield_now().await;
        }
        let resting = tokio::spawn({
            let catalog = catalog.clone();
            async move {
                catalog
                    .change(|state| Ok((Vec::new(), state.object("b", "x").is_ok())))
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!resting.is_finished(), "answered before the change it saw was durable");
        drop(journal);
        assert!(pending.await.unwrap().is_err());
        let err = resting.await.unwrap().unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(Unavailable::Journal(_))),
            "{err:?}"
        );

        catalog.journal.lock().await.file = writable;
        let seen = catalog
            .change(|state| Ok((Vec::new(), state.object("b", "x").is_ok())))
            .await
            .unwrap();
        assert!(!seen, "nothing pending: answered at once, from durable state");
    }
}
