//! HTTPS on the S3 endpoint, driven with the real binary and the aws CLI: the certificate is
//! served, a renewal is picked up without a restart, and a broken renewal keeps the old one.

mod binary;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use binary::BIN;

const ACCESS_KEY: &str = "TLSTESTKEY";
const SECRET_KEY: &str = "tls-test-secret";

/// A self-signed certificate for 127.0.0.1, written as `NAME.pem` (also the CA bundle that
/// trusts it) and `NAME.key`.
fn certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// The aws CLI against `endpoint`, trusting only `ca`.
fn aws(endpoint: &str, ca: &Path, args: &[&str]) -> Output {
    let cli = std::env::var("HAVEN_RELAY_AWS_CLI")
        .expect("HAVEN_RELAY_AWS_CLI is not set: run the tests with `bash tests/run.sh`");
    Command::new(cli)
        .args(["--endpoint-url", endpoint, "--region", "us-east-1", "--ca-bundle"])
        .arg(ca)
        .args(["--cli-read-timeout", "10", "--cli-connect-timeout", "5"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> bool {
    out.status.success()
}

#[test]
fn https_serves_the_certificate_and_follows_its_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "live");
    let first_ca = dir.path().join("first-ca.pem");
    std::fs::copy(&cert, &first_ca).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["run", "--s3-addr", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("HAVEN_RELAY_ACCESS_KEY", ACCESS_KEY)
        .env("HAVEN_RELAY_SECRET_KEY", SECRET_KEY)
        .env("RUST_LOG", "info")
        .stderr(Stdio::null());
    let (_relay, endpoint) = binary::spawn_until(command, "S3 endpoint:");
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");

    // A round trip over HTTPS with the CLI trusting the certificate.
    let file = dir.path().join("sealed.bin");
    std::fs::write(&file, b"sealed bytes over TLS").unwrap();
    assert!(ok(&aws(&endpoint, &first_ca, &["s3", "mb", "s3://tls"])));
    assert!(ok(&aws(
        &endpoint,
        &first_ca,
        &["s3", "cp", file.to_str().unwrap(), "s3://tls/k"]
    )));
    let back = dir.path().join("back.bin");
    assert!(ok(&aws(
        &endpoint,
        &first_ca,
        &["s3", "cp", "s3://tls/k", back.to_str().unwrap()]
    )));
    assert_eq!(std::fs::read(&back).unwrap(), b"sealed bytes over TLS");
    // Plain HTTP on the HTTPS port is not served.
    let plain = endpoint.replace("https://", "http://");
    assert!(!ok(&aws(&plain, &first_ca, &["s3", "ls"])));

    // A renewal: new files in place; new connections get the new certificate.
    std::thread::sleep(Duration::from_millis(1100)); // a visibly newer mtime
    let (renewed, _) = certificate(dir.path(), "live");
    let renewed_ca = dir.path().join("renewed-ca.pem");
    std::fs::copy(&renewed, &renewed_ca).unwrap();
    let started = Instant::now();
    while !ok(&aws(&endpoint, &renewed_ca, &["s3", "ls"])) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the renewal was never picked up"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        !ok(&aws(&endpoint, &first_ca, &["s3", "ls"])),
        "the old certificate is still served"
    );

    // A broken renewal (half-written file): the relay keeps the last good certificate.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    std::thread::sleep(Duration::from_secs(7));
    assert!(ok(&aws(&endpoint, &renewed_ca, &["s3", "ls"])));
}

#[test]
fn bad_tls_settings_stop_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "one");
    let (_, other_key) = certificate(dir.path(), "two");
    let missing = dir.path().join("missing.pem");
    let cases: [(Vec<&Path>, &str); 4] = [
        (vec![&cert], "both a certificate and its key"),
        (vec![&missing, &key], "missing.pem"),
        (vec![&key, &key], "holds no certificate"),
        (vec![&cert, &other_key], "does not belong to the certificate"),
    ];
    for (files, why) in cases {
        let mut command = Command::new(BIN);
        command
            .args(["run", "--s3-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(files[0]);
        if let Some(key) = files.get(1) {
            command.arg("--tls-key").arg(key);
        }
        let out = command.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: started");
        assert!(err.contains(why), "{why}: {err}");
    }
}
