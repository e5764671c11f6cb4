//! Supervising `rclone serve s3` for an rclone remote.
//!
//! rclone owns the provider's auth: it reads its own rclone.conf, refreshes OAuth tokens and
//! talks to the provider. The relay only passes the remote's name and talks S3 to rclone on
//! loopback with a key pair made up for this one process (passed in the environment, never
//! on the command line where `ps` would show it). See docs/ARCHITECTURE.md for why this is a
//! child process and not librclone in ours.
//!
//! If rclone exits before it is ready, its last CRITICAL/ERROR line becomes the start-up
//! error. If it dies later, it is restarted on the same port with backoff, so the S3 client
//! in front of it only sees a short gap that its retries ride over.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// How long rclone may take to announce its address (it is ready in ~150 ms here).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RcloneError {
    #[error("cannot run rclone at {path}: {source}; install rclone or pass --rclone-bin")]
    Spawn { path: PathBuf, source: std::io::Error },
    #[error("rclone could not serve {remote}: {reason}")]
    Failed { remote: String, reason: String },
    #[error("rclone did not become ready within {0:?}")]
    Timeout(Duration),
}

/// What to serve and with which rclone.
#[derive(Debug, Clone)]
pub struct RcloneOptions {
    /// The rclone binary (`--rclone-bin`), `rclone` on PATH by default.
    pub binary: PathBuf,
    /// `--rclone-config`; rclone's own default when `None`.
    pub config: Option<PathBuf>,
    /// `REMOTE:PATH`, as in rclone.conf.
    pub remote: String,
}

/// A running, supervised `rclone serve s3`.
pub struct RcloneServer {
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
    child: Arc<Mutex<Child>>,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
    restarts: watch::Receiver<u64>,
}

impl RcloneServer {
    pub async fn start(options: RcloneOptions) -> Result<Self, RcloneError> {
        Self::start_cleaning(options, None).await
    }

    /// Like [`RcloneServer::start`], and before each start of rclone (the first and every
    /// restart) deletes the temp files of multipart uploads that an earlier rclone left in
    /// `uploads_in` (`REMOTE:PATH`). rclone keeps an upload's parts in a
    /// `.rclone_temp_multipart_*` file next to the object and its upload list in memory only:
    /// once that rclone is gone (killed with the relay, or crashed) no S3 call can abort them,
    /// and nobody else ever deletes them.
    pub async fn start_cleaning(options: RcloneOptions, uploads_in: Option<String>) -> Result<Self, RcloneError> {
        if let Some(folder) = &uploads_in {
            delete_unfinished_uploads(&options, folder).await;
        }
        let access_key = random_token(16);
        let secret_key = random_token(32);
        let loopback_any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let (child, addr) = spawn_ready(&options, loopback_any, &access_key, &secret_key).await?;
        let child = Arc::new(Mutex::new(child));
        let (stop, stopped) = watch::channel(false);
        let (restarted, restarts) = watch::channel(0u64);
        let supervisor = tokio::spawn(supervise(
            options,
            uploads_in,
            addr,
            (access_key.clone(), secret_key.clone()),
            child.clone(),
            stopped,
            restarted,
        ));
        Ok(Self {
            addr,
            access_key,
            secret_key,
            child,
            stop,
            supervisor,
            restarts,
        })
    }

    /// `http://127.0.0.1:PORT`, stable across restarts of rclone.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The key pair rclone accepts; made up at start, known only to this process and rclone.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.access_key, &self.secret_key)
    }

    /// The current rclone process id (changes when it is restarted).
    pub async fn pid(&self) -> Option<u32> {
        self.child.lock().await.id()
    }

    /// Waits until rclone has been restarted more than `count` times.
    pub async fn wait_restarted(&mut self, count: u64) {
        let _ = self.restarts.wait_for(|n| *n > count).await;
    }

    /// Stops supervising and kills rclone.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.supervisor.await;
        let _ = self.child.lock().await.kill().await;
    }
}

async fn supervise(
    options: RcloneOptions,
    uploads_in: Option<String>,
    addr: SocketAddr,
    (access_key, secret_key): (String, String),
    child: Arc<Mutex<Child>>,
    mut stopped: watch::Receiver<bool>,
    restarted: watch::Sender<u64>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let exited = async {
            loop {
                if let Ok(Some(status)) = child.lock().await.try_wait() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            status = exited => tracing::warn!(%status, "rclone exited; restarting it"),
            _ = stopped.wait_for(|s| *s) => return,
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            if let Some(folder) = &uploads_in {
                delete_unfinished_uploads(&options, folder).await;
            }
            match spawn_ready(&options, addr, &access_key, &secret_key).await {
                Ok((fresh, _)) => {
                    *child.lock().await = fresh;
                    restarted.send_modify(|n| *n += 1);
                    backoff = BACKOFF_START;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "restarting rclone failed; retrying");
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Runs a one-shot rclone command (`mkdir`, `version`) and returns its stdout, or its last
/// error line as the reason.
async fn run_once(options: &RcloneOptions, args: &[&str], what: &str) -> Result<String, RcloneError> {
    let mut command = Command::new(&options.binary);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(config) = &options.config {
        command.arg("--config").arg(config);
    }
    let out = tokio::time::timeout(READY_TIMEOUT, command.output())
        .await
        .map_err(|_| RcloneError::Timeout(READY_TIMEOUT))?
        .map_err(|source| RcloneError::Spawn {
            path: options.binary.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(strip_timestamp)
        .unwrap_or_else(|| format!("exited with {}", out.status));
    Err(RcloneError::Failed {
        remote: what.to_owned(),
        reason,
    })
}

/// Has the kernel stop rclone when the relay dies, even by `kill -9` (which runs no drop):
/// otherwise every killed relay leaves an `rclone serve s3` running, unused, for good. The
/// signal follows the spawning *thread*; rclone is only ever started from the runtime's
/// worker threads, which live as long as the relay. Linux only; elsewhere an orphan lingers.
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl` is async-signal-safe, and the closure touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// `rclone delete FOLDER --include .rclone_temp_multipart_*`, best effort: a folder that does
/// not exist yet has nothing to clean.
async fn delete_unfinished_uploads(options: &RcloneOptions, folder: &str) {
    let args = [
        "delete",
        folder,
        "--include",
        ".rclone_temp_multipart_*",
        "--retries",
        "1",
    ];
    if let Err(e) = run_once(options, &args, "the clean-up of unfinished uploads").await {
        tracing::debug!(error = %e, "could not clean up rclone's unfinished uploads");
    }
}

/// `rclone mkdir REMOTE:PATH`: the folder that `serve s3` will present as a bucket.
pub async fn mkdir(options: &RcloneOptions, remote_path: &str) -> Result<(), RcloneError> {
    run_once(options, &["mkdir", remote_path], remote_path)
        .await
        .map(|_| ())
}

/// The first line of `rclone version` (`rclone v1.75.2`).
pub async fn version(options: &RcloneOptions) -> Result<String, RcloneError> {
    let out = run_once(options, &["version"], "version").await?;
    Ok(out.lines().next().unwrap_or_default().trim().to_owned())
}

/// Starts rclone and waits for its "Starting s3 server on [http://…]" line.
async fn spawn_ready(
    options: &RcloneOptions,
    addr: SocketAddr,
    access_key: &str,
    secret_key: &str,
) -> Result<(Child, SocketAddr), RcloneError> {
    let mut command = Command::new(&options.binary);
    command
        .args(["serve", "s3", "--addr", &addr.to_string(), &options.remote])
        // rclone reads list flags from the environment as CSV, hence the inner quotes.
        .env("RCLONE_AUTH_KEY", format!("\"{access_key},{secret_key}\""))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(config) = &options.config {
        command.arg("--config").arg(config);
    }
    die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|source| RcloneError::Spawn {
        path: options.binary.clone(),
        source,
    })?;
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut last_problem = None;
    let ready = tokio::time::timeout(READY_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Starting s3 server on") {
                return parse_addr(&line);
            }
            if line.contains("CRITICAL") || line.contains("ERROR") || line.contains("Failed") {
                last_problem = Some(strip_timestamp(&line));
            }
        }
        None
    })
    .await;
    match ready {
        Ok(Some(bound)) => {
            // Keep draining rclone's log so it never blocks on a full pipe; debug level only,
            // as it may name files.
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "rclone", "{line}");
                }
            });
            Ok((child, bound))
        }
        Ok(None) => {
            let _ = child.kill().await;
            Err(RcloneError::Failed {
                remote: options.remote.clone(),
                reason: last_problem.unwrap_or_else(|| "rclone exited without saying why".into()),
            })
        }
        Err(_) => {
            let _ = child.kill().await;
            Err(RcloneError::Timeout(READY_TIMEOUT))
        }
    }
}

fn parse_addr(line: &str) -> Option<SocketAddr> {
    let start = line.find("http://")? + "http://".len();
    let rest = &line[start..];
    let end = rest.find(['/', ']']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// rclone lines start with "2026/11/23 00:50:05 "; the message is what matters.
fn strip_timestamp(line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(d), Some(t), Some(rest)) if d.contains('/') && t.contains(':') => rest.to_owned(),
        _ => line.to_owned(),
    }
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source");
    hex_simd::encode_to_string(buf, hex_simd::AsciiCase::Lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_and_the_reason_from_rclone_lines() {
        let line =
            "2026/11/23 00:50:05 NOTICE: Local file system at /tmp/rc: Starting s3 server on [http://127.0.0.1:33287/]";
        assert_eq!(parse_addr(line), Some("127.0.0.1:33287".parse().unwrap()));
        assert_eq!(
            strip_timestamp("2026/11/23 00:50:05 CRITICAL: Failed to create file system"),
            "CRITICAL: Failed to create file system"
        );
    }
}
