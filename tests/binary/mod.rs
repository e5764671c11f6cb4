//! The built `haven-relay` binary driven as a user would: started, read from, killed.
//! Kept apart from `common` so process tests do not compile the in-process harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_haven-relay");
/// Tunnel flags that keep everything on loopback: no iroh relay servers, direct addresses.
pub const TUNNEL: [&str; 4] = ["--iroh-relay", "disabled", "--iroh-addr", "127.0.0.1:0"];

/// Starts `command` and returns it (killed when dropped) with the first word after `label`
/// on the first stdout line that starts with it; the rest of stdout keeps draining in the
/// background.
pub fn spawn_until(command: Command, label: &str) -> (Running, String) {
    let (child, mut values) = spawn_until_all(command, &[label]);
    (child, values.remove(0))
}

/// As [`spawn_until`], for several labels printed in this order.
pub fn spawn_until_all(mut command: Command, labels: &[&str]) -> (Running, Vec<String>) {
    let mut child = Running(Some(command.stdout(Stdio::piped()).spawn().unwrap()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut values = Vec::new();
    for label in labels {
        let value = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{command:?} exited before printing {label}"))
                .unwrap();
            if let Some(rest) = line.trim().strip_prefix(label) {
                break rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
        };
        values.push(value);
    }
    std::thread::spawn(move || for _ in lines {});
    (child, values)
}

/// The aws CLI from PyPI (tests/run.sh installs it and sets HAVEN_RELAY_AWS_CLI).
pub fn aws_cli() -> String {
    std::env::var("HAVEN_RELAY_AWS_CLI")
        .expect("HAVEN_RELAY_AWS_CLI is not set: run the tests with `bash tests/run.sh`, which installs the aws CLI")
}

/// The HTTP keys process tests run the relay with.
pub const ACCESS_KEY: &str = "CLITESTKEY";
pub const SECRET_KEY: &str = "cli-test-secret";

/// `haven-relay run` with HTTP S3 on a free port and the test keys, and its endpoint. With
/// `log`, stderr is kept for the test to read (after the relay exits); otherwise discarded.
pub fn http_relay(dir: &Path, log: bool) -> (Running, String) {
    let mut command = Command::new(BIN);
    command
        .args(["run", "--s3-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("HAVEN_RELAY_ACCESS_KEY", ACCESS_KEY)
        .env("HAVEN_RELAY_SECRET_KEY", SECRET_KEY)
        .env_remove("RUST_LOG")
        .stderr(if log { Stdio::piped() } else { Stdio::null() });
    spawn_until(command, "S3 endpoint:")
}

/// The aws CLI against `endpoint` with the test keys and no user configuration.
pub fn aws_at(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(aws_cli())
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap()
}

/// `haven-relay ARGS` with stderr discarded.
pub fn haven(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).stderr(Stdio::null());
    command
}

/// A data dir's node id (`haven-relay id`).
pub fn node_id(dir: &Path) -> String {
    let out = Command::new(BIN).args(["id", "--data-dir"]).arg(dir).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The circle link of these members.
pub fn circle_link(seed: u8, members: &[&str]) -> String {
    tunnel::link::CircleLink {
        circle: tunnel::link::CircleId([seed; 16]),
        members: members.iter().map(|m| m.parse().unwrap()).collect(),
    }
    .to_string()
}

/// A relay on loopback, serving the tunnel for `circle` (remembered from an earlier run if
/// `None`), and the relay link it printed.
pub fn tunnel_relay(dir: &Path, circle: Option<&str>) -> (Running, String) {
    let mut command = haven(&["run", "--data-dir"]);
    command.arg(dir).args(TUNNEL);
    if let Some(link) = circle {
        command.args(["--link", link]);
    }
    spawn_until(command, "relay link:")
}

/// A child process killed when dropped, so that a test failing midway leaves nothing running.
pub struct Running(Option<Child>);

impl Running {
    /// The process, no longer killed on drop (for `wait_with_output`).
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("still held")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("still held")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("still held")
    }
}

/// A relay's data dir and two members' (with their node ids), and the circle of the two.
pub struct TwoMembers {
    pub relay_dir: tempfile::TempDir,
    pub dirs: [tempfile::TempDir; 2],
    pub ids: [String; 2],
    pub circle: String,
}

pub fn two_members(seed: u8) -> TwoMembers {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ids = [node_id(dirs[0].path()), node_id(dirs[1].path())];
    let circle = circle_link(seed, &[&ids[0], &ids[1]]);
    TwoMembers {
        relay_dir: tempfile::tempdir().unwrap(),
        dirs,
        ids,
        circle,
    }
}
