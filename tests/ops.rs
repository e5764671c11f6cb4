//! The ops listener: `/health`, `/ready` (a mirror really stopped makes it 503) and
//! `/metrics`, read by the Prometheus project's own OpenMetrics parser, with no bucket or key
//! in any label.

mod common;

use std::time::{Duration, Instant};

use backends::spec::BackendSpec;
use common::mirror_set::mirrored;
use common::stand_ins::{S3sFs, s3_spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on the ops listener: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The samples of an OpenMetrics text, as `name{labels} value` lines in the parser's own
/// rendering, from `prometheus_client.openmetrics.parser` (strict: it rejects malformed input).
fn parsed(text: &str) -> Vec<String> {
    let python = std::env::var("HAVEN_RELAY_PYTHON").expect("run the tests with `bash tests/run.sh`");
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        for family in parse(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n\
        \x20       print(f'{s.name}{{{labels}}} {s.value}')\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn value(samples: &[String], sample: &str) -> f64 {
    samples
        .iter()
        .find_map(|s| s.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {sample} in\n{}", samples.join("\n")))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn health_and_metrics_count_what_happened_and_name_nothing() {
    let r = common::start_with(|c| c.ops_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let ops = r.relay.ops_addr().expect("the ops listener runs");
    assert_eq!(get(ops, "/health").await, (200, "ok\n".into()));
    assert_eq!(get(ops, "/ready").await.0, 200);
    assert_eq!(get(ops, "/admin").await.0, 404);

    let bucket = r.bucket("metrics-bucket-q9").await;
    r.put(&bucket, "secret-key-q9", vec![1u8; 1000]).await;
    r.get(&bucket, "secret-key-q9").await;
    let missing = r.client.get_object().bucket(&bucket).key("absent-q9").send().await;
    assert_eq!(common::status(&missing.unwrap_err()), 404);

    let (status, text) = get(ops, "/metrics").await;
    assert_eq!(status, 200);
    assert!(!text.contains("q9"), "a bucket or key in the metrics:\n{text}");
    let samples = parsed(&text);
    let requests = |op: &str, status: u16| {
        value(
            &samples,
            &format!("haven_relay_s3_requests_total{{operation={op},status={status},transport=http}}"),
        )
    };
    assert_eq!(requests("PUT object", 200), 1.0);
    assert!(requests("GET object", 200) >= 1.0);
    assert_eq!(requests("GET object", 404), 1.0);
    assert_eq!(value(&samples, "haven_relay_store_objects{}"), 1.0);
    assert_eq!(value(&samples, "haven_relay_store_size_bytes{}"), 1000.0);
    assert!(value(&samples, "haven_relay_s3_received_bytes_total{transport=http}") >= 1000.0);
    assert!(
        value(
            &samples,
            "haven_relay_s3_request_duration_seconds_count{transport=http}"
        ) >= 4.0
    );
    assert_eq!(value(&samples, "haven_relay_mailbox_messages{}"), 0.0);
    // The SDK keeps its connection open for the next request.
    assert!(value(&samples, "haven_relay_http_connections_open{}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_which_backend_is_down() {
    let work = tempfile::tempdir().unwrap();
    let s3s = S3sFs::start(&work.path().join("s3"), "127.0.0.1:0".parse().unwrap()).await;
    let backends = vec![BackendSpec::Fs(work.path().join("disk")), s3_spec(&s3s.endpoint(), "b")];
    let r = common::start_with(|c| {
        mirrored(c, backends);
        c.ops_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let ops = r.relay.ops_addr().unwrap();
    assert_eq!(get(ops, "/ready").await.0, 200);
    let bucket = r.bucket("ready").await;
    r.put(&bucket, "k", b"x".to_vec()).await;
    let (_, text) = get(ops, "/metrics").await;
    let samples = parsed(&text);
    assert!(
        samples
            .iter()
            .any(|s| s.starts_with("haven_relay_mirror_up{mirror=s3://") && s.ends_with(" 1")),
        "{samples:?}"
    );
    // The S3 backend really stops; the next write finds it down.
    s3s.stop().await;
    let _ = r
        .client
        .put_object()
        .bucket(&bucket)
        .key("k2")
        .body(b"y".to_vec().into())
        .send()
        .await;
    let started = Instant::now();
    loop {
        let (status, body) = get(ops, "/ready").await;
        if status == 503 {
            assert!(body.contains("backend down: s3://"), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Over the tunnel: connections counted by protocol, strangers refused, requests labelled
/// `tunnel`, and a member over its request rate slowed down while another member is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_connections_and_members_rates_are_counted() {
    use tunnel::SecretKey;
    let (alice, bob, stranger) = (SecretKey::generate(), SecretKey::generate(), SecretKey::generate());
    let r = common::tunnel::relay_for_with(&[alice.public(), bob.public()], |c| {
        c.ops_addr = Some("127.0.0.1:0".parse().unwrap());
        c.limits.requests_per_second = std::num::NonZeroU32::new(3);
    })
    .await;
    let ops = r.relay.ops_addr().unwrap();
    let alice_s3 = common::tunnel::sdk(common::tunnel::tunnel_client(&alice, &r).await.unwrap());
    let mut slowed = 0;
    for _ in 0..40 {
        if let Err(e) = alice_s3.list_buckets().send().await {
            assert_eq!(common::code(&e), "SlowDown");
            slowed += 1;
        }
    }
    // Alice's retries (the SDK's own) could not hide every refusal at 3 per second.
    let (_, text) = get(ops, "/metrics").await;
    let samples = parsed(&text);
    let slowed_down = value(&samples, "haven_relay_s3_slowed_down_total{transport=tunnel}");
    assert!(slowed_down >= 3.0, "{slowed_down} (errors seen: {slowed})");
    // Bob has a bucket of his own.
    let bob_s3 = common::tunnel::sdk(common::tunnel::tunnel_client(&bob, &r).await.unwrap());
    bob_s3.list_buckets().send().await.unwrap();
    assert!(common::tunnel::tunnel_client(&stranger, &r).await.is_err());

    let (_, text) = get(ops, "/metrics").await;
    assert!(!text.contains(&alice.public().to_string()), "a node id in the metrics");
    let samples = parsed(&text);
    assert_eq!(value(&samples, "haven_relay_tunnel_connections_total{service=s3}"), 2.0);
    assert_eq!(value(&samples, "haven_relay_tunnel_connections_open{service=s3}"), 2.0);
    assert_eq!(
        value(&samples, "haven_relay_tunnel_connections_open{service=mailbox}"),
        0.0
    );
    assert!(value(&samples, "haven_relay_tunnel_refused_total{}") >= 1.0);
    assert!(
        value(
            &samples,
            "haven_relay_s3_requests_total{operation=GET service,status=200,transport=tunnel}"
        ) >= 4.0
    );
}
