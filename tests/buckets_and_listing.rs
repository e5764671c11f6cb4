//! Bucket lifecycle and listing semantics (v1 and v2), judged by aws-sdk-s3.

mod common;

use aws_sdk_s3::types::EncodingType;
use common::{code, start, status};

#[tokio::test]
async fn bucket_lifecycle_and_errors() {
    let r = start().await;
    let c = &r.client;
    c.create_bucket().bucket("alpha").send().await.unwrap();
    c.create_bucket().bucket("with.dots").send().await.unwrap();
    c.put_object()
        .bucket("alpha")
        .key("kept")
        .body(b"sealed".to_vec().into())
        .send()
        .await
        .unwrap();
    // As AWS answers in us-east-1: 200 OK, and the bucket keeps what it holds.
    c.create_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(common::list_keys(c, "alpha").await, ["kept"]);
    c.delete_object().bucket("alpha").key("kept").send().await.unwrap();
    for bad in ["UPPER", "a..b", "ab", "-dash"] {
        let err = c.create_bucket().bucket(bad).send().await.unwrap_err();
        assert_eq!(code(&err), "InvalidBucketName", "{bad}");
    }
    c.head_bucket().bucket("alpha").send().await.unwrap();
    let err = c.head_bucket().bucket("missing").send().await.unwrap_err();
    assert_eq!(status(&err), 404);
    let names = common::bucket_names(c).await;
    assert_eq!(names, ["alpha", "with.dots"]);
    let loc = c.get_bucket_location().bucket("alpha").send().await.unwrap();
    assert_eq!(loc.location_constraint().map_or("", |c| c.as_str()), "");
    r.put("alpha", "k", b"x".to_vec()).await;
    let err = c.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code(&err), "BucketNotEmpty");
    c.delete_object().bucket("alpha").key("k").send().await.unwrap();
    c.delete_bucket().bucket("alpha").send().await.unwrap();
    let err = c
        .put_object()
        .bucket("alpha")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
    // Nothing named after the invalid buckets reached the disk.
    assert!(r.files().iter().all(|f| !f.to_string_lossy().contains("UPPER")));
}

#[tokio::test]
async fn list_v2_delimiter_prefixes_and_continuation() {
    let r = start().await;
    let b = r.bucket("listing").await;
    for key in ["a/1", "a/2", "b", "c/x/1", "c/y", "d", "e/1"] {
        r.put(&b, key, b"x".to_vec()).await;
    }
    let c = &r.client;
    let mut seen_keys = Vec::new();
    let mut seen_prefixes = Vec::new();
    let mut token = None;
    loop {
        let out = c
            .list_objects_v2()
            .bucket(&b)
            .delimiter("/")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(out.key_count.unwrap() <= 2);
        seen_keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        seen_prefixes.extend(
            out.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        if out.is_truncated == Some(true) {
            token = out.next_continuation_token.clone();
            assert!(token.is_some());
        } else {
            break;
        }
    }
    assert_eq!(seen_keys, ["b", "d"]);
    assert_eq!(seen_prefixes, ["a/", "c/", "e/"]);
    let out = c
        .list_objects_v2()
        .bucket(&b)
        .prefix("c/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(),
        ["c/y"]
    );
    assert_eq!(
        out.common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect::<Vec<_>>(),
        ["c/x/"]
    );
    let out = c.list_objects_v2().bucket(&b).start_after("c/y").send().await.unwrap();
    assert_eq!(
        out.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(),
        ["d", "e/1"]
    );
    let out = c
        .list_objects_v2()
        .bucket(&b)
        .fetch_owner(true)
        .max_keys(1)
        .send()
        .await
        .unwrap();
    assert!(out.contents()[0].owner().is_some());
    let err = c
        .list_objects_v2()
        .bucket(&b)
        .continuation_token("!!!not-a-token")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");
}

#[tokio::test]
async fn list_v1_markers() {
    let r = start().await;
    let b = r.bucket("listing-v1").await;
    for i in 0..7 {
        r.put(&b, &format!("k{i}"), b"x".to_vec()).await;
    }
    let mut marker: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let out = r
            .client
            .list_objects()
            .bucket(&b)
            .max_keys(3)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        let keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        all.extend(keys.clone());
        if out.is_truncated != Some(true) {
            break;
        }
        marker = keys.last().cloned();
    }
    assert_eq!(all, (0..7).map(|i| format!("k{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn encoding_type_url_encodes_keys() {
    let r = start().await;
    let b = r.bucket("encoded").await;
    r.put(&b, "a b+c%d/é", b"x".to_vec()).await;
    let out = r
        .client
        .list_objects_v2()
        .bucket(&b)
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    let key = out.contents()[0].key().unwrap();
    assert_eq!(key, "a%20b%2Bc%25d/%C3%A9");
    let plain = r.client.list_objects_v2().bucket(&b).send().await.unwrap();
    assert_eq!(plain.contents()[0].key(), Some("a b+c%d/é"));
}

#[tokio::test]
async fn listing_many_keys_pages_completely() {
    let r = start().await;
    let b = r.bucket("many").await;
    let mut tasks = Vec::new();
    for i in 0..1500 {
        let c = r.client.clone();
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            c.put_object()
                .bucket(b)
                .key(format!("k{i:05}"))
                .body(vec![1u8].into())
                .send()
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut pages = r.client.list_objects_v2().bucket(&b).into_paginator().send();
    let mut n = 0;
    let mut first_page = None;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        first_page.get_or_insert(page.key_count.unwrap());
        n += page.contents().len();
    }
    assert_eq!(first_page, Some(1000));
    assert_eq!(n, 1500);
}
