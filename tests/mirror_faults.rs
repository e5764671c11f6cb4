//! Faults that once cost acknowledged data on a mirror set, each with real servers really
//! slowed, stopped or emptied: the stray sweep racing writes next to a slow mirror, a source
//! that dies mid-repair, and a mirror whose folder vanishes.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backends::spec::BackendSpec;
use common::mirror_set::{converged, identical, mirrored};
use common::stand_ins::{BUCKET, S3sFs, s3_spec, slow_proxy};
use common::{TestRelay, blob};

/// Two `fs:` mirrors and an s3s-fs one, under `dir`.
struct Set {
    a: PathBuf,
    b: PathBuf,
    c: PathBuf,
    s3s: S3sFs,
    backends: Vec<BackendSpec>,
}

async fn two_dirs_and_an_s3_server(dir: &Path) -> Set {
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let s3s = S3sFs::start(&c, "127.0.0.1:0".parse().unwrap()).await;
    let backends = vec![
        BackendSpec::Fs(a.clone()),
        BackendSpec::Fs(b.clone()),
        s3_spec(&s3s.endpoint(), "b"),
    ];
    Set { a, b, c, s3s, backends }
}

fn statuses(relay: &TestRelay) -> Vec<backends::mirror::MirrorStatus> {
    relay.relay.mirror_status().unwrap()
}

/// Writes and overwrites run while every repair pass takes inventory of every mirror, one of
/// which answers late: no inventory may ever find a copy gone that the catalog counts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_repeated_sweeps_next_to_a_slow_mirror_keep_every_copy() {
    let work = tempfile::tempdir().unwrap();
    let (a, b, c) = (work.path().join("a"), work.path().join("b"), work.path().join("c"));
    let s3s = S3sFs::start(&c, "127.0.0.1:0".parse().unwrap()).await;
    let slow = slow_proxy(s3s.addr, Duration::from_millis(150)).await;
    let backends = vec![
        BackendSpec::Fs(a.clone()),
        BackendSpec::Fs(b.clone()),
        s3_spec(&format!("http://{slow}"), "b"),
    ];
    let relay = common::start_with(|cfg| {
        mirrored(cfg, backends);
        cfg.storage.connect.timeout = Duration::from_secs(10);
        cfg.storage.mirror.repair_interval = Duration::from_millis(20);
        cfg.storage.mirror.sweep_interval = Duration::ZERO;
    })
    .await;
    let bucket = relay.bucket("circle").await;

    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (client, bucket) = (relay.client.clone(), bucket.clone());
            tokio::spawn(async move {
                for n in 0..18u64 {
                    let key = format!("w{w}/k{}", n % 6);
                    client
                        .put_object()
                        .bucket(&bucket)
                        .key(&key)
                        .body(blob(4096 + n as usize, w * 100 + n).into())
                        .send()
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    converged(&relay).await;
    let lost: Vec<_> = statuses(&relay)
        .into_iter()
        .filter(|m| m.copies_found_missing > 0)
        .map(|m| (m.label, m.copies_found_missing))
        .collect();
    assert!(lost.is_empty(), "copies deleted under acknowledged objects: {lost:?}");
    identical(&[a, b, c.join(BUCKET)], 24).await;
    for w in 0..4u64 {
        for k in 0..6u64 {
            let n = 12 + k;
            assert!(relay.get(&bucket, &format!("w{w}/k{k}")).await == blob(4096 + n as usize, w * 100 + n));
        }
    }
}

/// The only holder dies while a new mirror is being filled from it: that is an outage, not a
/// corrupt copy, and once it is back every object is readable and the new mirror complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_dying_mid_repair_is_an_outage_not_a_loss() {
    let work = tempfile::tempdir().unwrap();
    let (fresh, held) = (work.path().join("fresh"), work.path().join("held"));
    let s3s = S3sFs::start(&held, "127.0.0.1:0".parse().unwrap()).await;
    // Slow enough that copies are mid-stream when the server is stopped.
    let proxy = slow_proxy(s3s.addr, Duration::from_millis(15)).await;
    let source = s3_spec(&format!("http://{proxy}"), "b");
    let relay = common::start_with(|cfg| mirrored(cfg, vec![source.clone()])).await;
    let bucket = relay.bucket("circle").await;
    let objects: Vec<(String, Vec<u8>)> = (0..30u64)
        .map(|i| (format!("o{i}"), blob(768 * 1024 + i as usize, i)))
        .collect();
    for (key, body) in &objects {
        relay.put(&bucket, key, body.clone()).await;
    }
    // A new mirror joins; while it is filled from the only holder, that holder goes down.
    let fresh_spec = BackendSpec::Fs(fresh.clone());
    let relay = relay
        .reconfigure(|cfg| {
            cfg.storage.backends = vec![source.clone(), fresh_spec];
            cfg.storage.connect.retries = 0;
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::stand_ins::blob_files(&fresh).len() < 3 {
        assert!(Instant::now() < deadline, "repair never started filling the new mirror");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = s3s.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s3s = S3sFs::start(&held, addr).await;

    converged(&relay).await;
    for (key, body) in &objects {
        assert!(
            &relay.get(&bucket, key).await == body,
            "{key} readable after the outage"
        );
    }
    identical(&[fresh.clone(), held.join(BUCKET)], objects.len()).await;
    let relay = relay.restart().await;
    converged(&relay).await;
    for (key, body) in &objects {
        assert!(&relay.get(&bucket, key).await == body, "{key} readable after a restart");
    }
    drop(s3s);
}

/// A mirror's folder is deleted, once while the relay runs and once while it is stopped: the
/// relay notices that the copies are gone and fills the mirror again from the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_whose_folder_vanished_is_filled_again() {
    let work = tempfile::tempdir().unwrap();
    let Set {
        a,
        b,
        c,
        s3s: _s3s,
        backends,
    } = two_dirs_and_an_s3_server(work.path()).await;
    let relay = common::start_with(|cfg| {
        mirrored(cfg, backends);
        cfg.storage.mirror.sweep_interval = Duration::from_millis(500);
    })
    .await;
    let bucket = relay.bucket("circle").await;
    let objects: Vec<(String, Vec<u8>)> = (0..20u64)
        .map(|i| (format!("o{i}"), blob(20_000 + i as usize, i)))
        .collect();
    for (key, body) in &objects {
        relay.put(&bucket, key, body.clone()).await;
    }
    converged(&relay).await;
    let dirs = [a.clone(), b.clone(), c.join(BUCKET)];
    identical(&dirs, objects.len()).await;

    std::fs::remove_dir_all(a.join("blobs")).unwrap();
    identical(&dirs, objects.len()).await;
    assert!(
        statuses(&relay)
            .iter()
            .any(|m| m.copies_found_missing == objects.len() as u64)
    );

    // Removed while the relay is stopped (a relay running meanwhile would take its start
    // inventory and refill the folder as it is being removed); with no sweep due, only the
    // next start's inventory can notice.
    let relay = relay
        .reconfigure(|cfg| {
            cfg.storage.mirror.sweep_interval = Duration::from_secs(3600);
            std::fs::remove_dir_all(b.join("blobs")).unwrap();
        })
        .await;
    identical(&dirs, objects.len()).await;
    converged(&relay).await;
    for (key, body) in &objects {
        assert!(&relay.get(&bucket, key).await == body);
    }
}

/// Copies nobody reads are checked anyway: the scrub finds bytes flipped on a mirror's disk
/// and has them repaired before any read needs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrub_finds_flipped_bytes_nobody_read_and_repairs_them() {
    let work = tempfile::tempdir().unwrap();
    let Set {
        a,
        b,
        c,
        s3s: _s3s,
        backends,
    } = two_dirs_and_an_s3_server(work.path()).await;
    let relay = common::start_with(|cfg| {
        mirrored(cfg, backends);
        cfg.storage.mirror.scrub_rate = 256 * 1024 * 1024;
        cfg.storage.mirror.scrub_interval = Duration::from_millis(300);
    })
    .await;
    let bucket = relay.bucket("circle").await;
    for i in 0..12u64 {
        relay.put(&bucket, &format!("o{i}"), blob(50_000 + i as usize, i)).await;
    }
    converged(&relay).await;
    let dirs = [a.clone(), b.clone(), c.join(BUCKET)];
    let good = identical(&dirs, 12).await;

    // Flip one byte in three of mirror a's copies, behind the relay's back.
    let flipped: Vec<&String> = good.keys().take(3).collect();
    for rel in &flipped {
        let path = a.join("blobs").join(rel);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1000] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
    }
    assert_ne!(common::stand_ins::blob_files(&a), good);
    // No client reads anything: only the scrub can notice.
    assert_eq!(identical(&dirs, 12).await, good, "the flipped copies were repaired");
    let progress = backends::mirror::ScrubProgress::load(&relay.dir.path().join("catalog")).unwrap();
    assert!(progress.rounds_completed >= 1, "{progress:?}");
}

/// The blob file under `dir` that holds `key` (its trailer names the key).
fn blob_of(dir: &Path, key: &str) -> PathBuf {
    let needle = format!("\"key\":\"{key}\"");
    let found: Vec<String> = common::stand_ins::blob_files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(rel, _)| rel)
        .collect();
    assert_eq!(found.len(), 1, "{key} in {found:?}");
    dir.join("blobs").join(&found[0])
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x08;
    std::fs::write(path, bytes).unwrap();
}

/// `bytes=from-to` of an object, or the error that ended the response.
async fn range(relay: &TestRelay, bucket: &str, key: &str, span: std::ops::Range<usize>) -> Result<Vec<u8>, String> {
    let out = relay
        .client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes={}-{}", span.start, span.end - 1))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let body = out.body.collect().await.map_err(|e| format!("{e:?}"))?;
    Ok(body.to_vec())
}

/// A range of a copy with a flipped byte is never served: each chunk is checked against its
/// sum before it goes out, the read continues from the other mirror at that byte, and the bad
/// copy is repaired. With every copy bad no read answers with bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_never_serve_flipped_bytes() {
    let work = tempfile::tempdir().unwrap();
    let (a, c) = (work.path().join("a"), work.path().join("c"));
    // The second mirror answers late, so every read tries a first and meets its bad copies.
    let s3s = S3sFs::start(&c, "127.0.0.1:0".parse().unwrap()).await;
    let slow = slow_proxy(s3s.addr, Duration::from_millis(100)).await;
    let backends = vec![BackendSpec::Fs(a.clone()), s3_spec(&format!("http://{slow}"), "b")];
    let relay = common::start_with(|cfg| {
        mirrored(cfg, backends);
        cfg.storage.mirror.scrub_rate = 0;
    })
    .await;
    let b = c.join(BUCKET);
    let bucket = relay.bucket("circle").await;
    let mut objects: Vec<(String, Vec<u8>)> = (0..8u64)
        .map(|i| (format!("o{i}"), blob(1_000_000 + i as usize, i)))
        .collect();
    for (key, body) in &objects {
        relay.put(&bucket, key, body.clone()).await;
    }
    // A completed multipart upload gets chunk sums too.
    let parts = [blob(5 << 20, 90), blob(300_000, 91)];
    common::multipart_put(&relay.client, &bucket, "multi", &parts).await;
    objects.push(("multi".into(), parts.concat()));
    converged(&relay).await;
    let good = identical(&[a.clone(), b.clone()], objects.len()).await;

    let at = |key: &str| if key == "multi" { 5_200_000 } else { 700_000 };
    for (key, _) in &objects {
        flip(&blob_of(&a, key), at(key));
    }
    for (key, body) in &objects {
        let p = at(key);
        for span in [p - 10_000..p + 10_000, p..p + 1, p - 300_000..p + 300_000] {
            let got = range(&relay, &bucket, key, span.clone()).await.unwrap();
            assert!(got == body[span.clone()], "{key} {span:?}");
        }
    }
    assert_eq!(
        identical(&[a.clone(), b.clone()], objects.len()).await,
        good,
        "the bad copies were repaired"
    );

    // Both copies of o0 rot in the same chunk: no read of it answers with bytes, ranged or
    // whole (the range breaks off; once both copies are known bad, the object is 503).
    let (key, _) = &objects[0];
    flip(&blob_of(&a, key), 700_000);
    flip(&blob_of(&b, key), 700_000);
    for span in [690_000..710_000, 0..1_000_000] {
        for _ in 0..2 {
            assert!(range(&relay, &bucket, key, span.clone()).await.is_err(), "{span:?}");
        }
    }
}

/// Objects stored before chunk sums existed have none in the catalog: the scrub computes them
/// from copies that match the ETag, after which their ranges are checked like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_objects_gain_chunk_sums_from_the_scrub() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let relay = common::start_with(|cfg| {
        mirrored(cfg, vec![BackendSpec::Fs(a.clone()), BackendSpec::Fs(b.clone())]);
        cfg.storage.mirror.scrub_rate = 0;
    })
    .await;
    let bucket = relay.bucket("circle").await;
    let body = blob(900_000, 7);
    relay.put(&bucket, "old", body.clone()).await;
    converged(&relay).await;
    let journal = relay.dir.path().join("catalog/journal.jsonl");
    let relay = relay
        .reconfigure(|cfg| {
            // What an older relay wrote: the same records without chunk sums.
            let text = std::fs::read_to_string(&journal).unwrap();
            let older: String = text
                .lines()
                .map(|line| match line.find(",\"chunks\":\"") {
                    Some(at) => {
                        let end = at + 11 + line[at + 11..].find('"').unwrap() + 1;
                        format!("{}{}\n", &line[..at], &line[end..])
                    }
                    None => format!("{line}\n"),
                })
                .collect();
            assert!(!older.contains("chunks") && older != text);
            std::fs::write(&journal, older).unwrap();
            cfg.storage.mirror.scrub_rate = 64 << 20;
            cfg.storage.mirror.scrub_interval = Duration::from_secs(3600);
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&journal).unwrap().contains("\"op\":\"chunks\"") {
        assert!(Instant::now() < deadline, "the scrub recorded no chunk sums");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flip(&blob_of(&a, "old"), 500_000);
    for _ in 0..2 {
        assert!(range(&relay, &bucket, "old", 490_000..510_000).await.unwrap() == body[490_000..510_000]);
    }
    // They survive a restart (the journal holds them).
    let relay = relay.restart().await;
    flip(&blob_of(&b, "old"), 100_000);
    assert!(range(&relay, &bucket, "old", 90_000..110_000).await.unwrap() == body[90_000..110_000]);
}

/// Directories that stop answering (a hung NAS mount; here the blob on each turned into a
/// FIFO nobody writes, whose open never returns) are mirrors that are down: the read fails
/// with 503 within the backend deadline instead of hanging the request. (Falling back to a
/// copy that answers is the same path as a stopped server, tested in tests/mirrors.rs; with
/// one FIFO the repair loop replaces it with a good copy at once, which is right but leaves
/// a stuck open this test could no longer release.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_that_stop_answering_are_mirrors_that_are_down() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let backends = vec![BackendSpec::Fs(a.clone()), BackendSpec::Fs(b.clone())];
    let relay = common::start_with(|cfg| mirrored(cfg, backends)).await;
    let bucket = relay.bucket("hung").await;
    relay.put(&bucket, "k", blob(300_000, 5)).await;
    converged(&relay).await;

    let mut stuck = Unstick(Vec::new());
    for dir in [&a, &b] {
        let blob = blob_of(dir, "k");
        std::fs::remove_file(&blob).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&blob).status().unwrap();
        assert!(made.success(), "mkfifo");
        stuck.0.push(blob);
    }
    let started = Instant::now();
    let read = relay.client.get_object().bucket(&bucket).key("k").send();
    let err = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("a read hung with every directory stuck")
        .unwrap_err();
    assert_eq!(common::status(&err), 503, "no copy answers: try again later");
    assert!(started.elapsed() < Duration::from_secs(45), "{:?}", started.elapsed());
    // Other requests were served all along: listing reads only the catalog.
    assert_eq!(common::list_keys(&relay.client, &bucket).await, ["k"]);
}

/// FIFOs standing in for a hung directory. Dropped (also when the test fails), it lets every
/// stuck call return, or the runtime would wait for them forever: opening each FIFO for
/// reading and writing (never blocks on Linux) completes every open waiting on it; unlinking
/// it means no later read (the repair loop, the scrub) can get stuck again; closing it gives
/// the readers their end of file.
struct Unstick(Vec<PathBuf>);

impl Drop for Unstick {
    fn drop(&mut self) {
        let open: Vec<_> = self
            .0
            .iter()
            .filter_map(|fifo| std::fs::OpenOptions::new().read(true).write(true).open(fifo).ok())
            .collect();
        for fifo in &self.0 {
            let _ = std::fs::remove_file(fifo);
        }
        drop(open);
    }
}
