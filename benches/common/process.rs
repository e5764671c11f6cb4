//! The `haven-relay` binary as the tunnel and mailbox benches run it: a relay or `connect`
//! process, started with the bench's S3 keys and killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub const BIN: &str = env!("CARGO_BIN_EXE_haven-relay");
pub const ACCESS_KEY: &str = "benchaccesskey";
pub const SECRET_KEY: &str = "benchsecretkey0123456789";

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `haven-relay ARGS` and returns the rest of each stdout line starting with one of
/// `labels`, in order; the pipe keeps draining in the background.
pub fn spawn(args: &[&str], labels: &[&str]) -> Result<(Proc, Vec<String>), Error> {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn,s3s=off")
        .env("HAVEN_RELAY_ACCESS_KEY", ACCESS_KEY)
        .env("HAVEN_RELAY_SECRET_KEY", SECRET_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let proc = Proc(child);
    let mut found = Vec::new();
    for label in labels {
        loop {
            let line = lines
                .next()
                .ok_or_else(|| format!("{args:?} exited before printing {label}"))??;
            if let Some(rest) = line.trim().strip_prefix(label) {
                found.push(rest.split_whitespace().next().unwrap_or_default().to_owned());
                break;
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((proc, found))
}

/// The stdout of `haven-relay ARGS`, which must succeed.
pub fn output(args: &[&str]) -> Result<String, Error> {
    let out = Command::new(BIN).args(args).output()?;
    if !out.status.success() {
        return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}
