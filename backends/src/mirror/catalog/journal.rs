//! The catalog's journal: one JSON line per [`Record`], appended by group commit, replayed at
//! open (a torn last line from a crash is cut off), and rewritten as a snapshot whenever it has
//! grown well past the live state, at open and while running.
//!
//! Group commit: concurrent changes are decided and applied one after another (the
//! [`Pending`] lock), but written together. The first change to take the [`Journal`] writes
//! every change pending at that moment with one `write` and one `fdatasync`, and answers them
//! all; the changes that arrive meanwhile form the next batch. Sixteen concurrent PUTs thus
//! cost a few fdatasyncs instead of sixteen in a row, and nothing is acknowledged before the
//! fdatasync that made it durable has returned.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::{Catalog, Record, State};
use crate::error::{Result, StoreError, Unavailable};
use crate::fs::blob::durable_rename;

pub(super) const JOURNAL: &str = "journal.jsonl";

/// The journal file being appended to.
pub(super) struct Journal {
    pub(super) file: File,
    dir: PathBuf,
    /// Records in the file: once well past the live ones, it is rewritten.
    records: usize,
    /// Bytes in the file known durable: where a failed append is cut back to.
    len: u64,
    /// Appends so far, each one fdatasync.
    pub(super) writes: u64,
    /// Why the journal takes no more changes, if a failed write could not be undone.
    broken: Option<String>,
}

/// Changes decided but not yet written, in the order they were decided.
#[derive(Default)]
pub(super) struct Pending {
    lines: Vec<u8>,
    records: usize,
    batch: Arc<Batch>,
    /// The newest batch that holds changes, waiting or being written: a decision made now
    /// may rest on it, so its answer waits for it too.
    newest: Option<Arc<Batch>>,
}

/// The outcome every change in one write shares.
#[derive(Default)]
pub(super) struct Batch {
    outcome: OnceLock<Result<(), String>>,
}

impl Batch {
    pub fn is_done(&self) -> bool {
        self.outcome.get().is_some()
    }

    /// Whether the batch is durable. Only called once it is done.
    pub fn outcome(&self) -> Result<()> {
        match self.outcome.get() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(Unavailable::Journal(e.clone()).into()),
            None => Err(Unavailable::JournalNotWritten.into()),
        }
    }

    fn finish(&self, outcome: Result<(), String>) {
        let _ = self.outcome.set(outcome);
    }
}

impl Pending {
    /// Queues `records` for the next write; the batch they joined answers when it is done.
    pub fn add(&mut self, records: &[Record]) -> Result<Arc<Batch>> {
        let before = self.lines.len();
        for r in records {
            if let Err(e) = serde_json::to_writer(&mut self.lines, r) {
                self.lines.truncate(before);
                return Err(io::Error::other(e).into());
            }
            self.lines.push(b'\n');
        }
        self.records += records.len();
        self.newest = Some(self.batch.clone());
        Ok(self.batch.clone())
    }

    /// The newest batch not yet durable, if any.
    pub fn unsettled(&self) -> Option<Arc<Batch>> {
        self.newest.clone().filter(|b| !b.is_done())
    }

    /// What is to be written now; later changes join a fresh batch.
    fn take(&mut self) -> (Vec<u8>, usize, Arc<Batch>) {
        (
            std::mem::take(&mut self.lines),
            std::mem::take(&mut self.records),
            std::mem::take(&mut self.batch),
        )
    }
}

/// Whether a journal of `records` lines is worth rewriting for `live` records of state:
/// once it has more than doubled, and by enough that the rewrite is not needed again soon.
fn worth_compacting(records: usize, live: usize) -> bool {
    records > 2 * live + 1024
}

impl Journal {
    /// Replays (and if worthwhile compacts) the journal in `dir`. Blocking.
    pub fn open(dir: &Path) -> Result<(State, Self)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL);
        let (state, mut records) = replay(&path, true)?;
        if worth_compacting(records, state.live_records()) {
            let snapshot = state.snapshot();
            rewrite(dir, &snapshot).map_err(|e| e.error)?;
            records = snapshot.len();
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        let journal = Self {
            file,
            dir: dir.to_owned(),
            records,
            len,
            writes: 0,
            broken: None,
        };
        Ok((state, journal))
    }
}

impl Catalog {
    /// Writes every pending change with one fdatasync and answers them, then compacts the
    /// journal if it has grown enough. Called with the journal held.
    pub(super) async fn commit_pending(&self, journal: &mut Journal) {
        let (lines, records, batch) = self.pending.lock().expect("pending lock").take();
        if let Some(broken) = &journal.broken {
            let broken = broken.clone();
            self.roll_back(journal, &broken);
            batch.finish(Err(broken));
            return;
        }
        let written = match journal.file.try_clone() {
            Ok(mut file) => tokio::task::spawn_blocking(move || {
                file.write_all(&lines)?;
                file.sync_data()?;
                Ok(lines.len() as u64)
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e))),
            Err(e) => Err(e),
        };
        match written {
            Ok(bytes) => {
                journal.len += bytes;
                journal.writes += 1;
                journal.records += records;
                batch.finish(Ok(()));
                self.compact_if_worthwhile(journal).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the catalog journal failed; undoing the changes it held");
                let failure = e.to_string();
                self.roll_back(journal, &failure);
                batch.finish(Err(failure));
            }
        }
    }

    /// Undoes every change that is not durable: rebuilds the state from the durable part of
    /// the journal and cuts off the rest. The changes decided since the failed batch were
    /// decided on top of it, so they fail too. If the journal cannot be cut back, a failed
    /// change could come back at the next start, so the journal takes no more changes.
    /// Blocking, on a path taken only when the disk has failed a write.
    fn roll_back(&self, journal: &mut Journal, failure: &str) {
        let mut pending = self.pending.lock().expect("pending lock");
        std::mem::take(&mut *pending).batch.finish(Err(failure.to_owned()));
        let path = journal.dir.join(JOURNAL);
        match replay_upto(&path, journal.len, false) {
            Ok((state, records)) => {
                *self.state.write().expect("catalog lock") = state;
                journal.records = records;
            }
            Err(e) => {
                // Memory still holds the failed changes: deciding on top of them could answer
                // for objects whose blobs are gone.
                tracing::error!(error = %e, "rereading the catalog journal failed; it takes no more changes until the relay restarts");
                journal.broken = Some(format!("the journal could not be reread after a failed write: {e}"));
            }
        }
        if journal.broken.is_some() {
            return; // nothing more is written to it: there is nothing to cut
        }
        let cut = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_len(journal.len).and_then(|()| file.sync_all()));
        if let Err(e) = cut {
            tracing::error!(error = %e, "cutting failed changes off the catalog journal failed; it takes no more changes until the relay restarts");
            journal.broken = Some(format!("the journal could not be repaired after a failed write: {e}"));
        }
    }

    /// Rewrites the journal as a snapshot once it has grown well past the live state, so the
    /// relay never needs a restart to shrink it (every overwrite and repair appends a record).
    /// Skipped while changes are pending: the snapshot must hold only durable ones.
    async fn compact_if_worthwhile(&self, journal: &mut Journal) {
        let snapshot = {
            let pending = self.pending.lock().expect("pending lock");
            let state = self.read();
            (pending.records == 0 && worth_compacting(journal.records, state.live_records())).then(|| state.snapshot())
        };
        let Some(snapshot) = snapshot else { return };
        compact(journal, snapshot).await;
    }
}

/// Rewrites the journal as `snapshot` while changes wait on `journal`'s lock. A rewrite that
/// fails before its rename leaves the longer journal, which replays to the same state; one
/// that fails after it leaves a journal whose name may not survive a crash, so it takes no
/// more changes (appending to the old file would acknowledge changes nothing replays).
async fn compact(journal: &mut Journal, snapshot: Vec<Record>) {
    let dir = journal.dir.clone();
    let records = snapshot.len();
    let rewritten = tokio::task::spawn_blocking(move || rewrite(&dir, &snapshot))
        .await
        .unwrap_or_else(|e| {
            Err(RewriteError {
                error: io::Error::other(e).into(),
                renamed: true,
            })
        });
    match rewritten {
        Ok((file, len)) => {
            tracing::debug!(
                before = journal.records,
                after = records,
                "compacted the catalog journal"
            );
            journal.file = file;
            journal.len = len;
            journal.records = records;
        }
        Err(RewriteError { error, renamed: false }) => {
            tracing::warn!(error = %error, "compacting the catalog journal failed; it stays as it is");
        }
        Err(RewriteError { error, .. }) => {
            tracing::error!(error = %error, "compacting the catalog journal failed after replacing it; it takes no more changes until the relay restarts");
            journal.broken = Some(format!("the journal could not be compacted: {error}"));
            // Whichever file the name holds now, all of it is durable: a rollback rereads it whole.
            journal.len = u64::MAX;
        }
    }
}

/// Reads the journal; a torn last line (crash mid-append) is cut off.
pub(super) fn replay(path: &Path, cut_torn_tail: bool) -> Result<(State, usize)> {
    replay_upto(path, u64::MAX, cut_torn_tail)
}

/// Reads the first `limit` bytes of the journal.
fn replay_upto(path: &Path, limit: u64, cut_torn_tail: bool) -> Result<(State, usize)> {
    let mut state = State::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((state, 0)),
        Err(e) => return Err(e.into()),
    };
    let total = file.metadata()?.len().min(limit);
    let mut reader = BufReader::new(io::Read::take(file, total));
    let (mut good, mut count) = (0u64, 0usize);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        match serde_json::from_slice::<Record>(&line) {
            Ok(record) if complete => {
                state.apply(record);
                good += n as u64;
                count += 1;
            }
            _ if good + n as u64 >= total => break, // the last line: torn by a crash
            Err(e) => return Err(StoreError::Corrupt(format!("catalog journal line {}: {e}", count + 1))),
            Ok(_) => unreachable!("an incomplete line is always the last"),
        }
    }
    if good < total && cut_torn_tail {
        tracing::warn!(
            dropped = total - good,
            "catalog journal ended mid-record; cut off the torn tail"
        );
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(good)?;
        file.sync_all()?;
    }
    Ok((state, count))
}

/// A rewrite that failed, and whether it had already replaced the journal.
pub(super) struct RewriteError {
    pub error: StoreError,
    pub renamed: bool,
}

/// Replaces the journal with `records`, atomically; returns the new journal opened for
/// appending (opened before the rename, so it is the file that replaced the old one) and its
/// length.
pub(super) fn rewrite(dir: &Path, records: &[Record]) -> Result<(File, u64), RewriteError> {
    let before = |error: io::Error| RewriteError {
        error: error.into(),
        renamed: false,
    };
    let tmp: PathBuf = dir.join(format!("{JOURNAL}.tmp"));
    let mut file = std::io::BufWriter::new(File::create(&tmp).map_err(before)?);
    for r in records {
        serde_json::to_writer(&mut file, r).map_err(|e| before(io::Error::other(e)))?;
        file.write_all(b"\n").map_err(before)?;
    }
    let file = file.into_inner().map_err(|e| before(e.into_error()))?;
    file.sync_data().map_err(before)?;
    let appending = OpenOptions::new().append(true).open(&tmp).map_err(before)?;
    let len = appending.metadata().map_err(before)?.len();
    durable_rename(&tmp, &dir.join(JOURNAL)).map_err(|error| RewriteError {
        error: error.into(),
        renamed: true,
    })?;
    Ok((appending, len))
}
