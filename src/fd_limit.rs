//! Open files: as many as the system lets the relay have, and connections kept below that.
//!
//! Each HTTP connection costs a file descriptor, and so does the store. With the usual soft
//! limit of 1024, a thousand idle connections used to stop all service with "Too many open
//! files". At start the soft limit is raised to the hard one, and the connection cap is kept
//! far enough below it that the store always has descriptors left.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything but HTTP connections: the store, the mailbox, the tunnel's
/// sockets, rclone's pipes.
const RESERVED: u64 = 256;

/// Raises the soft open-file limit as far as allowed; returns the limit now in effect (`None`:
/// unlimited).
pub fn raise() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    // macOS refuses an unlimited soft limit; its per-process ceiling is OPEN_MAX (10240).
    for wanted in [limit.maximum, Some(10_240)] {
        if wanted.is_none() || wanted > limit.current {
            let raised = Rlimit {
                current: wanted,
                maximum: limit.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return getrlimit(Resource::Nofile).current;
            }
        }
    }
    limit.current
}

/// The limit [`raise`] would reach, without raising it (for `doctor`); `None`: unlimited.
pub fn reachable() -> Option<u64> {
    getrlimit(Resource::Nofile).maximum
}

/// The connection cap to use given the configured one and the open-file limit.
pub fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    match open_files {
        None => configured,
        Some(limit) => {
            let room = usize::try_from(limit.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
            configured.min(room.max(16))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_store() {
        assert_eq!(connection_cap(512, Some(1024)), 512);
        assert_eq!(connection_cap(2000, Some(1024)), 768);
        assert_eq!(connection_cap(512, None), 512);
        assert_eq!(connection_cap(512, Some(100)), 16);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = getrlimit(Resource::Nofile).current;
        let after = raise();
        assert!(
            after.is_none() || before.is_some_and(|b| after >= Some(b)),
            "{before:?} -> {after:?}"
        );
    }
}
