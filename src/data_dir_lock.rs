//! One relay per data dir. Two would share the tunnel identity (the same node id twice), the
//! mailbox and the store; the store has its own lock, but a connection-only relay
//! (`--no-storage`) opens no store, so the data dir itself is locked for as long as the relay
//! runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a start waits for a previous relay (restarting in place) to let go.
const WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another haven-relay is already running with the data dir {0} (stop it first, or give this one its own --data-dir)"
    )]
    InUse(PathBuf),
    #[error("locking the data dir {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Held while the relay runs; dropping it lets the next relay start.
#[derive(Debug)]
pub struct DataDirLock(#[allow(dead_code)] std::fs::File);

pub async fn lock(data_dir: &Path) -> Result<DataDirLock, LockError> {
    let io = |e| LockError::Io(data_dir.to_path_buf(), e);
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(".relay.lock"))
        .map_err(io)?;
    let deadline = Instant::now() + WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DataDirLock(file)),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(LockError::InUse(data_dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}
