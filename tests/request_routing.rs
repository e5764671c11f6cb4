//! Requests that once answered 200 while storing other bytes or acting on another bucket:
//! chunk-signed uploads through the tunnel, payloads shorter or longer than announced,
//! virtual-hosted-style Hosts, SigV2 presigned URLs, query names that are not ASCII.
//! Driven by raw HTTP (what restic, the Java SDKs and boto3 put on the wire) and by restic.

mod common;

use std::net::SocketAddr;

use backends::ChecksumAlgorithm;
use backends::digest::{Digester, base64};
use common::raw::{self, send, sign};
use common::tunnel::{forwarder, relay_for};
use common::{ACCESS_KEY, SECRET_KEY, TestRelay, blob};
use tunnel::SecretKey;

fn md5_b64(data: &[u8]) -> String {
    let mut d = Digester::new(&[]);
    d.update(data);
    base64(&d.finish().md5)
}

fn crc32_b64(data: &[u8]) -> String {
    let mut d = Digester::new(&[ChecksumAlgorithm::Crc32]);
    d.update(data);
    d.finish().checksums[&ChecksumAlgorithm::Crc32].clone()
}

/// A chunk-signed PUT as minio-go (restic) sends it over plain http; the signatures are made
/// up, as a member's are to the relay.
async fn chunk_signed_put(
    addr: SocketAddr,
    path: &str,
    data: &[u8],
    chunk: usize,
    extra: &[(&str, String)],
    trailer: Option<(&str, String)>,
) -> (u16, String) {
    let framed = gateway::chunked::encode_for_tests(data, chunk, trailer.as_ref().map(|(n, v)| (*n, v.as_str())));
    let sha = if trailer.is_some() {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    } else {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    };
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), addr.to_string()),
        ("content-length".into(), framed.len().to_string()),
        ("content-encoding".into(), "aws-chunked".into()),
        ("x-amz-decoded-content-length".into(), data.len().to_string()),
    ];
    if let Some((name, _)) = &trailer {
        headers.push(("x-amz-trailer".into(), (*name).to_owned()));
    }
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let signed = sign(
        "PUT",
        path,
        &headers,
        sha,
        "member",
        "member-secret-the-relay-never-sees",
    );
    send(addr, &format!("PUT {path} HTTP/1.1"), &signed, &framed).await
}

/// A relay with bucket `sealed`, and a `connect` forwarder for one of its members.
async fn member_relay() -> (TestRelay, SocketAddr) {
    let member = SecretKey::generate();
    let r = relay_for(&[member.public()]).await;
    let local = forwarder(&member, &r).await;
    r.bucket("sealed").await;
    (r, local)
}

#[tokio::test]
async fn chunk_signed_uploads_through_connect_store_exactly_the_payload() {
    let (r, local) = member_relay().await;

    let cases = [
        ("empty", 0usize, 65536usize),
        ("one-byte", 1, 65536),
        ("exactly-one-chunk", 65536, 65536),
        ("many-chunks", 200_000, 65536),
    ];
    for (name, len, chunk) in cases {
        let data = blob(len, len as u64);
        for with_md5 in [false, true] {
            let key = format!("/sealed/{name}-{with_md5}");
            let extra: Vec<(&str, String)> = if with_md5 {
                vec![("content-md5", md5_b64(&data))]
            } else {
                vec![]
            };
            let (status, text) = chunk_signed_put(local, &key, &data, chunk, &extra, None).await;
            assert_eq!(status, 200, "{key}: {text}");
            let got = r.get("sealed", &key["/sealed/".len()..]).await;
            assert!(got == data, "{key}: stored {} bytes, sent {}", got.len(), data.len());
            let head = r
                .client
                .head_object()
                .bucket("sealed")
                .key(&key["/sealed/".len()..])
                .send()
                .await
                .unwrap();
            assert_eq!(
                head.content_encoding(),
                None,
                "{key}: the request's framing is not the object's encoding"
            );
        }
    }

    // A checksum trailer is verified on the payload, and a wrong one stores nothing.
    let data = blob(100_000, 7);
    let (status, text) = chunk_signed_put(
        local,
        "/sealed/trailer-ok",
        &data,
        8192,
        &[],
        Some(("x-amz-checksum-crc32", crc32_b64(&data))),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(r.get("sealed", "trailer-ok").await == data);
    let (status, text) = chunk_signed_put(
        local,
        "/sealed/trailer-bad",
        &data,
        8192,
        &[],
        Some(("x-amz-checksum-crc32", crc32_b64(b"other bytes"))),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("BadDigest"), "{text}");

    // A wrong Content-MD5 is still a BadDigest, now for the right reason.
    let (status, text) = chunk_signed_put(
        local,
        "/sealed/md5-bad",
        &data,
        8192,
        &[("content-md5", md5_b64(b"x"))],
        None,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("BadDigest"), "{text}");

    let keys = common::list_keys(&r.client, "sealed").await;
    assert!(
        !keys.iter().any(|k| k.ends_with("-bad")),
        "refused uploads left {keys:?}"
    );
}

/// PUTs a payload that disagrees with `x-amz-decoded-content-length`, once longer and once
/// shorter than announced; both answers must agree, and the first is returned.
async fn lying_about_the_length(addr: SocketAddr, path: &str, signed_by_relay_keys: bool) -> (u16, String) {
    let data = blob(10_000, 3);
    // Announce 9,000 decoded bytes but send 10,000 (and the other way round, below).
    let mut results = Vec::new();
    for announced in [9_000usize, 11_000] {
        let framed = raw::chunked_with_trailer(&data, "x-amz-checksum-crc32", &crc32_b64(&data));
        let headers: Vec<(String, String)> = vec![
            ("host".into(), addr.to_string()),
            ("content-length".into(), framed.len().to_string()),
            ("content-encoding".into(), "aws-chunked".into()),
            ("x-amz-decoded-content-length".into(), announced.to_string()),
            ("x-amz-trailer".into(), "x-amz-checksum-crc32".into()),
        ];
        let (ak, sk) = if signed_by_relay_keys {
            (ACCESS_KEY, SECRET_KEY)
        } else {
            ("member", "not-the-relays")
        };
        let signed = sign("PUT", path, &headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", ak, sk);
        results.push(send(addr, &format!("PUT {path} HTTP/1.1"), &signed, &framed).await);
    }
    assert_eq!(results[0].0, results[1].0, "{results:?}");
    results.remove(0)
}

#[tokio::test]
async fn a_payload_longer_or_shorter_than_announced_is_refused_on_both_transports() {
    let (r, local) = member_relay().await;

    let (status, text) = lying_about_the_length(r.addr, "/sealed/http", true).await;
    assert_eq!(status, 400, "HTTP: {text}");
    assert!(text.contains("IncompleteBody"), "{text}");
    let (status, text) = lying_about_the_length(local, "/sealed/tunnel", false).await;
    assert_eq!(status, 400, "tunnel: {text}");
    assert!(common::list_keys(&r.client, "sealed").await.is_empty());
}

#[tokio::test]
async fn sigv2_presigned_urls_and_odd_query_names_work_through_the_tunnel() {
    let (r, local) = member_relay().await;
    r.put("sealed", "photo", b"sealed bytes".to_vec()).await;

    let host = vec![("host".to_owned(), local.to_string())];
    let (status, text) = send(
        local,
        "GET /sealed/photo?AWSAccessKeyId=AKIAEXAMPLE&Signature=dGVzdA%3D%3D&Expires=4102444800 HTTP/1.1",
        &host,
        b"",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("sealed bytes"), "{text}");

    // A query name with a non-ASCII byte once panicked the tunnel's signature stripping.
    let (status, _) = send(local, "GET /sealed/photo?X-Amz\u{e9}=1 HTTP/1.1", &host, b"").await;
    assert!(status == 200 || (400..500).contains(&status), "{status}");
    let (status, _) = send(local, "GET /sealed/photo HTTP/1.1", &host, b"").await;
    assert_eq!(status, 200, "the relay still serves");
}

/// A signed request with the given Host, straight to `addr` (the relay, or a forwarder).
async fn signed(addr: SocketAddr, method: &str, host: &str, path: &str, body: &[u8]) -> (u16, String) {
    let headers = vec![
        ("host".to_owned(), host.to_owned()),
        ("content-length".to_owned(), body.len().to_string()),
    ];
    let signed = sign(method, path, &headers, &raw::sha256_hex(body), ACCESS_KEY, SECRET_KEY);
    send(addr, &format!("{method} {path} HTTP/1.1"), &signed, body).await
}

/// Buckets `photos` and `sync500`, the latter holding `keep`.
async fn two_buckets(r: &TestRelay) {
    r.bucket("photos").await;
    r.bucket("sync500").await;
    r.put("sync500", "keep", b"kept".to_vec()).await;
}

async fn untouched(r: &TestRelay) {
    assert_eq!(common::list_keys(&r.client, "sync500").await, vec!["keep"]);
    assert!(common::list_keys(&r.client, "photos").await.is_empty());
}

/// The status of a signed request to the relay's HTTP port with Host `<name>:<port>`.
async fn status_with_host(r: &TestRelay, method: &str, name: &str, path: &str, body: &[u8]) -> u16 {
    let (status, text) = signed(r.addr, method, &format!("{name}:{}", r.addr.port()), path, body).await;
    eprintln!("{method} {name}{path} -> {status}: {text}");
    status
}

/// boto3 with `addressing_style='virtual'` puts the bucket in the Host. Read as path-style,
/// `DELETE /sync500/keep` for bucket `nosuchbkt` would delete `keep` from `sync500`.
#[tokio::test]
async fn a_bucket_in_the_host_is_never_misread_as_path_style() {
    let r = common::start().await;
    two_buckets(&r).await;

    // Under a name the relay does not know, nothing can be told apart: refused, whether or not
    // the first label is a bucket, signed or not (so it reveals nothing about buckets).
    for name in ["photos.example.org", "nosuchbkt.example.org"] {
        assert_eq!(
            status_with_host(&r, "PUT", name, "/sync500/evil.txt", b"evil").await,
            400
        );
        assert_eq!(status_with_host(&r, "DELETE", name, "/sync500/keep", b"").await, 400);
        let (_, text) = signed(r.addr, "DELETE", name, "/sync500/keep", b"").await;
        assert!(text.contains("--s3-domain"), "{text}");
        let unsigned = vec![("host".to_owned(), name.to_owned())];
        assert_eq!(
            send(r.addr, "DELETE /sync500/keep HTTP/1.1", &unsigned, b"").await.0,
            400
        );
    }
    untouched(&r).await;

    // `localhost` is always the relay's own: `<bucket>.localhost` is virtual-hosted style.
    assert_eq!(
        status_with_host(&r, "DELETE", "nosuchbkt.localhost", "/sync500/keep", b"").await,
        404
    );
    assert_eq!(
        status_with_host(&r, "PUT", "nosuchbkt.localhost", "/sync500/evil.txt", b"evil").await,
        404
    );
    untouched(&r).await;
    assert_eq!(
        status_with_host(&r, "PUT", "photos.localhost", "/sync500/meant", b"meant").await,
        200
    );
    assert_eq!(common::list_keys(&r.client, "photos").await, vec!["sync500/meant"]);
    assert_eq!(common::list_keys(&r.client, "sync500").await, vec!["keep"]);

    // Path-style on addresses and on localhost itself.
    for name in ["127.0.0.1", "localhost"] {
        assert_eq!(status_with_host(&r, "PUT", name, "/sync500/fine", b"fine").await, 200);
    }
}

#[tokio::test]
async fn an_s3_domain_serves_both_styles_under_that_name() {
    let r = common::start_with(|c| c.s3_domains = vec!["relay.example.org".into()]).await;
    two_buckets(&r).await;

    let delete = status_with_host(&r, "DELETE", "nosuchbkt.relay.example.org", "/sync500/keep", b"").await;
    assert_eq!(delete, 404);
    untouched(&r).await;
    let put = status_with_host(&r, "PUT", "photos.relay.example.org", "/sync500/meant", b"meant").await;
    assert_eq!(put, 200);
    assert_eq!(r.get("photos", "sync500/meant").await, b"meant");
    assert_eq!(
        status_with_host(&r, "PUT", "relay.example.org", "/sync500/path", b"p").await,
        200
    );
    assert_eq!(common::list_keys(&r.client, "sync500").await, vec!["keep", "path"]);
}

#[tokio::test]
async fn the_tunnel_refuses_unknown_hosts_and_checks_the_payload_hash() {
    let (r, local) = member_relay().await;
    r.put("sealed", "keep", b"kept".to_vec()).await;
    let (status, text) = signed(local, "DELETE", "nosuchbkt.example.org", "/sealed/keep", b"").await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(r.get("sealed", "keep").await, b"kept");

    // s3s checks x-amz-content-sha256 only with SigV4; on the tunnel the relay does.
    let put = |sha: String, key: &'static str| {
        let headers = vec![
            ("host".to_owned(), local.to_string()),
            ("content-length".to_owned(), "4".to_owned()),
            ("x-amz-content-sha256".to_owned(), sha),
        ];
        async move { send(local, &format!("PUT /sealed/{key} HTTP/1.1"), &headers, b"BBBB").await }
    };
    let (status, text) = put(raw::sha256_hex(b"AAAA"), "sha-bad").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("BadDigest"), "{text}");
    let (status, text) = put("nothex".into(), "sha-junk").await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = put(raw::sha256_hex(b"BBBB"), "sha-ok").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(common::list_keys(&r.client, "sealed").await, vec!["keep", "sha-ok"]);
}

/// restic (minio-go) signs every chunk of its uploads; through `connect` it must round-trip.
#[tokio::test]
async fn restic_backs_up_restores_and_checks_through_connect() {
    let restic = std::env::var("HAVEN_RELAY_RESTIC")
        .expect("HAVEN_RELAY_RESTIC is not set: run the tests with `bash tests/run.sh`, which installs restic");
    let member = SecretKey::generate();
    let r = relay_for(&[member.public()]).await;
    let local = forwarder(&member, &r).await;

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("photos");
    std::fs::create_dir_all(source.join("2026")).unwrap();
    let files = [
        ("a.bin", blob(1, 1)),
        ("2026/b.bin", blob(300_000, 2)),
        ("2026/c.bin", blob(5 << 20, 3)),
    ];
    for (name, data) in &files {
        std::fs::write(source.join(name), data).unwrap();
    }
    let run = async |args: &[&str]| {
        let out = tokio::process::Command::new(&restic)
            .args(args)
            .env("RESTIC_REPOSITORY", format!("s3:http://{local}/restic-repo"))
            .env("RESTIC_PASSWORD", "sealed-by-the-app")
            .env("AWS_ACCESS_KEY_ID", "member")
            .env("AWS_SECRET_ACCESS_KEY", "member-secret-the-relay-never-sees")
            .env("RESTIC_CACHE_DIR", work.path().join("cache"))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "restic {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["init"]).await;
    run(&["backup", source.to_str().unwrap()]).await;
    run(&["check", "--read-data"]).await;
    let target = work.path().join("restored");
    run(&["restore", "latest", "--target", target.to_str().unwrap()]).await;
    let restored_root = target.join(source.strip_prefix("/").unwrap());
    for (name, data) in &files {
        let got = std::fs::read(restored_root.join(name)).unwrap();
        assert!(&got == data, "{name} restored intact");
    }
    let keys = common::list_keys(&r.client, "restic-repo").await;
    assert!(keys.iter().any(|k| k == "config"), "{keys:?}");
}
