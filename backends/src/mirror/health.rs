//! What the mirror set believes about each backend: up or down, and how fast it answers.
//!
//! A backend is marked down by the first failed operation and skipped by writes and reads
//! until the repair loop's probe succeeds, so only the first request after an outage pays
//! for the failure (a timeout, a refused connection).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct Health {
    down: AtomicBool,
    /// Exponentially weighted time to first byte of reads, in microseconds; 0 = unknown.
    latency_us: AtomicU64,
    since: Mutex<Option<Instant>>,
}

impl Health {
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// Returns whether this changed anything (the first failure of an outage).
    pub fn mark_down(&self) -> bool {
        let was_up = !self.down.swap(true, Ordering::Relaxed);
        if was_up {
            *self.since.lock().expect("health lock") = Some(Instant::now());
        }
        was_up
    }

    /// Returns whether the backend had been down.
    pub fn mark_up(&self) -> bool {
        let was_down = self.down.swap(false, Ordering::Relaxed);
        if was_down {
            *self.since.lock().expect("health lock") = None;
        }
        was_down
    }

    pub fn down_for(&self) -> Option<Duration> {
        self.since.lock().expect("health lock").map(|t| t.elapsed())
    }

    pub fn record_latency(&self, took: Duration) {
        let sample = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let _ = self
            .latency_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 { sample } else { (old * 7 + sample) / 8 })
            });
    }

    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }
}
