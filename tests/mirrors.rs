//! The mirror set end to end: real S3 clients against the relay, real S3 servers behind it
//! (in-process s3s-fs, `rclone serve s3`), real directories, and real faults — a stopped
//! server, a corrupted file, a socket that never answers.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backends::mirror::AckPolicy;
use backends::spec::BackendSpec;
use common::mirror_set::{converged, identical, mirrored};
use common::stand_ins::{self, BUCKET, S3sFs, blob_files, s3_spec};
use common::{TestRelay, blob, code};

async fn list_keys(relay: &TestRelay, bucket: &str) -> Vec<String> {
    common::list_keys_paged(&relay.client, bucket, 7).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_mirrors_lose_nothing_while_one_is_down_and_repair_converges() {
    let work = tempfile::tempdir().unwrap();
    let (a, b, c) = (work.path().join("a"), work.path().join("b"), work.path().join("c"));
    let s3s = S3sFs::start(&b, "127.0.0.1:0".parse().unwrap()).await;
    let rclone = stand_ins::rclone_s3(&c).await;
    let backends = vec![
        BackendSpec::Fs(a.clone()),
        s3_spec(&s3s.endpoint(), "b"),
        s3_spec(&rclone.endpoint(), "c"),
    ];
    let mut relay = common::start_with(|cfg| {
        mirrored(cfg, backends);
        let (ak, sk) = rclone.credentials();
        cfg.storage.connect.named_keys.insert(
            "c".into(),
            backends::spec::S3Keys {
                access_key_id: ak.into(),
                secret_access_key: sk.into(),
            },
        );
    })
    .await;
    let bucket = relay.bucket("circle").await;

    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..12u64 {
        let body = blob(if i % 4 == 0 { 1_500_000 } else { 10_000 + i as usize }, i);
        relay.put(&bucket, &format!("before/{i}"), body.clone()).await;
        expected.insert(format!("before/{i}"), body);
    }
    // A multipart object, staged locally and streamed to the mirrors on completion.
    let parts = vec![blob(5 * 1024 * 1024, 100), blob(1_000_000, 101)];
    common::multipart_put(&relay.client, &bucket, "before/multipart", &parts).await;
    expected.insert("before/multipart".into(), parts.concat());
    converged(&relay).await;
    let dirs = [a.clone(), b.join(BUCKET), c.join(BUCKET)];
    identical(&dirs, expected.len()).await;

    // Mirror b goes away for a whole mixed workload.
    let b_addr = s3s.stop().await;
    for i in 0..40u64 {
        let key = format!("during/{}", i % 25);
        match i % 5 {
            0..=2 => {
                let body = blob(2_000 + i as usize * 31, 1000 + i);
                relay.put(&bucket, &key, body.clone()).await;
                expected.insert(key, body);
            }
            3 => {
                let victim = format!("before/{}", i % 12);
                relay
                    .client
                    .delete_object()
                    .bucket(&bucket)
                    .key(&victim)
                    .send()
                    .await
                    .unwrap();
                expected.remove(&victim);
            }
            _ => {}
        }
        // Every read of every acknowledged object is served, with the right bytes.
        if i % 10 == 9 {
            for (key, body) in &expected {
                assert_eq!(&relay.get(&bucket, key).await, body, "{key} while b is down");
            }
        }
    }
    assert_eq!(
        list_keys(&relay, &bucket).await,
        expected.keys().cloned().collect::<Vec<_>>()
    );
    let status = relay.relay.mirror_status().unwrap();
    assert!(!status[1].up && status[1].pending_repairs > 0, "{status:?}");

    // The relay restarts while b is still down: the repair debt is in the catalog.
    relay = relay.restart().await;
    assert_eq!(
        list_keys(&relay, &bucket).await,
        expected.keys().cloned().collect::<Vec<_>>()
    );
    let s3s = S3sFs::start(&b, b_addr).await;
    converged(&relay).await;
    let blobs = identical(&dirs, expected.len()).await;
    // Bodies on the mirrors are exactly what the clients sent (plus the metadata trailer).
    for (_, stored) in blobs {
        assert!(
            expected.values().any(|b| stored.starts_with(b)),
            "a blob that matches no object"
        );
    }
    for (key, body) in &expected {
        assert_eq!(&relay.get(&bucket, key).await, body, "{key} after repair");
    }
    drop(s3s);
}

#[tokio::test]
async fn a_corrupt_copy_is_never_served_and_is_repaired() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let relay =
        common::start_with(|cfg| mirrored(cfg, vec![BackendSpec::Fs(a.clone()), BackendSpec::Fs(b.clone())])).await;
    let bucket = relay.bucket("circle").await;
    let small = blob(4_000, 1);
    let large = blob(3 * 1024 * 1024, 2);
    relay.put(&bucket, "small", small.clone()).await;
    relay.put(&bucket, "large", large.clone()).await;
    let good = identical(&[a.clone(), b.clone()], 2).await;

    // Flip one byte in the body of every copy on mirror a (the first one read).
    for rel in good.keys() {
        let path = a.join("blobs").join(rel);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1000] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    // Small objects are checked before the first byte is sent: the good copy comes back.
    assert_eq!(relay.get(&bucket, "small").await, small);
    // Large ones are checked as they stream: never wrong bytes, at worst a cut-short body.
    let first = relay
        .client
        .get_object()
        .bucket(&bucket)
        .key("large")
        .send()
        .await
        .unwrap();
    if let Ok(bytes) = first.body.collect().await {
        assert_eq!(bytes.to_vec(), large, "a corrupt copy was served");
    }
    // Both bad copies are repaired from mirror b.
    identical(&[a.clone(), b.clone()], 2).await;
    assert_eq!(blob_files(&a), good);
    assert_eq!(relay.get(&bucket, "large").await, large);
}

/// A relay on a local directory `a` and an S3 endpoint that accepts connections and never
/// answers, with a 1 s timeout and no retries.
async fn with_a_hung_mirror(ack: AckPolicy) -> (TestRelay, std::path::PathBuf, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let hung = stand_ins::hung_server().await;
    let backends = vec![BackendSpec::Fs(a.clone()), s3_spec(&format!("http://{hung}"), "b")];
    let relay = common::start_with(|cfg| {
        mirrored(cfg, backends);
        cfg.storage.connect.timeout = Duration::from_secs(1);
        cfg.storage.connect.retries = 0;
        cfg.storage.mirror.ack = ack;
    })
    .await;
    (relay, a, work)
}

#[tokio::test]
async fn a_backend_that_hangs_costs_a_timeout_not_a_stuck_request() {
    let (relay, _a, _work) = with_a_hung_mirror(AckPolicy::All).await;
    let bucket = relay.bucket("circle").await;
    let started = Instant::now();
    relay.put(&bucket, "k", b"sealed".to_vec()).await;
    assert_eq!(relay.get(&bucket, "k").await, b"sealed");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let status = relay.relay.mirror_status().unwrap();
    assert!(status[0].up && !status[1].up, "{status:?}");
    assert_eq!(status[1].pending_repairs, 1);
}

#[tokio::test]
async fn a_quorum_that_cannot_be_met_refuses_the_write_and_keeps_nothing() {
    let (relay, a, _work) = with_a_hung_mirror(AckPolicy::Quorum(2)).await;
    let bucket = relay.bucket("circle").await;
    let err = relay
        .client
        .put_object()
        .bucket(&bucket)
        .key("k")
        .body(b"sealed".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ServiceUnavailable");
    assert!(list_keys(&relay, &bucket).await.is_empty());
    // The copy that did reach mirror a is removed again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !blob_files(&a).is_empty() {
        assert!(Instant::now() < deadline, "the refused write left a blob behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Metadata, checksums, ranges, multipart and listing through each kind of backend alone.
async fn round_trip_suite(relay: &TestRelay) {
    let bucket = relay.bucket("circle").await;
    let body = blob(70_000, 9);
    relay
        .client
        .put_object()
        .bucket(&bucket)
        .key("dir/../odd key ü")
        .content_type("application/x-sealed")
        .cache_control("no-store")
        .metadata("sender", "alice")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let head = relay
        .client
        .head_object()
        .bucket(&bucket)
        .key("dir/../odd key ü")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/x-sealed"));
    assert_eq!(head.cache_control(), Some("no-store"));
    assert_eq!(
        head.metadata().unwrap().get("sender").map(String::as_str),
        Some("alice")
    );
    assert!(head.checksum_sha256().is_some());
    let ranged = relay
        .client
        .get_object()
        .bucket(&bucket)
        .key("dir/../odd key ü")
        .range("bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.body.collect().await.unwrap().to_vec(), body[100..200]);
    let parts = vec![blob(5 * 1024 * 1024, 10), blob(10, 11)];
    let etag = common::multipart_put(&relay.client, &bucket, "big", &parts).await;
    assert!(etag.ends_with("-2\""), "{etag}");
    assert_eq!(relay.get(&bucket, "big").await, parts.concat());
    assert_eq!(list_keys(relay, &bucket).await, vec!["big", "dir/../odd key ü"]);
    relay
        .client
        .delete_object()
        .bucket(&bucket)
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(list_keys(relay, &bucket).await, vec!["dir/../odd key ü"]);
}

/// No file a backend holds is named after, or under a directory named after, a key.
fn no_key_in_paths(dir: &std::path::Path) {
    for (rel, _) in blob_files(dir) {
        assert!(!rel.contains("odd") && !rel.contains("big"), "{rel}");
    }
}

#[tokio::test]
async fn an_s3_bucket_backend_round_trips_everything() {
    let work = tempfile::tempdir().unwrap();
    let s3s = S3sFs::start(&work.path().join("b"), "127.0.0.1:0".parse().unwrap()).await;
    let spec = s3_spec(&s3s.endpoint(), "b");
    let relay = common::start_with(|cfg| mirrored(cfg, vec![spec])).await;
    round_trip_suite(&relay).await;
    no_key_in_paths(&work.path().join("b").join(BUCKET));
    // The catalog outlives the relay: same objects after a restart.
    let relay = relay.restart().await;
    assert_eq!(list_keys(&relay, "circle").await, vec!["dir/../odd key ü"]);
}

#[tokio::test]
async fn an_rclone_remote_from_rclone_conf_round_trips_everything() {
    let work = tempfile::tempdir().unwrap();
    let disk = work.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let conf = work.path().join("rclone.conf");
    std::fs::write(
        &conf,
        format!(
            "[disk]\ntype = local\n\n[friends]\ntype = alias\nremote = disk:{}\n",
            disk.display()
        ),
    )
    .unwrap();
    let relay = common::start_with(|cfg| {
        mirrored(cfg, vec!["rclone:friends:haven/circle".parse().unwrap()]);
        cfg.storage.connect.rclone_config = Some(conf.clone());
    })
    .await;
    round_trip_suite(&relay).await;
    let stored = disk.join("haven").join("circle");
    // The deleted object's blob goes in the background; the one left is in the remote's folder.
    identical(std::slice::from_ref(&stored), 1).await;
    no_key_in_paths(&stored);
}

#[tokio::test]
async fn a_missing_rclone_remote_stops_the_relay_with_rclones_reason() {
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("rclone.conf");
    std::fs::write(&conf, "[disk]\ntype = local\n").unwrap();
    let mut config = common::config(&tempfile::tempdir().unwrap());
    mirrored(&mut config, vec!["rclone:nosuchremote:haven".parse().unwrap()]);
    config.storage.connect.rclone_config = Some(conf);
    let err = haven_relay::Relay::start(&config, &common::credentials())
        .await
        .err()
        .expect("a missing remote must not start");
    let text = format!("{err:#}");
    assert!(text.contains("nosuchremote"), "{text}");
}

#[tokio::test]
async fn a_lost_data_dir_is_rebuilt_from_the_mirrors() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let s3s = S3sFs::start(&work.path().join("b"), "127.0.0.1:0".parse().unwrap()).await;
    let backends = vec![BackendSpec::Fs(a.clone()), s3_spec(&s3s.endpoint(), "b")];
    let first = common::start_with(|cfg| mirrored(cfg, backends.clone())).await;
    let bucket = first.bucket("circle").await;
    first
        .client
        .put_object()
        .bucket(&bucket)
        .key("with/meta")
        .content_type("application/x-sealed")
        .metadata("sender", "alice")
        .body(blob(5_000, 1).into())
        .send()
        .await
        .unwrap();
    first.put(&bucket, "overwritten", blob(100, 2)).await;
    first.put(&bucket, "overwritten", blob(200, 3)).await;
    first.put(&bucket, "deleted", blob(300, 4)).await;
    first
        .client
        .delete_object()
        .bucket(&bucket)
        .key("deleted")
        .send()
        .await
        .unwrap();
    let parts = vec![blob(5 * 1024 * 1024, 5), blob(1000, 6)];
    common::multipart_put(&first.client, &bucket, "multi", &parts).await;
    converged(&first).await;
    let keys = list_keys(&first, &bucket).await;
    let multi_etag = first
        .client
        .head_object()
        .bucket(&bucket)
        .key("multi")
        .send()
        .await
        .unwrap()
        .e_tag;
    // The machine dies: the data dir (catalog, staging) is gone; the backends survive.
    let TestRelay { relay, dir, .. } = first;
    relay.shutdown().await;
    drop(dir);

    // A new data dir is a stranger to the backends until told to take them over.
    let mut refused = common::config(&tempfile::tempdir().unwrap());
    mirrored(&mut refused, backends.clone());
    let err = haven_relay::Relay::start(&refused, &common::credentials())
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("--take-over"), "{err:#}");
    let second = common::start_with(|cfg| {
        mirrored(cfg, backends);
        cfg.storage.mirror.take_over = true;
    })
    .await;
    assert_eq!(list_keys(&second, &bucket).await, keys);
    assert_eq!(keys, vec!["multi", "overwritten", "with/meta"]);
    assert_eq!(
        second.get(&bucket, "overwritten").await,
        blob(200, 3),
        "the newest version wins"
    );
    assert_eq!(second.get(&bucket, "multi").await, parts.concat());
    let head = second
        .client
        .head_object()
        .bucket(&bucket)
        .key("multi")
        .send()
        .await
        .unwrap();
    assert_eq!(head.e_tag, multi_etag, "the multipart ETag survives");
    let head = second
        .client
        .head_object()
        .bucket(&bucket)
        .key("with/meta")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/x-sealed"));
    assert_eq!(
        head.metadata().unwrap().get("sender").map(String::as_str),
        Some("alice")
    );
    converged(&second).await;
    identical(&[a.clone(), work.path().join("b").join(BUCKET)], 3).await;
}

#[tokio::test]
async fn adding_backends_imports_the_embedded_store_once() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let before = common::start().await;
    let bucket = before.bucket("circle").await;
    let rule = aws_sdk_s3::types::CorsRule::builder()
        .allowed_methods("GET")
        .allowed_origins("https://app.example")
        .build()
        .unwrap();
    before
        .client
        .put_bucket_cors()
        .bucket(&bucket)
        .cors_configuration(
            aws_sdk_s3::types::CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    before.put(&bucket, "plain", blob(3_000, 1)).await;
    let parts = vec![blob(5 * 1024 * 1024, 2), blob(10, 3)];
    common::multipart_put(&before.client, &bucket, "multi", &parts).await;
    let etag = |relay: &TestRelay, key: &'static str| {
        let (client, bucket) = (relay.client.clone(), bucket.clone());
        async move { client.head_object().bucket(bucket).key(key).send().await.unwrap().e_tag }
    };
    let multi_etag = etag(&before, "multi").await;

    let TestRelay { relay, dir, .. } = before;
    relay.shutdown().await;
    let mut config = common::config(&dir);
    mirrored(&mut config, vec![BackendSpec::Fs(a.clone())]);
    let after = TestRelay::on(dir, config).await;
    assert_eq!(list_keys(&after, &bucket).await, vec!["multi", "plain"]);
    assert_eq!(etag(&after, "multi").await, multi_etag);
    assert_eq!(after.get(&bucket, "multi").await, parts.concat());
    assert_eq!(after.get(&bucket, "plain").await, blob(3_000, 1));
    let cors = after.client.get_bucket_cors().bucket(&bucket).send().await.unwrap();
    assert_eq!(cors.cors_rules().len(), 1, "bucket documents come along");
    assert_eq!(blob_files(&a).len(), 2);

    // Deleted after the import, it stays deleted: the import runs once.
    after
        .client
        .delete_object()
        .bucket(&bucket)
        .key("plain")
        .send()
        .await
        .unwrap();
    let after = after.restart().await;
    assert_eq!(list_keys(&after, &bucket).await, vec!["multi"]);
}

#[tokio::test]
async fn a_newly_added_mirror_is_filled_with_every_object() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let relay = common::start_with(|cfg| mirrored(cfg, vec![BackendSpec::Fs(a.clone())])).await;
    let bucket = relay.bucket("circle").await;
    for i in 0..5u64 {
        relay.put(&bucket, &format!("k{i}"), blob(1_000 + i as usize, i)).await;
    }
    let TestRelay {
        relay: running, dir, ..
    } = relay;
    running.shutdown().await;
    let mut config = common::config(&dir);
    mirrored(
        &mut config,
        vec![BackendSpec::Fs(a.clone()), BackendSpec::Fs(b.clone())],
    );
    let relay = TestRelay::on(dir, config).await;
    converged(&relay).await;
    identical(&[a, b], 5).await;
    assert_eq!(relay.relay.mirror_status().unwrap()[1].objects, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_dying_mid_download_is_replaced_from_where_it_stopped() {
    let work = tempfile::tempdir().unwrap();
    let s3s = S3sFs::start(&work.path().join("b"), "127.0.0.1:0".parse().unwrap()).await;
    // The S3 stand-in is listed first, so it serves the first read.
    let backends = vec![s3_spec(&s3s.endpoint(), "b"), BackendSpec::Fs(work.path().join("a"))];
    let relay = common::start_with(|cfg| mirrored(cfg, backends)).await;
    let bucket = relay.bucket("circle").await;
    let body = blob(48 * 1024 * 1024, 7);
    relay.put(&bucket, "large", body.clone()).await;
    converged(&relay).await;

    let mut out = relay
        .client
        .get_object()
        .bucket(&bucket)
        .key("large")
        .send()
        .await
        .unwrap()
        .body;
    let mut received = out.next().await.unwrap().unwrap().to_vec();
    s3s.stop().await;
    while let Some(chunk) = out.next().await {
        received.extend_from_slice(&chunk.expect("the download continues from the other mirror"));
    }
    assert_eq!(received.len(), body.len());
    assert!(received == body, "the resumed body differs");
    assert!(!relay.relay.mirror_status().unwrap()[0].up);
}

#[tokio::test]
async fn a_second_relay_on_the_same_backend_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let shared = BackendSpec::Fs(work.path().join("shared"));
    let first = common::start_with(|cfg| mirrored(cfg, vec![shared.clone()])).await;
    let bucket = first.bucket("circle").await;
    first.put(&bucket, "k", b"sealed".to_vec()).await;

    // Another data dir, the same backend: its sweep would delete the first relay's blobs.
    let other = tempfile::tempdir().unwrap();
    let mut config = common::config(&other);
    mirrored(&mut config, vec![shared]);
    let err = haven_relay::Relay::start(&config, &common::credentials())
        .await
        .err()
        .expect("a backend owned by another relay must be refused");
    assert!(format!("{err:#}").contains("belongs to another haven-relay"), "{err:#}");
    assert_eq!(first.get(&bucket, "k").await, b"sealed");
}

/// Conditional reads and copies are decided from the catalog before any body is opened: with
/// the only mirror stopped, a 304 or 412 still comes at once (a download first would fail, or
/// on a live mirror cost a whole object for an answer of no bytes).
#[tokio::test]
async fn conditional_reads_are_decided_without_the_bytes() {
    let work = tempfile::tempdir().unwrap();
    let s3s = S3sFs::start(&work.path().join("b"), "127.0.0.1:0".parse().unwrap()).await;
    let relay = common::start_with(|cfg| mirrored(cfg, vec![s3_spec(&s3s.endpoint(), "b")])).await;
    let b = relay.bucket("conditional").await;
    let etag = relay.put(&b, "k", blob(200_000, 7)).await;
    s3s.stop().await;

    let get = || relay.client.get_object().bucket(&b).key("k");
    let err = get().if_none_match(&etag).send().await.unwrap_err();
    assert_eq!(common::status(&err), 304, "If-None-Match of the current ETag");
    let err = get()
        .if_match("\"00000000000000000000000000000000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::status(&err), 412, "If-Match of another ETag");
    let err = get()
        .if_modified_since(aws_sdk_s3::primitives::DateTime::from_secs(4_000_000_000))
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::status(&err), 304, "If-Modified-Since in the future");

    let copy = || {
        relay
            .client
            .copy_object()
            .bucket(&b)
            .key("copy")
            .copy_source(format!("{b}/k"))
    };
    let err = copy().copy_source_if_none_match(&etag).send().await.unwrap_err();
    assert_eq!(common::status(&err), 412, "copy with If-None-Match of the current ETag");
    let err = copy()
        .copy_source_if_match("\"00000000000000000000000000000000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::status(&err), 412, "copy with If-Match of another ETag");

    // Without a precondition the bytes are needed, and the stopped mirror says so.
    let err = get().send().await.unwrap_err();
    assert_eq!(
        common::status(&err),
        503,
        "a plain GET needs the stopped mirror: {err:?}"
    );
}

/// At the default repair interval (30 s), a mirror whose outage ends while clients keep
/// writing holds every object again within 20 s: a down mirror is probed every few seconds,
/// and a pass that repaired something is followed by another at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_under_continuous_writes_every_mirror_catches_up_within_20_s() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let s3s = S3sFs::start(&b, "127.0.0.1:0".parse().unwrap()).await;
    let backends = vec![BackendSpec::Fs(a.clone()), s3_spec(&s3s.endpoint(), "b")];
    let relay = common::start_with(|cfg| {
        mirrored(cfg, backends);
        cfg.storage.mirror.repair_interval = backends::mirror::MirrorOptions::default().repair_interval;
    })
    .await;
    let bucket = relay.bucket("steady").await;
    let writing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let (client, bucket, writing) = (relay.client.clone(), bucket.clone(), writing.clone());
        async move {
            let mut written = 0u64;
            while writing.load(Ordering::Relaxed) {
                let body = blob(20_000, written);
                client
                    .put_object()
                    .bucket(&bucket)
                    .key(format!("k/{written}"))
                    .body(body.into())
                    .send()
                    .await
                    .expect("a write while one mirror is down or catching up");
                written += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            written as usize
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let addr = s3s.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = relay.relay.mirror_status().unwrap();
    assert!(!status[1].up && status[1].pending_repairs > 0, "{status:?}");

    let s3s = S3sFs::start(&b, addr).await;
    let back = Instant::now();
    loop {
        let status = relay.relay.mirror_status().unwrap();
        if status.iter().all(|m| m.up && m.pending_repairs == 0) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "not caught up after 20 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writing.store(false, Ordering::Relaxed);
    let written = writer.await.unwrap();
    converged(&relay).await;
    identical(&[a, b.join(BUCKET)], written).await;
    drop(s3s);
}

/// A provider that refuses the relay's keys is told apart from one that is down: the error
/// names the credentials, since waiting will not fix it.
#[tokio::test]
async fn a_backend_refusing_the_keys_is_not_reported_as_down() {
    let work = tempfile::tempdir().unwrap();
    let s3s = S3sFs::start(&work.path().join("b"), "127.0.0.1:0".parse().unwrap()).await;
    let mut options = backends::spec::ConnectOptions {
        timeout: Duration::from_secs(2),
        retries: 0,
        ..Default::default()
    };
    options.named_keys.insert(
        "wrong".into(),
        backends::spec::S3Keys {
            access_key_id: stand_ins::STAND_IN_KEY.into(),
            secret_access_key: "not-the-stand-in-secret-0000000000000000".into(),
        },
    );
    let mirror = backends::spec::connect(&s3_spec(&s3s.endpoint(), "wrong"), &options)
        .await
        .unwrap();
    let refused = mirror
        .blobs()
        .list("blobs/")
        .await
        .expect_err("the wrong secret is refused");
    assert!(
        matches!(refused, backends::StoreError::BackendRefused(_)),
        "{refused:?}"
    );

    let addr = s3s.stop().await;
    let mirror = backends::spec::connect(&s3_spec(&format!("http://{addr}"), "wrong"), &options)
        .await
        .unwrap();
    let down = mirror.blobs().list("blobs/").await.expect_err("a stopped server fails");
    assert!(
        matches!(
            down,
            backends::StoreError::Unavailable(backends::Unavailable::Remote(_))
        ),
        "{down:?}"
    );
}

/// A completion the mirrors cannot take (503) leaves the upload whole: the client's retry of
/// the same CompleteMultipartUpload succeeds once they are back, with every byte, instead of
/// finding NoSuchUpload and having to upload every part again, even if the relay restarted
/// in between (the upload waits on its disk, not in its memory).
#[tokio::test]
async fn a_completion_refused_by_the_mirrors_can_be_retried() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("b");
    let s3s = S3sFs::start(&root, "127.0.0.1:0".parse().unwrap()).await;
    let relay = common::start_with(|cfg| mirrored(cfg, vec![s3_spec(&s3s.endpoint(), "b")])).await;
    let bucket = relay.bucket("retried").await;
    let parts = vec![blob(5 * 1024 * 1024, 40), blob(700_000, 41)];
    let (upload_id, done) = common::upload_parts(&relay.client, &bucket, "big", &parts).await;
    let complete = |client: &aws_sdk_s3::Client| {
        client
            .complete_multipart_upload()
            .bucket(&bucket)
            .key("big")
            .upload_id(&upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(done.clone()))
                    .build(),
            )
    };

    let addr = s3s.stop().await;
    let err = complete(&relay.client).send().await.unwrap_err();
    assert_eq!(common::status(&err), 503, "{err:?}");
    let err = relay
        .client
        .head_object()
        .bucket(&bucket)
        .key("big")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        common::status(&err),
        404,
        "a refused completion made no object: {err:?}"
    );

    let s3s = S3sFs::start(&root, addr).await;
    let relay = relay.restart().await;
    converged(&relay).await;
    let out = complete(&relay.client).send().await.expect("the retried completion");
    assert!(out.e_tag().unwrap().ends_with("-2\""), "{:?}", out.e_tag());
    assert_eq!(relay.get(&bucket, "big").await, parts.concat());
    // Published, the upload is gone: its parts no longer take room on the relay's disk.
    let uploads = common::upload_ids(&relay.client, &bucket).await;
    assert!(uploads.is_empty(), "{uploads:?}");
    drop(s3s);
}

/// Uploads left behind by a relay killed between deleting their bucket and removing them
/// are removed at the next start: a bucket created again under the name has none of them.
#[tokio::test]
async fn uploads_of_a_deleted_bucket_do_not_come_back() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let relay = common::start_with(|cfg| mirrored(cfg, vec![BackendSpec::Fs(a.clone())])).await;
    let bucket = relay.bucket("doomed").await;
    let upload = relay
        .client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("k")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap().to_owned();
    let uploads = relay.dir.path().join("staging/buckets").join(&bucket).join("uploads");
    let upload_json = std::fs::read(uploads.join(&id).join("upload.json")).unwrap();
    relay.client.delete_bucket().bucket(&bucket).send().await.unwrap();
    assert!(!uploads.exists(), "deleting the bucket removed its uploads");
    // As if the relay had died between the two.
    std::fs::create_dir_all(uploads.join(&id)).unwrap();
    std::fs::write(uploads.join(&id).join("upload.json"), upload_json).unwrap();

    let relay = relay.restart().await;
    assert!(!uploads.exists(), "the leftover upload survived the restart");
    relay.bucket("doomed").await;
    let listed = common::upload_ids(&relay.client, &bucket).await;
    assert!(listed.is_empty(), "{listed:?}");
}

/// Two completions of one upload at once (an SDK retrying while the first is still
/// streaming): both are answered with the object the winner made, never an error.
#[tokio::test]
async fn racing_completions_of_one_upload_get_the_same_answer() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let relay =
        common::start_with(|cfg| mirrored(cfg, vec![BackendSpec::Fs(a.clone()), BackendSpec::Fs(b.clone())])).await;
    let bucket = relay.bucket("raced").await;
    let parts = vec![blob(8 << 20, 50), blob(8 << 20, 51), blob(8 << 20, 52)];
    let (upload_id, done) = common::upload_parts(&relay.client, &bucket, "k", &parts).await;
    let complete = || {
        relay
            .client
            .complete_multipart_upload()
            .bucket(&bucket)
            .key("k")
            .upload_id(&upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(done.clone()))
                    .build(),
            )
            .send()
    };
    let (first, second) = tokio::join!(complete(), complete());
    let (first, second) = (first.expect("first completion"), second.expect("second completion"));
    assert_eq!(first.e_tag(), second.e_tag());
    assert_eq!(relay.get(&bucket, "k").await, parts.concat());
}
