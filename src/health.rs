//! `haven-relay health`: is a relay running on this data dir? Answered from a heartbeat file
//! the running relay rewrites every few seconds, so the check needs no open port, no
//! credentials and no network (a Docker HEALTHCHECK, a monitoring script, a cron job).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;

const FILE: &str = "heartbeat";
/// How often the running relay writes its heartbeat.
pub const EVERY: Duration = Duration::from_secs(5);
/// A heartbeat older than this means the relay is gone or stuck.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Why `health` says no.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unhealthy {
    #[error("no relay has run on {0} (no heartbeat file)")]
    NeverRan(PathBuf),
    #[error("the relay on {0} stopped")]
    Stopped(PathBuf),
    #[error("the relay's last heartbeat is {0} s old (stuck, or killed)")]
    Stale(u64),
    #[error("the relay (process {0}) is gone: killed, or crashed")]
    Gone(String),
    #[error("the heartbeat file is unreadable: {0}")]
    Unreadable(String),
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes the heartbeat now and then every [`EVERY`] until aborted. Written to a temporary
/// file and renamed, so a reader never sees half a line.
pub fn spawn(data_dir: &Path) -> JoinHandle<()> {
    let (file, tmp) = (path(data_dir), data_dir.join(format!("{FILE}.tmp")));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let line = format!("running {} {}\n", now_secs(), std::process::id());
            let written = tokio::fs::write(&tmp, line).await;
            if let Err(e) = written.and(tokio::fs::rename(&tmp, &file).await) {
                tracing::warn!(error = %e, "writing the heartbeat failed");
            }
        }
    })
}

/// What a clean stop leaves behind, so that `health` says "stopped", not "stale".
pub fn mark_stopped(data_dir: &Path) {
    let _ = std::fs::write(path(data_dir), format!("stopped {}\n", now_secs()));
}

/// Seconds since the running relay's last heartbeat, or why it is not healthy.
pub fn check(data_dir: &Path) -> Result<u64, Unhealthy> {
    // A heartbeat is one short line; a bigger file (or a pipe) is not one, and is not read.
    let file = path(data_dir);
    if !std::fs::metadata(&file).is_ok_and(|m| m.is_file() && m.len() <= 128) && file.exists() {
        return Err(Unhealthy::Unreadable("not a heartbeat file".into()));
    }
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Unhealthy::NeverRan(data_dir.to_owned()));
        }
        Err(e) => return Err(Unhealthy::Unreadable(e.to_string())),
    };
    let mut words = text.split_whitespace();
    let state = words.next().unwrap_or_default();
    let at: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| Unhealthy::Unreadable(format!("{:?}", text.trim())))?;
    match state {
        "stopped" => Err(Unhealthy::Stopped(data_dir.to_owned())),
        "running" => {
            let now = now_secs();
            // A heartbeat from the future (the clock stepped back) proves nothing.
            if at > now + STALE_AFTER.as_secs() {
                return Err(Unhealthy::Unreadable("its time is in the future".into()));
            }
            // Where processes can be looked up, a relay that died (kill -9, a crash) is
            // noticed at once rather than when its heartbeat goes stale.
            let pid = words.next().unwrap_or_default();
            if Path::new("/proc/self").exists() && !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                return Err(Unhealthy::Gone(pid.to_owned()));
            }
            let age = now.saturating_sub(at);
            if age > STALE_AFTER.as_secs() {
                Err(Unhealthy::Stale(age))
            } else {
                Ok(age)
            }
        }
        _ => Err(Unhealthy::Unreadable(format!("{:?}", text.trim()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_stale_stopped_missing_and_garbage_heartbeats() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check(dir.path()), Err(Unhealthy::NeverRan(dir.path().to_owned())));
        let me = std::process::id();
        std::fs::write(path(dir.path()), format!("running {} {me}\n", now_secs() - 2)).unwrap();
        assert!(matches!(check(dir.path()), Ok(age) if age <= 3));
        // A process that is gone, and a time in the future.
        std::fs::write(path(dir.path()), format!("running {} 4000000000\n", now_secs())).unwrap();
        assert!(matches!(check(dir.path()), Err(Unhealthy::Gone(_))));
        std::fs::write(path(dir.path()), format!("running {} {me}\n", now_secs() + 3600)).unwrap();
        assert!(matches!(check(dir.path()), Err(Unhealthy::Unreadable(_))));
        std::fs::write(path(dir.path()), format!("running {} {me}\n", now_secs() - 60)).unwrap();
        assert!(matches!(check(dir.path()), Err(Unhealthy::Stale(age)) if age >= 60));
        mark_stopped(dir.path());
        assert_eq!(check(dir.path()), Err(Unhealthy::Stopped(dir.path().to_owned())));
        std::fs::write(path(dir.path()), "zzz").unwrap();
        assert!(matches!(check(dir.path()), Err(Unhealthy::Unreadable(_))));
    }
}
