//! The built binary driven as a user would: `credentials`, then `run` with the aws CLI.
//! The aws CLI comes from PyPI via tests/run.sh, which sets HAVEN_RELAY_AWS_CLI.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_haven-relay");

fn aws_cli() -> String {
    std::env::var("HAVEN_RELAY_AWS_CLI")
        .expect("HAVEN_RELAY_AWS_CLI is not set: run the tests with `bash tests/run.sh`, which installs the aws CLI")
}

#[test]
fn credentials_are_created_once_with_private_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(BIN)
            .args(["credentials", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("access key: HAVN"), "{first}");
    assert_eq!(run(), first, "credentials are stable");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn run_without_a_transport_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--s3"));
}

#[test]
fn aws_cli_round_trip_against_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Command::new(BIN)
        .args(["run", "--s3-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("HAVEN_RELAY_ACCESS_KEY", "CLITESTKEY")
        .env("HAVEN_RELAY_SECRET_KEY", "cli-test-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(relay.stdout.take().unwrap()).lines();
    let endpoint = loop {
        let line = lines.next().expect("relay printed its banner").unwrap();
        if let Some(rest) = line.trim().strip_prefix("S3 endpoint:") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let aws = |args: &[&str]| {
        let out = Command::new(aws_cli())
            .args(["--endpoint-url", &endpoint, "--region", "us-east-1"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "CLITESTKEY")
            .env("AWS_SECRET_ACCESS_KEY", "cli-test-secret")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let src = dir.path().join("upload.bin");
    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    aws(&["s3", "mb", "s3://cli-bucket"]);
    // 20 MB: the CLI uploads it as a multipart upload with CRC32 checksums.
    aws(&[
        "s3",
        "cp",
        src.to_str().unwrap(),
        "s3://cli-bucket/dir/file with space.bin",
    ]);
    let listing = aws(&["s3", "ls", "--recursive", "s3://cli-bucket"]);
    assert!(listing.contains("20000000 dir/file with space.bin"), "{listing}");
    let back = dir.path().join("download.bin");
    aws(&[
        "s3",
        "cp",
        "s3://cli-bucket/dir/file with space.bin",
        back.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&back).unwrap() == data, "downloaded bytes differ");
    aws(&["s3", "rm", "s3://cli-bucket/dir/file with space.bin"]);
    assert!(!aws(&["s3", "ls", "--recursive", "s3://cli-bucket"]).contains("file with space"));

    // SIGTERM: the relay stops cleanly.
    let pid = relay.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = relay.wait().unwrap();
    assert!(status.success(), "relay exited with {status}");
}
