//! The HTTP port reachable by strangers: idle or slow connections never starve members, and a
//! client over its request rate is told to slow down.

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::raw;
use common::{ACCESS_KEY, SECRET_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits until the relay closes `stream` (a read returns 0 or an error); how long it took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.ok().map(|()| started.elapsed())
}

/// 40 silent connections and 10 that send half their headers, against a cap of 16 and a
/// header timeout too long to help: members' requests still go through, because idle
/// strangers give up their places.
#[tokio::test]
async fn idle_and_slow_strangers_never_starve_members() {
    let r = common::start_with(|c| {
        c.limits.connections.max_connections = 16;
        c.limits.connections.header_timeout = Duration::from_secs(60);
    })
    .await;
    let mut strangers = Vec::new();
    for _ in 0..40 {
        strangers.push(TcpStream::connect(r.addr).await.unwrap());
    }
    for _ in 0..10 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: loc").await.unwrap();
        strangers.push(s);
    }
    let started = Instant::now();
    let bucket = r.bucket("members").await;
    r.put(&bucket, "k", b"still served".to_vec()).await;
    assert_eq!(r.get(&bucket, "k").await, b"still served");
    // Strangers give up their places once idle for a second.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let mut closed = 0;
    for s in &mut strangers {
        if closed_within(s, Duration::from_millis(50)).await.is_some() {
            closed += 1;
        }
    }
    assert!(closed >= 40 + 10 - 16, "only {closed} closed to make room");
}

/// A flood that keeps reopening 100 silent connections against a cap of 32: each gives up its
/// place once idle for a second, so a member waits about flood ÷ cap seconds, not the length
/// of the flood. (At a tiny cap the wait grows: see docs/OPERATIONS.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reopened_silent_connections_does_not_lock_members_out() {
    let r = common::start_with(|c| {
        c.limits.connections.max_connections = 32;
        c.limits.connections.header_timeout = Duration::from_secs(60);
    })
    .await;
    let bucket = r.bucket("flooded").await;
    let addr = r.addr;
    let flood: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                loop {
                    let Ok(mut s) = TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let _ = closed_within(&mut s, Duration::from_secs(60)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        let started = Instant::now();
        r.put(&bucket, &format!("k{i}"), b"through the flood".to_vec()).await;
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }
    for task in flood {
        task.abort();
    }
}

/// Headers sent a byte at a time are cut by the header timeout, however patient the sender.
#[tokio::test]
async fn slow_headers_are_cut_after_the_header_timeout() {
    let r = common::start_with(|c| c.limits.connections.header_timeout = Duration::from_secs(1)).await;
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(TcpStream::connect(r.addr).await.unwrap());
    }
    // Three seconds of dribbling, never finishing the headers.
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for byte in &request[..30] {
        for s in &mut slow {
            let _ = s.write_all(&[*byte]).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in &mut slow {
        let closed = closed_within(s, Duration::from_millis(500)).await;
        assert!(closed.is_some(), "a slow sender outlived the 1 s header timeout");
    }
}

/// When every connection carries a request in flight, a newcomer waits a moment, then is
/// answered `503 SlowDown` with `Retry-After`, and the requests in flight complete.
#[tokio::test]
async fn a_house_full_of_busy_requests_says_slow_down() {
    let r = common::start_with(|c| c.limits.connections.max_connections = 2).await;
    let bucket = r.bucket("busy").await;
    let host = r.addr.to_string();
    // Two signed uploads that have sent half their body.
    let body = vec![7u8; 1000];
    let mut uploads = Vec::new();
    for key in ["a", "b"] {
        let path = format!("/{bucket}/{key}");
        let headers = raw::sign(
            "PUT",
            &path,
            &[("host".into(), host.clone()), ("content-length".into(), "1000".into())],
            &raw::sha256_hex(&body),
            ACCESS_KEY,
            SECRET_KEY,
        );
        let mut stream = TcpStream::connect(r.addr).await.unwrap();
        let mut head = format!("PUT {path} HTTP/1.1\r\n");
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..500]).await.unwrap();
        uploads.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, text) = raw::send(r.addr, "GET / HTTP/1.1", &[("host".into(), host.clone())], b"").await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("<Code>SlowDown</Code>") && text.contains("Retry-After: 1"),
        "{text}"
    );
    for stream in &mut uploads {
        stream.write_all(&body[500..]).await.unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(r.get(&bucket, "a").await, body);
    assert_eq!(r.get(&bucket, "b").await, body);
}

/// Over its request rate, a client gets `503 SlowDown` with `Retry-After`, writes nothing, and
/// the SDK's own retries get it through; a client without the key counts apart.
#[tokio::test]
async fn a_client_over_its_rate_is_told_to_slow_down() {
    let r = common::start_with(|c| c.limits.requests_per_second = NonZeroU32::new(5)).await;
    let bucket = r.bucket("rated").await;
    let host = r.addr.to_string();
    // Someone who knows the access key id (it is in every presigned URL) but not the secret:
    // their requests fail their signature and do not drain the key holder's bucket.
    for _ in 0..100 {
        let mut forged = raw::sign(
            "GET",
            "/",
            &[("host".into(), host.clone())],
            &raw::sha256_hex(b""),
            ACCESS_KEY,
            "not-the-secret",
        );
        forged.retain(|(k, _)| k != "content-length");
        let (status, text) = raw::send(r.addr, "GET / HTTP/1.1", &forged, b"").await;
        assert_eq!(status, 403, "{text}");
    }
    let put = |i: usize| {
        let path = format!("/{bucket}/k{i}");
        let headers = raw::sign(
            "PUT",
            &path,
            &[("host".into(), host.clone()), ("content-length".into(), "1".into())],
            &raw::sha256_hex(b"x"),
            ACCESS_KEY,
            SECRET_KEY,
        );
        async move { raw::send(r.addr, &format!("PUT {path} HTTP/1.1"), &headers, b"x").await }
    };
    // A burst of twice the rate (at least 20; one went to creating the bucket) passes whole.
    for i in 0..19 {
        let (status, text) = put(i).await;
        assert_eq!(status, 200, "request {i} of the burst: {text}");
    }
    let mut slowed = Vec::new();
    // The rest at once, so that how fast this machine sends them does not matter.
    let answers = futures::future::join_all((19..40).map(&put)).await;
    for (i, (status, text)) in (19..40).zip(answers) {
        match status {
            200 => {}
            503 => {
                assert!(
                    text.contains("<Code>SlowDown</Code>") && text.contains("retry-after: 1"),
                    "{text}"
                );
                slowed.push(format!("k{i}"));
            }
            other => panic!("{other}: {text}"),
        }
    }
    assert!(
        slowed.len() >= 10,
        "only {} of 21 past the burst were slowed at 5 per second",
        slowed.len()
    );
    // Strangers (no key) count apart: they get the usual answer.
    let (status, text) = raw::send(r.addr, "GET / HTTP/1.1", &[("host".into(), host.clone())], b"").await;
    assert_eq!(status, 403, "{text}");
    // A refused PUT wrote nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stored = common::list_keys(&r.client, &bucket).await;
    assert_eq!(stored.len(), 40 - slowed.len(), "{stored:?}");
    assert!(slowed.iter().all(|k| !stored.contains(k)), "{stored:?}");
    // The SDK retries SlowDown with backoff and gets through. Its default of three attempts
    // with full jitter can, by chance, retry twice before a token comes back (0.2 s at 5 per
    // second), so the client is given the attempts a client behind a busy relay would use.
    let retry = aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(10);
    let patient = aws_sdk_s3::Client::from_conf(r.client.config().to_builder().retry_config(retry).build());
    for i in 0..10 {
        patient
            .put_object()
            .bucket(&bucket)
            .key(format!("sdk{i}"))
            .body(b"y".to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("sdk{i}: {}", common::code(&e)));
    }
}
