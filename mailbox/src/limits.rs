//! What one member, one recipient and the whole mailbox may hold or send.

use std::collections::HashMap;
use std::time::Duration;

use crate::frame::NodeId;

/// The mailbox's limits. Every refusal is answered with its own status and stores nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one message (bigger media go to S3; the message carries a pointer).
    pub max_message_bytes: u64,
    /// Messages waiting for one recipient.
    pub max_queued_messages: usize,
    /// Bytes waiting for one recipient.
    pub max_queued_bytes: u64,
    /// Posts one member may make per minute.
    pub posts_per_minute: u32,
    /// Bytes the mailbox holds for everyone together.
    pub max_total_bytes: u64,
    /// Lifetime of a message that asks for none.
    pub default_lifetime_days: u16,
    /// The longest lifetime granted; longer requests are shortened to it.
    pub max_lifetime_days: u16,
    /// Posts that have been handed on more often are refused.
    pub max_hops: u8,
    /// Memory for the payloads of recent messages, delivered without reading the store.
    pub memory_cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1024 * 1024,
            max_queued_messages: 1000,
            max_queued_bytes: 50 * 1000 * 1000,
            posts_per_minute: 600,
            max_total_bytes: 1024 * 1024 * 1024,
            default_lifetime_days: 30,
            max_lifetime_days: 120,
            max_hops: 2,
            memory_cache_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A token bucket per sender: `per_minute` posts in any minute, refilled continuously.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: HashMap<NodeId, (f64, std::time::Instant)>,
}

impl RateLimiter {
    /// Takes one token for `sender`; `false` if it has none left.
    pub fn allow(&mut self, sender: &NodeId, per_minute: u32) -> bool {
        let capacity = per_minute.max(1) as f64;
        let now = std::time::Instant::now();
        let (tokens, at) = self.buckets.entry(*sender).or_insert((capacity, now));
        let refill = now.duration_since(*at).as_secs_f64() * capacity / 60.0;
        *tokens = (*tokens + refill).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets senders whose bucket has been full for a while, so the map stays small.
    pub fn forget_idle(&mut self) {
        self.buckets
            .retain(|_, (_, at)| at.elapsed() < Duration::from_secs(600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_gets_its_minute_then_waits() {
        let mut r = RateLimiter::default();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert!((0..5).all(|_| r.allow(&a, 5)));
        assert!(!r.allow(&a, 5));
        assert!(r.allow(&b, 5), "another sender has its own bucket");
    }
}
