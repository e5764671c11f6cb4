//! Days, not moments: the mailbox and the S3 lifecycle rules keep expiry to the day, and
//! delete at a moment that says no more than the day.
//!
//! A [`Clock`] is injected so that tests can move time forward by days without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY_SECS: i64 = 24 * 60 * 60;

/// A UTC day, counted from 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u32);

impl Day {
    pub fn plus(self, days: u32) -> Day {
        Day(self.0.saturating_add(days))
    }

    /// The first second after this day, in Unix seconds.
    pub fn end_secs(self) -> i64 {
        (self.0 as i64 + 1) * DAY_SECS
    }

    /// The day holding `unix_secs`.
    pub fn of_secs(unix_secs: i64) -> Day {
        Day(unix_secs.div_euclid(DAY_SECS).max(0) as u32)
    }

    /// When something that expires on this day goes: at a moment in the 24 hours after the
    /// day ends, fixed by `seed` (random, or a hash of the thing), never before. Deletion
    /// times then say no more than the day.
    pub fn expiry_moment_secs(self, seed: u64) -> i64 {
        self.end_secs() + (seed % DAY_SECS as u64) as i64
    }
}

/// Where the mailbox reads the time.
pub trait Clock: std::fmt::Debug + Send + Sync + 'static {
    /// Unix seconds.
    fn now_secs(&self) -> i64;

    fn today(&self) -> Day {
        Day::of_secs(self.now_secs())
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64
    }
}

/// A clock that moves only when told to: for tests of expiry.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(unix_secs: i64) -> Self {
        Self(Arc::new(AtomicI64::new(unix_secs)))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
    }

    pub fn set(&self, unix_secs: i64) {
        self.0.store(unix_secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_secs(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
