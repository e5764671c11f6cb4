//! The scrub: every copy on every mirror is read back and checked, slowly, all the time.
//!
//! Reads verify what they serve, but a copy nobody reads can rot unseen (a flipped bit on an
//! SD card, a provider's silent loss) until the day it is the last one. Like Garage's scrub,
//! this walks the catalog and checks each holder's copy against the ETag at a bounded rate
//! (`scrub_rate`, 8 MiB/s by default, so a Pi's disk and a metered provider barely notice), then
//! rests until the next round (`scrub_interval`). A copy that fails is dropped from the
//! holders and repaired from another. Progress is kept in `<catalog>/scrub.json`, which
//! `haven-relay doctor` reads next to a running relay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use super::Inner;
use super::catalog::ObjectRecord;
use super::verify::{learned_chunks, verify_copy};

/// The file a scrub writes its progress to, under the catalog directory.
pub const PROGRESS_FILE: &str = "scrub.json";

/// Where the scrub stands: the round in progress, or the last one.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubProgress {
    /// Unix seconds.
    pub round_started: u64,
    /// Unix seconds; `None` while the round runs.
    pub round_finished: Option<u64>,
    pub rounds_completed: u64,
    /// In this round.
    pub copies_checked: u64,
    pub bytes_checked: u64,
    /// Copies that failed their check in this round (and were handed to repair).
    pub bad_copies: u64,
}

impl ScrubProgress {
    /// The progress a relay's scrub last wrote under `catalog_dir`, if any.
    pub fn load(catalog_dir: &Path) -> Option<ScrubProgress> {
        let text = std::fs::read(catalog_dir.join(PROGRESS_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// Spends bytes at no more than `rate` per second, on average over a round.
pub(super) struct Pacer {
    rate: u64,
    started: Instant,
    spent: u64,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Self {
            rate: rate.max(1),
            started: Instant::now(),
            spent: 0,
        }
    }

    pub async fn spend(&mut self, bytes: usize) {
        self.spent += bytes as u64;
        let due = Duration::from_secs_f64(self.spent as f64 / self.rate as f64);
        if let Some(early) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(early).await;
        }
    }
}

pub(super) async fn run(inner: Arc<Inner>, catalog_dir: PathBuf) {
    let (rate, interval) = (inner.options.scrub_rate, inner.options.scrub_interval);
    if rate == 0 {
        return;
    }
    let mut progress = ScrubProgress::load(&catalog_dir).unwrap_or_default();
    // A restart does not start a finished round over: it waits out the interval first.
    if let Some(finished) = progress.round_finished {
        let since = now_secs().saturating_sub(finished);
        tokio::time::sleep(interval.saturating_sub(Duration::from_secs(since))).await;
    }
    loop {
        let started = Instant::now();
        round(&inner, &catalog_dir, &mut progress, rate).await;
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

async fn round(inner: &Arc<Inner>, catalog_dir: &Path, progress: &mut ScrubProgress, rate: u64) {
    *progress = ScrubProgress {
        round_started: now_secs(),
        rounds_completed: progress.rounds_completed,
        ..ScrubProgress::default()
    };
    let work: Vec<(String, ObjectRecord)> = inner
        .catalog
        .read()
        .objects()
        .map(|(b, o)| (b.to_owned(), o.clone()))
        .collect();
    let mut pacer = Pacer::new(rate);
    let mut last_save = Instant::now();
    for (bucket, object) in work {
        for i in inner.holders_of(&object.holders) {
            if !inner.mirrors[i].health.is_up() {
                continue; // checked in a later round; repair probes it meanwhile
            }
            match verify_copy(inner, i, &object, Some(&mut pacer)).await {
                Ok(Some(sums)) => {
                    if let Some(record) = learned_chunks(&bucket, &object, sums) {
                        let _ = inner.catalog.change(move |_| Ok((vec![record], ()))).await;
                    }
                }
                // Overwritten or deleted since the round began: its old blob is gone on purpose.
                Ok(None) if !still_current(inner, &bucket, &object) => {}
                Ok(None) => {
                    progress.bad_copies += 1;
                    inner.copy_lost(&bucket, &object.meta.key, &object.blob, i, "failed the scrub");
                }
                Err(e) => inner.mark_down(i, &e),
            }
            progress.copies_checked += 1;
            progress.bytes_checked += object.meta.size;
        }
        if last_save.elapsed() >= Duration::from_secs(60) {
            save(catalog_dir, progress).await;
            last_save = Instant::now();
        }
    }
    progress.round_finished = Some(now_secs());
    progress.rounds_completed += 1;
    if progress.bad_copies > 0 {
        tracing::warn!(
            bad = progress.bad_copies,
            checked = progress.copies_checked,
            "scrub found bad copies; repairing them"
        );
    } else {
        tracing::info!(
            checked = progress.copies_checked,
            "scrub round complete; every copy is good"
        );
    }
    save(catalog_dir, progress).await;
}

fn still_current(inner: &Inner, bucket: &str, object: &ObjectRecord) -> bool {
    inner
        .catalog
        .read()
        .object(bucket, &object.meta.key)
        .is_ok_and(|o| o.blob == object.blob)
}

/// Best effort: progress is for people, and the next round writes it again.
async fn save(catalog_dir: &Path, progress: &ScrubProgress) {
    let (path, tmp) = (catalog_dir.join(PROGRESS_FILE), catalog_dir.join("scrub.json.tmp"));
    let json = serde_json::to_vec_pretty(progress).expect("progress serializes");
    let written = async {
        tokio::fs::write(&tmp, json).await?;
        tokio::fs::rename(&tmp, &path).await
    };
    if let Err(e) = written.await {
        tracing::debug!(error = %e, "could not write scrub progress");
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock: the pacer's arithmetic, not this machine's speed.
    #[tokio::test(start_paused = true)]
    async fn the_pacer_holds_reads_to_its_average_rate() {
        let mut pacer = Pacer::new(8 * 1024 * 1024);
        let started = Instant::now();
        for _ in 0..64 {
            pacer.spend(1024 * 1024).await;
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(8), "64 MiB at 8 MiB/s took {took:?}");
        assert!(took < Duration::from_millis(8200), "and not much longer: {took:?}");
    }
}
