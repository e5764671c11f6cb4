//! How a mirror set is run: when a write is acknowledged, and how often it repairs, sweeps
//! and scrubs.

use std::str::FromStr;
use std::time::Duration;

/// When the mirror set may acknowledge a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckPolicy {
    /// Every mirror that is up must have stored it (at least one). A mirror that fails during
    /// the write is marked down and repaired later.
    #[default]
    All,
    /// At least this many mirrors must have stored it.
    Quorum(usize),
}

impl AckPolicy {
    pub(super) fn min_copies(self) -> usize {
        match self {
            AckPolicy::All => 1,
            AckPolicy::Quorum(n) => n.max(1),
        }
    }
}

/// An `--ack` value that is neither `all` nor `quorum:N` with N at least 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an acknowledgement policy: use `all` or `quorum:N`")]
pub struct AckPolicyError(String);

impl FromStr for AckPolicy {
    type Err = AckPolicyError;
    fn from_str(s: &str) -> Result<Self, AckPolicyError> {
        match s {
            "all" => Ok(AckPolicy::All),
            _ => s
                .strip_prefix("quorum:")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .map(AckPolicy::Quorum)
                .ok_or_else(|| AckPolicyError(s.to_owned())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MirrorOptions {
    pub ack: AckPolicy,
    /// How often the repair loop looks for work when nothing nudges it.
    pub repair_interval: Duration,
    /// How often each mirror is listed for blobs nothing refers to (left by deletes while it
    /// was down, or by writes that failed part-way). Also done when a mirror comes back.
    pub sweep_interval: Duration,
    /// Bytes per second the scrub may read to check copies; 0 turns it off.
    pub scrub_rate: u64,
    /// From the start of one scrub round to the start of the next.
    pub scrub_interval: Duration,
    /// Adopt backends that belong to another relay's catalog (`--take-over`): for a relay
    /// that replaces one whose data dir is gone.
    pub take_over: bool,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        Self {
            ack: AckPolicy::All,
            repair_interval: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(6 * 3600),
            scrub_rate: 8 * 1024 * 1024,
            scrub_interval: Duration::from_secs(7 * 24 * 3600),
            take_over: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_policies_parse() {
        assert_eq!("all".parse::<AckPolicy>(), Ok(AckPolicy::All));
        assert_eq!("quorum:2".parse::<AckPolicy>(), Ok(AckPolicy::Quorum(2)));
        for bad in ["quorum:0", "quorum:", "most", "quorum:x"] {
            assert!(bad.parse::<AckPolicy>().is_err(), "{bad}");
        }
    }
}
