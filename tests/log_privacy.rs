//! What the logs never hold: a workload with distinctive key names, bodies and metadata over
//! HTTP and the tunnel, at `RUST_LOG=info` (which once turned on s3s's own logging of
//! malformed request bodies at ERROR), leaves none of them, nor a member's node id or the
//! keys, in the relay's or `connect`'s log; nor key names, bodies or metadata in the data
//! dir outside the store.

mod binary;
#[path = "common/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::path::Path;
use std::process::Command;

use binary::{ACCESS_KEY, BIN, SECRET_KEY, TUNNEL, aws_at, circle_link, node_id, spawn_until, spawn_until_all};

/// In every key, body and metadata value of the workload.
const MARK: &str = "zq7x";

fn aws(endpoint: &str, args: &[&str]) {
    let out = aws_at(endpoint, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir` but the store, with its text.
fn files_outside_the_store(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "store") {
                files_outside_the_store(&path, out);
            }
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            out.push((path.display().to_string(), text));
        }
    }
}

#[tokio::test]
async fn logs_hold_no_keys_bodies_metadata_or_node_ids_at_info() {
    let dir = tempfile::tempdir().unwrap();
    let (relay_dir, member_dir) = (dir.path().join("relay"), dir.path().join("member"));
    let member = node_id(&member_dir);
    let circle = circle_link(31, &[&member]);
    let relay_log = dir.path().join("relay.log");
    let connect_log = dir.path().join("connect.log");

    let mut command = Command::new(BIN);
    command
        .args(["run", "--s3-addr", "127.0.0.1:0", "--link", &circle, "--data-dir"])
        .arg(&relay_dir)
        .args(TUNNEL)
        .env("RUST_LOG", "info")
        .env("HAVEN_RELAY_ACCESS_KEY", ACCESS_KEY)
        .env("HAVEN_RELAY_SECRET_KEY", SECRET_KEY)
        .stderr(std::fs::File::create(&relay_log).unwrap());
    let (relay, printed) = spawn_until_all(command, &["S3 endpoint:", "relay link:"]);
    let [http_endpoint, relay_link] = [printed[0].clone(), printed[1].clone()];
    let mut command = Command::new(BIN);
    command
        .args(["connect", &relay_link, "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&member_dir)
        .args(TUNNEL)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&connect_log).unwrap());
    let (connect, tunnel_endpoint) = spawn_until(command, "S3 endpoint:");

    let body = dir.path().join("body");
    std::fs::write(&body, format!("body-{MARK}-sealed")).unwrap();
    let body = body.to_str().unwrap();
    for (i, endpoint) in [&http_endpoint, &tunnel_endpoint].into_iter().enumerate() {
        let bucket = format!("s3://bucket-{MARK}-{i}");
        aws(endpoint, &["s3", "mb", &bucket]);
        let object = format!("{bucket}/dir-{MARK}/key-{MARK}.bin");
        aws(
            endpoint,
            &["s3", "cp", body, &object, "--metadata", &format!("note=meta-{MARK}")],
        );
        aws(endpoint, &["s3", "ls", &format!("{bucket}/dir-{MARK}/")]);
        aws(endpoint, &["s3", "cp", &object, "-"]);
        aws(endpoint, &["s3", "rm", &object]);
    }
    // A malformed DeleteObjects body naming a key: s3s logs such bodies verbatim at ERROR.
    let addr: std::net::SocketAddr = http_endpoint.trim_start_matches("http://").parse().unwrap();
    let xml = format!("<Delete><Object><Key>key-{MARK}-malformed</Key></Object><Broken");
    let path = format!("/bucket-{MARK}-0");
    let headers = raw::sign(
        "POST",
        &format!("{path}?delete"),
        &[
            ("host".into(), addr.to_string()),
            ("content-length".into(), xml.len().to_string()),
        ],
        &raw::sha256_hex(xml.as_bytes()),
        ACCESS_KEY,
        SECRET_KEY,
    );
    let (status, text) = raw::send(addr, &format!("POST {path}?delete HTTP/1.1"), &headers, xml.as_bytes()).await;
    assert_eq!(status, 400, "{text}");

    drop(connect);
    drop(relay);
    let texts = vec![
        ("relay log".to_owned(), std::fs::read_to_string(&relay_log).unwrap()),
        ("connect log".to_owned(), std::fs::read_to_string(&connect_log).unwrap()),
    ];
    assert!(
        texts[0].1.contains("request"),
        "the relay logged no requests at info:\n{}",
        texts[0].1
    );
    for (name, text) in &texts {
        for secret in [MARK, &member, ACCESS_KEY, SECRET_KEY] {
            assert!(!text.contains(secret), "{name} holds {secret:?}:\n{text}");
        }
    }
    // The data dir holds node ids (members.json) and may hold the keys (credentials), but no
    // key name, body or metadata outside the store.
    let mut files = Vec::new();
    files_outside_the_store(&relay_dir, &mut files);
    assert!(
        files.iter().any(|(name, _)| name.ends_with("members.json")),
        "{files:?}"
    );
    for (name, text) in &files {
        assert!(
            !text.contains(MARK),
            "{name} holds a key name, body or metadata:\n{text}"
        );
    }
}
