//! The real binary stopped in the middle of 100 concurrent uploads (small PUTs, large PUTs,
//! multipart): by `kill -9`, every acknowledged object is intact after a restart, nothing
//! half-written is listed and no temp file is left; by SIGTERM, uploads in flight finish
//! and the relay exits 0.

mod binary;
mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use binary::{ACCESS_KEY, SECRET_KEY, http_relay};
use common::blob;

const BUCKET: &str = "load";
const WRITERS: usize = 100;

/// What writer `w` puts in its round `r`: its kind decides the size and the way up.
fn payload(key: &str) -> Vec<u8> {
    let (kind, seed) = parse(key);
    let len = match kind {
        "small" => 64 * 1024,
        "large" => 3 * 1024 * 1024 + 17,
        _ => 5 * 1024 * 1024 + 1024 * 1024,
    };
    blob(len, seed)
}

/// Keys are `<kind>/<writer>/<round>`; the seed is made of writer and round.
fn parse(key: &str) -> (&str, u64) {
    let mut parts = key.split('/');
    let kind = parts.next().unwrap();
    let writer: u64 = parts.next().unwrap().parse().unwrap();
    let round: u64 = parts.next().unwrap().parse().unwrap();
    (kind, writer * 1000 + round)
}

fn kind_of(writer: usize) -> &'static str {
    match writer % 10 {
        0 => "multipart",
        1 | 2 => "large",
        _ => "small",
    }
}

async fn upload(client: &Client, key: &str) -> Result<(), String> {
    let body = payload(key);
    if !key.starts_with("multipart/") {
        return client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"));
    }
    let id = client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?
        .upload_id
        .unwrap();
    let mut parts = Vec::new();
    for (i, chunk) in body.chunks(5 * 1024 * 1024).enumerate() {
        let n = i as i32 + 1;
        let out = client
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(chunk.to_vec().into())
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag.unwrap())
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

/// One client, no retries: a request the relay never answered is not acknowledged.
fn client(endpoint: &str) -> Client {
    let base = common::client(endpoint, ACCESS_KEY, SECRET_KEY);
    let config = base
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// 100 writers, each uploading new keys until its first failure (the relay stopped).
/// Returns the acknowledged keys.
fn start_writers(endpoint: &str, acknowledged: Arc<Mutex<Vec<String>>>) -> Vec<tokio::task::JoinHandle<()>> {
    let client = client(endpoint);
    (0..WRITERS)
        .map(|w| {
            let (client, acknowledged) = (client.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for round in 0.. {
                    let key = format!("{}/{w}/{round}", kind_of(w));
                    if upload(&client, &key).await.is_err() {
                        return;
                    }
                    acknowledged.lock().unwrap().push(key);
                }
            })
        })
        .collect()
}

/// The real binary on `data`, with its bucket and the 100 writers already at it.
async fn relay_under_load(
    data: &Path,
) -> (
    binary::Running,
    Arc<Mutex<Vec<String>>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (relay, endpoint) = http_relay(data, false);
    common::client(&endpoint, ACCESS_KEY, SECRET_KEY)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers = start_writers(&endpoint, acknowledged.clone());
    (relay, acknowledged, writers)
}

async fn wait_for_acks(acknowledged: &Mutex<Vec<String>>, kinds: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let acked = acknowledged.lock().unwrap().clone();
        if kinds.iter().all(|k| acked.iter().any(|key| key.starts_with(k))) && acked.len() >= 150 {
            return;
        }
        assert!(Instant::now() < deadline, "too few uploads finished: {}", acked.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged key reads back whole; everything listed is whole; no temp files.
async fn check_after_restart(data: &Path, acknowledged: &[String]) {
    let (relay, endpoint) = http_relay(data, false);
    let client = common::client(&endpoint, ACCESS_KEY, SECRET_KEY);
    let listed = common::list_keys(&client, BUCKET).await;
    let listed_set: std::collections::BTreeSet<&String> = listed.iter().collect();
    for key in acknowledged {
        assert!(listed_set.contains(key), "acknowledged {key} is not listed");
    }
    for key in &listed {
        let got = client.get_object().bucket(BUCKET).key(key).send().await.unwrap();
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(bytes == payload(key), "{key} is not what was uploaded");
    }
    let tmp = data.join("store").join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "temp files left: {:?}",
        left.iter().map(|e| e.path()).collect::<Vec<_>>()
    );
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_100_concurrent_uploads_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut relay, acknowledged, writers) = relay_under_load(&data).await;
    wait_for_acks(&acknowledged, &["small/", "large/", "multipart/"]).await;
    relay.kill().unwrap(); // SIGKILL, with 100 uploads under way
    relay.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    check_after_restart(&data, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_100_concurrent_uploads_finishes_them_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut relay, acknowledged, writers) = relay_under_load(&data).await;
    wait_for_acks(&acknowledged, &["small/", "large/"]).await;
    let pid = relay.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || relay.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the relay exited with {status} after SIGTERM");
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    check_after_restart(&data, &acknowledged).await;
}
