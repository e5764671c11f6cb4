//! What a hostile or drifting client meets: bad signatures, presigned URLs, size caps,
//! checksum trailers (as aws CLI v2 and boto3 send them), missing Content-Length, CORS.

mod common;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use common::raw::{chunked_with_trailer, send, sha256_hex, sign};
use common::{ACCESS_KEY, SECRET_KEY, client, code, start, start_with, status};

#[tokio::test]
async fn wrong_secret_or_unknown_key_is_403_and_writes_nothing() {
    let r = start().await;
    let b = r.bucket("auth").await;
    for (ak, sk, expected) in [
        (ACCESS_KEY, "wrong-secret", "SignatureDoesNotMatch"),
        ("UNKNOWNKEY", SECRET_KEY, "InvalidAccessKeyId"),
    ] {
        let bad = client(&r.endpoint, ak, sk);
        let err = bad
            .put_object()
            .bucket(&b)
            .key("k")
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&err), 403, "{ak}");
        assert_eq!(code(&err), expected);
    }
    assert_eq!(
        status(&r.client.head_object().bucket(&b).key("k").send().await.unwrap_err()),
        404
    );
    // Unsigned requests are refused too.
    let (st, _) = send(r.addr, "GET / HTTP/1.1", &[("host".into(), "x".into())], b"").await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn presigned_get_and_put_work_and_expire() {
    let r = start().await;
    let b = r.bucket("presigned").await;
    let put = r
        .client
        .put_object()
        .bucket(&b)
        .key("k")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let path_and_query = put.uri().splitn(4, '/').nth(3).map(|s| format!("/{s}")).unwrap();
    let host = format!("{}", r.addr);
    let headers = vec![
        ("host".to_string(), host.clone()),
        ("content-length".to_string(), "5".to_string()),
    ];
    let (st, text) = send(r.addr, &format!("PUT {path_and_query} HTTP/1.1"), &headers, b"hello").await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(r.get(&b, "k").await, b"hello");
    let get = r
        .client
        .get_object()
        .bucket(&b)
        .key("k")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let pq = get.uri().splitn(4, '/').nth(3).map(|s| format!("/{s}")).unwrap();
    let (st, text) = send(
        r.addr,
        &format!("GET {pq} HTTP/1.1"),
        &[("host".into(), host.clone())],
        b"",
    )
    .await;
    assert_eq!(st, 200);
    assert!(text.ends_with("hello"));
    let expired = r
        .client
        .get_object()
        .bucket(&b)
        .key("k")
        .presigned(
            PresigningConfig::builder()
                .start_time(std::time::SystemTime::now() - Duration::from_secs(3600))
                .expires_in(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let pq = expired.uri().splitn(4, '/').nth(3).map(|s| format!("/{s}")).unwrap();
    let (st, _) = send(
        r.addr,
        &format!("GET {pq} HTTP/1.1"),
        &[("host".into(), host.clone())],
        b"",
    )
    .await;
    assert_eq!(st, 403);
    // A lifetime over AWS's week, or not a number of seconds, is refused as AWS refuses it
    // (it was accepted before), whatever the signature.
    let valid = get.uri().splitn(4, '/').nth(3).map(|s| format!("/{s}")).unwrap();
    for expires in ["604801", "-5", "soon"] {
        let pq = valid.replace("X-Amz-Expires=60", &format!("X-Amz-Expires={expires}"));
        assert_ne!(pq, valid);
        let (st, text) = send(
            r.addr,
            &format!("GET {pq} HTTP/1.1"),
            &[("host".into(), host.clone())],
            b"",
        )
        .await;
        assert_eq!(st, 400, "{expires}: {text}");
        assert!(
            text.contains("<Code>AuthorizationQueryParametersError</Code>"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn oversize_bodies_are_refused_and_leave_nothing() {
    let r = start_with(|c| c.max_object_size = 1000).await;
    let b = r.bucket("limits").await;
    r.put(&b, "ok", vec![0u8; 1000]).await;
    let err = r
        .client
        .put_object()
        .bucket(&b)
        .key("big")
        .body(vec![0u8; 1001].into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "EntityTooLarge");
    assert_eq!(
        status(&r.client.head_object().bucket(&b).key("big").send().await.unwrap_err()),
        404
    );
    let tmp = r.dir.path().join("store/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0, "no staging leftovers");
}

/// A browser's CORS preflight for a PUT to `/<bucket>/k`.
async fn preflight(r: &common::TestRelay, bucket: &str, origin: &str, headers: Option<&str>) -> (u16, String) {
    let mut h = vec![
        host(r),
        ("origin".into(), origin.into()),
        ("access-control-request-method".into(), "PUT".into()),
    ];
    if let Some(headers) = headers {
        h.push(("access-control-request-headers".into(), headers.into()));
    }
    send(r.addr, &format!("OPTIONS /{bucket}/k HTTP/1.1"), &h, b"").await
}

fn host(r: &common::TestRelay) -> (String, String) {
    ("host".into(), r.addr.to_string())
}

#[tokio::test]
async fn crc32_trailer_is_verified_and_never_stored() {
    let r = start().await;
    let b = r.bucket("trailers").await;
    let data = common::blob(20_000, 7);
    let good = backends::digest::base64(&crc32(&data));
    for (key, value, expect) in [("good", good.as_str(), 200u16), ("bad", "AAAAAA==", 400)] {
        let body = chunked_with_trailer(&data, "x-amz-checksum-crc32", value);
        let headers = sign(
            "PUT",
            &format!("/{b}/{key}"),
            &[
                host(&r),
                ("content-encoding".into(), "aws-chunked".into()),
                ("x-amz-decoded-content-length".into(), data.len().to_string()),
                ("x-amz-trailer".into(), "x-amz-checksum-crc32".into()),
                ("x-amz-sdk-checksum-algorithm".into(), "CRC32".into()),
                ("x-amz-some-future-header".into(), "whatever".into()),
            ],
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            ACCESS_KEY,
            SECRET_KEY,
        );
        let mut headers = headers;
        headers.push(("content-length".into(), body.len().to_string()));
        let (st, text) = send(r.addr, &format!("PUT /{b}/{key} HTTP/1.1"), &headers, &body).await;
        assert_eq!(st, expect, "{key}: {text}");
    }
    assert_eq!(
        r.get(&b, "good").await,
        data,
        "no chunk framing or trailer bytes in the object"
    );
    assert_eq!(
        status(&r.client.head_object().bucket(&b).key("bad").send().await.unwrap_err()),
        404
    );
}

fn crc32(data: &[u8]) -> Vec<u8> {
    let mut d = backends::digest::Digester::new(&[backends::ChecksumAlgorithm::Crc32]);
    d.update(data);
    backends::digest::base64_decode(&d.finish().checksums[&backends::ChecksumAlgorithm::Crc32]).unwrap()
}

#[tokio::test]
async fn put_without_content_length_stores_an_empty_object() {
    let r = start().await;
    let b = r.bucket("no-length").await;
    let headers = sign(
        "PUT",
        &format!("/{b}/empty"),
        &[host(&r)],
        "UNSIGNED-PAYLOAD",
        ACCESS_KEY,
        SECRET_KEY,
    );
    let (st, text) = send(r.addr, &format!("PUT /{b}/empty HTTP/1.1"), &headers, b"").await;
    assert_eq!(st, 200, "{text}");
    let head = r.client.head_object().bucket(&b).key("empty").send().await.unwrap();
    assert_eq!(head.content_length, Some(0));
    // And a signed single-chunk payload is checked against its hash.
    let body = b"signed body";
    let headers = {
        let mut h = sign(
            "PUT",
            &format!("/{b}/signed"),
            &[host(&r)],
            &sha256_hex(b"other"),
            ACCESS_KEY,
            SECRET_KEY,
        );
        h.push(("content-length".into(), body.len().to_string()));
        h
    };
    let (st, _) = send(r.addr, &format!("PUT /{b}/signed HTTP/1.1"), &headers, body).await;
    assert_ne!(st, 200);
    assert_eq!(
        status(
            &r.client
                .head_object()
                .bucket(&b)
                .key("signed")
                .send()
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test]
async fn cors_rules_answer_preflight_and_tag_responses() {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let r = start().await;
    let b = r.bucket("cors").await;
    let (st, _) = preflight(&r, &b, "https://app.example", None).await;
    assert_eq!(st, 403, "no rules yet");
    let rule = CorsRule::builder()
        .allowed_origins("https://app.example")
        .allowed_methods("GET")
        .allowed_methods("PUT")
        .allowed_headers("*")
        .expose_headers("ETag")
        .max_age_seconds(600)
        .build()
        .unwrap();
    r.client
        .put_bucket_cors()
        .bucket(&b)
        .cors_configuration(CorsConfiguration::builder().cors_rules(rule).build().unwrap())
        .send()
        .await
        .unwrap();
    let got = r.client.get_bucket_cors().bucket(&b).send().await.unwrap();
    assert_eq!(got.cors_rules()[0].allowed_methods(), ["GET", "PUT"]);
    let (st, text) = preflight(&r, &b, "https://app.example", None).await;
    assert_eq!(st, 200, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("access-control-allow-origin: https://app.example"),
        "{text}"
    );
    assert!(lower.contains("access-control-max-age: 600"));
    let (st, _) = preflight(&r, &b, "https://evil.example", None).await;
    assert_eq!(st, 403);
    r.client.delete_bucket_cors().bucket(&b).send().await.unwrap();
    let err = r.client.get_bucket_cors().bucket(&b).send().await.unwrap_err();
    assert_eq!(code(&err), "NoSuchCORSConfiguration");
}

#[tokio::test]
async fn crc64nvme_trailer_as_aws_cli_v2_sends_is_verified_and_returned() {
    use aws_sdk_s3::types::ChecksumMode;
    let r = start().await;
    let b = r.bucket("crc64").await;
    let data = common::blob(50_000, 8);
    let good = {
        let mut d = backends::digest::Digester::new(&[backends::ChecksumAlgorithm::Crc64nvme]);
        d.update(&data);
        d.finish().checksums[&backends::ChecksumAlgorithm::Crc64nvme].clone()
    };
    for (key, value, expect) in [("good", good.as_str(), 200u16), ("bad", "AAAAAAAAAAA=", 400)] {
        let body = chunked_with_trailer(&data, "x-amz-checksum-crc64nvme", value);
        let mut headers = sign(
            "PUT",
            &format!("/{b}/{key}"),
            &[
                host(&r),
                ("content-encoding".into(), "aws-chunked".into()),
                ("x-amz-decoded-content-length".into(), data.len().to_string()),
                ("x-amz-trailer".into(), "x-amz-checksum-crc64nvme".into()),
                ("x-amz-sdk-checksum-algorithm".into(), "CRC64NVME".into()),
            ],
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            ACCESS_KEY,
            SECRET_KEY,
        );
        headers.push(("content-length".into(), body.len().to_string()));
        let (st, text) = send(r.addr, &format!("PUT /{b}/{key} HTTP/1.1"), &headers, &body).await;
        assert_eq!(st, expect, "{key}: {text}");
    }
    let got = r
        .client
        .get_object()
        .bucket(&b)
        .key("good")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_crc64_nvme(), Some(good.as_str()));
    assert_eq!(got.body.collect().await.unwrap().to_vec(), data);
    let err = r.client.head_object().bucket(&b).key("bad").send().await.unwrap_err();
    assert_eq!(status(&err), 404);
}

#[tokio::test]
async fn no_storage_refuses_s3_requests_clearly_and_writes_nothing() {
    let r = common::start_with(|c| c.no_storage = true).await;
    let err = r.client.create_bucket().bucket("anything").send().await.unwrap_err();
    assert_eq!(status(&err), 501);
    assert_eq!(code(&err), "NotImplemented");
    let err = r.client.list_buckets().send().await.unwrap_err();
    assert!(format!("{err:?}").contains("--no-storage"), "{err:?}");
    assert!(!r.dir.path().join("store").exists(), "no store was created");
    // SigV4 is still checked first: a stranger learns nothing about the relay.
    let stranger = common::client(&r.endpoint, "NOTAKEY", "not-a-secret");
    assert_eq!(status(&stranger.list_buckets().send().await.unwrap_err()), 403);
}
