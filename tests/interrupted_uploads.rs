//! Writes cut off by a killed relay leave nothing behind on remote backends: rclone's temp
//! files are deleted and unfinished S3 multipart uploads aborted, and no `rclone serve s3`
//! outlives the relay that started it.

mod binary;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backends::spec::{BackendSpec, S3Keys};
use common::mirror_set::mirrored;
use common::stand_ins::{self, BUCKET, s3_spec};

const KEY: &str = "KILLTESTKEY";
const SECRET: &str = "kill-test-secret";

/// `haven-relay run` on an rclone remote, and the S3 endpoint it printed.
fn start_relay(data: &Path, conf: &Path) -> (binary::Running, String) {
    let mut command = binary::haven(&[
        "run",
        "--s3-addr",
        "127.0.0.1:0",
        "--scrub-rate",
        "0",
        "--rclone-remote",
        "friends:haven",
    ]);
    command
        .arg("--data-dir")
        .arg(data)
        .arg("--rclone-config")
        .arg(conf)
        .arg("--rclone-bin")
        .arg(stand_ins::rclone_binary())
        .env("HAVEN_RELAY_ACCESS_KEY", KEY)
        .env("HAVEN_RELAY_SECRET_KEY", SECRET);
    binary::spawn_until(command, "S3 endpoint:")
}

/// The aws CLI against `endpoint`, uploading as one slow PUT (no multipart, 8 MB/s).
fn aws(endpoint: &str, config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("HAVEN_RELAY_AWS_CLI").expect("run the tests with tests/run.sh"));
    command
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", config)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".rclone_temp_multipart_")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

fn children_of(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-P", &pid.to_string()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A relay killed with -9 in the middle of a large PUT to an rclone remote: the upload's temp
/// file is on the remote and rclone is left running without it. The next start deletes the
/// temp file, and the kernel has already stopped the orphaned rclone.
#[test]
fn a_relay_killed_mid_upload_leaves_no_temp_files_or_rclone_behind() {
    let work = tempfile::tempdir().unwrap();
    let disk = work.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let conf = work.path().join("rclone.conf");
    let remote = format!(
        "[disk]\ntype = local\n\n[friends]\ntype = alias\nremote = disk:{}\n",
        disk.display()
    );
    std::fs::write(&conf, remote).unwrap();
    let aws_config = work.path().join("aws.conf");
    std::fs::write(
        &aws_config,
        "[default]\ns3 =\n  max_bandwidth = 8MB/s\n  multipart_threshold = 4GB\n",
    )
    .unwrap();
    let big = work.path().join("big.bin");
    std::fs::write(&big, common::blob(120_000_000, 3)).unwrap();
    let data = work.path().join("data");

    for round in 0..2 {
        let (mut relay, endpoint) = start_relay(&data, &conf);
        let rclones = children_of(relay.id());
        assert_eq!(rclones.len(), 1, "one rclone serve s3 per remote");
        if round == 0 {
            assert!(
                aws(&endpoint, &aws_config, &["s3", "mb", "s3://circle"])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let mut upload = aws(
            &endpoint,
            &aws_config,
            &["s3", "cp", big.to_str().unwrap(), "s3://circle/big"],
        )
        .spawn()
        .unwrap();
        let blobs = disk.join("haven").join("blobs");
        wait_for("a temp file on the remote", Duration::from_secs(60), || {
            !temp_files(&blobs).is_empty()
        });
        relay.kill().unwrap(); // SIGKILL: nothing of the relay runs after this
        relay.wait().unwrap();
        let _ = upload.wait();
        assert!(!temp_files(&blobs).is_empty());
        wait_for("rclone to stop with its relay", Duration::from_secs(10), || {
            rclones.iter().all(|&pid| !alive(pid))
        });
    }

    let (mut relay, endpoint) = start_relay(&data, &conf);
    assert_eq!(temp_files(&disk).len(), 0, "{:?}", temp_files(&disk));
    // The relay still works on that remote.
    let small = work.path().join("small.bin");
    std::fs::write(&small, common::blob(6_000_000, 4)).unwrap();
    let back = work.path().join("back.bin");
    assert!(
        aws(
            &endpoint,
            &aws_config,
            &["s3", "cp", small.to_str().unwrap(), "s3://circle/small"]
        )
        .status()
        .unwrap()
        .success()
    );
    assert!(
        aws(
            &endpoint,
            &aws_config,
            &["s3", "cp", "s3://circle/small", back.to_str().unwrap()]
        )
        .status()
        .unwrap()
        .success()
    );
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&small).unwrap());
    relay.kill().unwrap();
    relay.wait().unwrap();
}

/// On an S3 backend the parts of an unfinished upload live in the provider's bucket: the
/// relay's inventory lists the uploads under `blobs/` and aborts those it is not writing.
/// Uploads elsewhere in the bucket are not the relay's and stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_s3_uploads_of_blobs_are_aborted() {
    let work = tempfile::tempdir().unwrap();
    let (a, c) = (work.path().join("a"), work.path().join("c"));
    let rclone = stand_ins::rclone_s3(&c).await;
    let (ak, sk) = rclone.credentials();
    // The aws CLI, not the SDK: rclone's InitiateMultipartUpload answer has a root element
    // the SDK refuses.
    let endpoint = rclone.endpoint();
    let provider = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(std::env::var("HAVEN_RELAY_AWS_CLI").expect("run the tests with tests/run.sh"))
            .args(["--endpoint-url", &endpoint, "--region", "us-east-1", "s3api"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ak)
            .env("AWS_SECRET_ACCESS_KEY", sk)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let part = work.path().join("part");
    let mut started = Vec::new();
    for (key, size) in [
        ("blobs/ab/ab0123456789abcdef0123456789abcd", 5 << 20),
        ("blobs/cd/cd01", 1000),
        ("elsewhere/x", 1000),
    ] {
        let up = provider(&["create-multipart-upload", "--bucket", BUCKET, "--key", key]);
        let id = up["UploadId"].as_str().unwrap().to_owned();
        std::fs::write(&part, common::blob(size, 1)).unwrap();
        let body = part.to_str().unwrap();
        provider(&[
            "upload-part",
            "--bucket",
            BUCKET,
            "--key",
            key,
            "--upload-id",
            &id,
            "--part-number",
            "1",
            "--body",
            body,
        ]);
        started.push(key);
    }
    let pending = || async {
        let out = provider(&["list-multipart-uploads", "--bucket", BUCKET]);
        let mut keys: Vec<String> = out["Uploads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["Key"].as_str().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(pending().await, started);

    let relay = common::start_with(|cfg| {
        mirrored(cfg, vec![BackendSpec::Fs(a.clone()), s3_spec(&rclone.endpoint(), "c")]);
        cfg.storage.connect.named_keys.insert(
            "c".into(),
            S3Keys {
                access_key_id: ak.into(),
                secret_access_key: sk.into(),
            },
        );
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while pending().await != ["elsewhere/x"] {
        assert!(Instant::now() < deadline, "uploads left: {:?}", pending().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(temp_files(&c.join(BUCKET).join("blobs")).is_empty());
    // Writes through the relay, large enough for a multipart upload of their own, still land.
    let bucket = relay.bucket("circle").await;
    let body = common::blob(12 << 20, 9);
    relay.put(&bucket, "big", body.clone()).await;
    assert!(relay.get(&bucket, "big").await == body);
    assert_eq!(pending().await, ["elsewhere/x"]);
}
