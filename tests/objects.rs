//! Object round trips with the real aws-sdk-s3 client: bodies, metadata, ranges, conditions,
//! checksums, copies, deletes, odd keys, and survival across a restart.

mod common;

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, Delete, MetadataDirective, ObjectIdentifier};
use common::{blob, code, start, status};

/// tests/run.sh runs this suite on the embedded store and again on a mirror set
/// (`HAVEN_RELAY_TEST_STORE=mirror`): the relay must be on the store that was asked for.
#[tokio::test]
async fn the_store_under_test_is_the_one_asked_for() {
    let r = start().await;
    let b = r.bucket("which-store").await;
    r.put(&b, "k", b"sealed".to_vec()).await;
    match r.relay.mirror_status() {
        Some(mirrors) => {
            assert!(common::on_mirror_set(), "a mirror set nobody asked for");
            assert_eq!(mirrors.len(), 2, "a local directory and an S3 server: {mirrors:?}");
            common::mirror_set::converged(&r).await;
        }
        None => assert!(
            !common::on_mirror_set(),
            "HAVEN_RELAY_TEST_STORE=mirror ran on the embedded store"
        ),
    }
}

#[tokio::test]
async fn put_get_head_delete_round_trip_with_metadata() {
    let r = start().await;
    let b = r.bucket("roundtrip").await;
    let body = blob(100_000, 1);
    let put = r
        .client
        .put_object()
        .bucket(&b)
        .key("sealed/one")
        .body(body.clone().into())
        .content_type("application/octet-stream")
        .cache_control("no-store")
        .metadata("sender", "alice")
        .metadata("nonce", "42")
        .send()
        .await
        .unwrap();
    let etag = put.e_tag.unwrap();
    assert_eq!(etag.len(), 34, "ETag is a quoted MD5: {etag}");
    let got = r.client.get_object().bucket(&b).key("sealed/one").send().await.unwrap();
    assert_eq!(got.e_tag.as_deref(), Some(etag.as_str()));
    assert_eq!(got.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(got.cache_control.as_deref(), Some("no-store"));
    let meta = got.metadata.clone().unwrap();
    assert_eq!(meta.get("sender").map(String::as_str), Some("alice"));
    assert_eq!(meta.get("nonce").map(String::as_str), Some("42"));
    assert_eq!(got.body.collect().await.unwrap().to_vec(), body);
    let head = r
        .client
        .head_object()
        .bucket(&b)
        .key("sealed/one")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length, Some(100_000));
    r.client
        .delete_object()
        .bucket(&b)
        .key("sealed/one")
        .send()
        .await
        .unwrap();
    let err = r
        .client
        .get_object()
        .bucket(&b)
        .key("sealed/one")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");
    // Deleting again is not an error, as in S3.
    r.client
        .delete_object()
        .bucket(&b)
        .key("sealed/one")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn etag_is_md5_of_body() {
    let r = start().await;
    let b = r.bucket("etags").await;
    let etag = r.put(&b, "k", b"hello world".to_vec()).await;
    assert_eq!(etag, "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"");
}

#[tokio::test]
async fn ranges_suffix_open_and_unsatisfiable() {
    let r = start().await;
    let b = r.bucket("ranges").await;
    let body = blob(1000, 2);
    r.put(&b, "k", body.clone()).await;
    let get = |range: &'static str| {
        let c = r.client.clone();
        let b = b.clone();
        async move { c.get_object().bucket(b).key("k").range(range).send().await }
    };
    let out = get("bytes=10-19").await.unwrap();
    assert_eq!(out.content_range.as_deref(), Some("bytes 10-19/1000"));
    assert_eq!(out.body.collect().await.unwrap().to_vec(), &body[10..20]);
    let out = get("bytes=-100").await.unwrap();
    assert_eq!(out.body.collect().await.unwrap().to_vec(), &body[900..]);
    let out = get("bytes=990-").await.unwrap();
    assert_eq!(out.body.collect().await.unwrap().to_vec(), &body[990..]);
    let out = get("bytes=990-5000").await.unwrap();
    assert_eq!(out.content_length, Some(10));
    let err = get("bytes=1000-").await.unwrap_err();
    assert_eq!(status(&err), 416);
    assert_eq!(code(&err), "InvalidRange");
}

#[tokio::test]
async fn read_preconditions_give_304_and_412() {
    let r = start().await;
    let b = r.bucket("conds").await;
    let etag = r.put(&b, "k", b"v1".to_vec()).await;
    let c = &r.client;
    c.get_object().bucket(&b).key("k").if_match(&etag).send().await.unwrap();
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 412);
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 304);
    // A cache revalidating its copy learns which version it holds (RFC 9110 §15.4.5).
    let headers = err.raw_response().unwrap().headers();
    assert_eq!(headers.get("etag"), Some(etag.as_str()));
    assert!(
        headers.get("last-modified").is_some_and(|d| d.ends_with(" GMT")),
        "{headers:?}"
    );
    c.get_object()
        .bucket(&b)
        .key("k")
        .if_none_match("\"other\"")
        .send()
        .await
        .unwrap();
    let future = DateTime::from_secs(4_000_000_000);
    let past = DateTime::from_secs(1_000_000_000);
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_modified_since(future)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 304);
    c.get_object()
        .bucket(&b)
        .key("k")
        .if_modified_since(past)
        .send()
        .await
        .unwrap();
    let err = c
        .get_object()
        .bucket(&b)
        .key("k")
        .if_unmodified_since(past)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 412);
    let err = c
        .head_object()
        .bucket(&b)
        .key("k")
        .if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 412);
}

#[tokio::test]
async fn conditional_create_with_if_none_match_star() {
    let r = start().await;
    let b = r.bucket("create-only").await;
    r.client
        .put_object()
        .bucket(&b)
        .key("k")
        .body(b"first".to_vec().into())
        .if_none_match("*")
        .send()
        .await
        .unwrap();
    let err = r
        .client
        .put_object()
        .bucket(&b)
        .key("k")
        .body(b"second".to_vec().into())
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 412);
    assert_eq!(r.get(&b, "k").await, b"first");
}

/// `If-Match: *` overwrites only: a key that holds nothing is `NoSuchKey` and stays empty;
/// `If-Match` with an ETag overwrites only that version.
#[tokio::test]
async fn conditional_overwrite_with_if_match() {
    let r = start().await;
    let b = r.bucket("overwrite-only").await;
    let put = |body: &'static [u8], if_match: &str| {
        r.client
            .put_object()
            .bucket(&b)
            .key("k")
            .body(body.to_vec().into())
            .if_match(if_match)
            .send()
    };
    let err = put(b"nothing to overwrite", "*").await.unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (404, "NoSuchKey"));
    let err = r.client.head_object().bucket(&b).key("k").send().await.unwrap_err();
    assert_eq!(status(&err), 404, "the refused write stored nothing");

    let first = r.put(&b, "k", b"first".to_vec()).await;
    put(b"second", "*").await.unwrap();
    assert_eq!(r.get(&b, "k").await, b"second");
    let err = put(b"third", &first).await.unwrap_err();
    assert_eq!(status(&err), 412, "the ETag of a version that was overwritten");
    assert_eq!(r.get(&b, "k").await, b"second");
}

#[tokio::test]
async fn bad_content_md5_is_refused_and_nothing_is_stored() {
    let r = start().await;
    let b = r.bucket("md5").await;
    let err = r
        .client
        .put_object()
        .bucket(&b)
        .key("k")
        .body(b"hello".to_vec().into())
        .content_md5("XrY7u+Ae7tCTyyK7j1rNww==") // md5 of "hello world"
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "BadDigest");
    let err = r.client.head_object().bucket(&b).key("k").send().await.unwrap_err();
    assert_eq!(status(&err), 404);
    r.client
        .put_object()
        .bucket(&b)
        .key("k")
        .body(b"hello world".to_vec().into())
        .content_md5("XrY7u+Ae7tCTyyK7j1rNww==")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn checksums_are_verified_stored_and_returned() {
    let r = start().await;
    let b = r.bucket("sums").await;
    for algo in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("k-{}", algo.as_str());
        // The SDK sends these in an aws-chunked trailer; the relay verifies and stores them.
        r.client
            .put_object()
            .bucket(&b)
            .key(&key)
            .body(b"hello world".to_vec().into())
            .checksum_algorithm(algo.clone())
            .send()
            .await
            .unwrap();
        let out = r
            .client
            .get_object()
            .bucket(&b)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let value = match algo {
            ChecksumAlgorithm::Crc32 => out.checksum_crc32.clone(),
            ChecksumAlgorithm::Crc32C => out.checksum_crc32_c.clone(),
            ChecksumAlgorithm::Sha1 => out.checksum_sha1.clone(),
            _ => out.checksum_sha256.clone(),
        };
        let expected = match algo {
            ChecksumAlgorithm::Crc32 => "DUoRhQ==",
            ChecksumAlgorithm::Crc32C => "yZRlqg==",
            ChecksumAlgorithm::Sha1 => "Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
            _ => "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
        };
        assert_eq!(value.as_deref(), Some(expected), "{algo:?}");
        // The stored body holds no chunk framing or trailer bytes.
        assert_eq!(out.body.collect().await.unwrap().to_vec(), b"hello world");
    }
    // A wrong checksum in a header is refused.
    let err = r
        .client
        .put_object()
        .bucket(&b)
        .key("bad")
        .body(b"hello world".to_vec().into())
        .checksum_crc32("AAAAAA==")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "BadDigest");
    assert_eq!(
        status(&r.client.head_object().bucket(&b).key("bad").send().await.unwrap_err()),
        404
    );
}

#[tokio::test]
async fn copy_object_same_and_other_bucket_with_directives() {
    let r = start().await;
    let a = r.bucket("copy-a").await;
    let b = r.bucket("copy-b").await;
    let etag = r
        .client
        .put_object()
        .bucket(&a)
        .key("src")
        .body(blob(5000, 3).into())
        .content_type("text/plain")
        .metadata("m", "1")
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    let out = r
        .client
        .copy_object()
        .bucket(&b)
        .key("dst")
        .copy_source(format!("{a}/src"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.copy_object_result.unwrap().e_tag.as_deref(), Some(etag.as_str()));
    let head = r.client.head_object().bucket(&b).key("dst").send().await.unwrap();
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.metadata.unwrap().get("m").map(String::as_str), Some("1"));
    r.client
        .copy_object()
        .bucket(&a)
        .key("src2")
        .copy_source(format!("{a}/src"))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("m", "2")
        .send()
        .await
        .unwrap();
    let head = r.client.head_object().bucket(&a).key("src2").send().await.unwrap();
    assert_eq!(head.metadata.unwrap().get("m").map(String::as_str), Some("2"));
    assert_eq!(r.get(&a, "src2").await, blob(5000, 3));
    // Copying onto itself without changing anything is refused, as in S3.
    let err = r
        .client
        .copy_object()
        .bucket(&a)
        .key("src")
        .copy_source(format!("{a}/src"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidRequest");
    // Copy-source conditions.
    let err = r
        .client
        .copy_object()
        .bucket(&b)
        .key("dst3")
        .copy_source(format!("{a}/src"))
        .copy_source_if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 412);
    let err = r
        .client
        .copy_object()
        .bucket(&b)
        .key("dst3")
        .copy_source(format!("{a}/src"))
        .copy_source_if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 412);
}

#[tokio::test]
async fn delete_objects_quiet_and_verbose() {
    let r = start().await;
    let b = r.bucket("bulk").await;
    for i in 0..5 {
        r.put(&b, &format!("k{i}"), vec![i as u8]).await;
    }
    let ids = |keys: &[&str]| {
        Delete::builder().set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
    };
    let out = r
        .client
        .delete_objects()
        .bucket(&b)
        .delete(ids(&["k0", "k1", "missing"]).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 3);
    let out = r
        .client
        .delete_objects()
        .bucket(&b)
        .delete(ids(&["k2", "k3"]).quiet(true).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty());
    let left = r.client.list_objects_v2().bucket(&b).send().await.unwrap();
    let keys: Vec<_> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["k4"]);
}

#[tokio::test]
async fn odd_keys_round_trip_and_never_escape_the_store() {
    let r = start().await;
    let b = r.bucket("odd-keys").await;
    let keys = [
        "../x",
        "a/../../b",
        "/abs",
        "..",
        "with space",
        "plus+sign",
        "per%cent",
        "ünïcødé/日本語",
        "trailing/",
        "a//double",
    ];
    for (i, key) in keys.iter().enumerate() {
        r.put(&b, key, vec![i as u8; 10]).await;
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(r.get(&b, key).await, vec![i as u8; 10], "{key}");
    }
    let listed = r.client.list_objects_v2().bucket(&b).send().await.unwrap();
    let mut got: Vec<_> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let mut want: Vec<_> = keys.iter().map(|k| k.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let store = r.dir.path().join("store");
    for f in r.files() {
        assert!(f.starts_with(r.dir.path()), "{f:?} escaped the data dir");
        // Besides the bucket, only the lock and the mailbox's own (hidden) bucket.
        if f.starts_with(&store) && f != store.join(".lock") {
            assert!(
                f.starts_with(store.join("buckets").join("odd-keys"))
                    || f.starts_with(store.join("buckets").join(mailbox::BUCKET)),
                "unexpected file {f:?}"
            );
        }
    }
    // Over-long keys are refused with S3's error.
    let err = r
        .client
        .put_object()
        .bucket(&b)
        .key("k".repeat(1025))
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KeyTooLongError");
}

#[tokio::test]
async fn objects_and_metadata_survive_a_restart() {
    let r = start().await;
    let b = r.bucket("durable").await;
    r.client
        .put_object()
        .bucket(&b)
        .key("k")
        .body(blob(70_000, 9).into())
        .content_type("x/y")
        .metadata("a", "b")
        .send()
        .await
        .unwrap();
    let r = r.restart().await;
    let out = r.client.get_object().bucket(&b).key("k").send().await.unwrap();
    assert_eq!(out.content_type.as_deref(), Some("x/y"));
    assert_eq!(out.metadata.unwrap().get("a").map(String::as_str), Some("b"));
    assert_eq!(out.body.collect().await.unwrap().to_vec(), blob(70_000, 9));
    let listed = r.client.list_objects_v2().bucket(&b).send().await.unwrap();
    assert_eq!(listed.key_count, Some(1));
}

#[tokio::test]
async fn a_second_relay_on_the_same_store_is_refused_not_let_in() {
    let r = common::start().await;
    r.put(&r.bucket("owned").await, "k", b"v".to_vec()).await;
    let second = haven_relay::Relay::start(&common::config(&r.dir), &common::credentials()).await;
    let err = second.err().expect("refused while the first relay runs");
    // The data dir's lock says so first (the store's own lock stays for stores shared otherwise).
    assert!(
        format!("{err:#}").contains("already running with the data dir"),
        "{err:#}"
    );
    assert_eq!(r.get("owned", "k").await, b"v", "the first relay is unharmed");
    // Once the first one stops, the store opens again.
    let r = r.restart().await;
    assert_eq!(r.get("owned", "k").await, b"v");
}
