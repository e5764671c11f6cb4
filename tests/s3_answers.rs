//! What tools probe and S3 conformance suites check, through aws-sdk-s3 and raw HTTP: access
//! settings (ACLs, public access blocks, versioning, expected owner), ListBuckets paging,
//! listing edge cases, `partNumber` bounds and request ids.

mod common;

use aws_sdk_s3::types::{BucketCannedAcl, ObjectCannedAcl, Permission, PublicAccessBlockConfiguration};
use common::{TestRelay, code, start, status};

/// A signed GET of `path_and_query` over a fresh connection: (status, headers, body).
async fn raw_get(r: &TestRelay, path_and_query: &str) -> (u16, std::collections::HashMap<String, String>, String) {
    let host = r.addr.to_string();
    let headers = common::raw::sign(
        "GET",
        path_and_query,
        &[("host".into(), host)],
        &common::raw::sha256_hex(b""),
        common::ACCESS_KEY,
        common::SECRET_KEY,
    );
    let (status, text) = common::raw::send(r.addr, &format!("GET {path_and_query} HTTP/1.1"), &headers, b"").await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_read_back_private_and_sharing_is_refused() {
    let r = start().await;
    r.client
        .create_bucket()
        .bucket("acl")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    let public = r
        .client
        .create_bucket()
        .bucket("public")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&public), "NotImplemented");
    assert!(!common::bucket_names(&r.client).await.contains(&"public".to_owned()));

    r.client
        .put_object()
        .bucket("acl")
        .key("k")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .body(b"sealed".to_vec().into())
        .send()
        .await
        .unwrap();
    let shared = r
        .client
        .put_object()
        .bucket("acl")
        .key("shared")
        .acl(ObjectCannedAcl::PublicRead)
        .body(b"sealed".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&shared), "NotImplemented");
    let bogus = r
        .client
        .put_object()
        .bucket("acl")
        .key("bogus")
        .acl(ObjectCannedAcl::from("bogus"))
        .body(b"sealed".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bogus), "InvalidArgument");
    let keys = common::list_keys(&r.client, "acl").await;
    assert_eq!(keys, ["k"], "a refused write leaves nothing");

    let bucket_acl = r.client.get_bucket_acl().bucket("acl").send().await.unwrap();
    let object_acl = r.client.get_object_acl().bucket("acl").key("k").send().await.unwrap();
    for grants in [bucket_acl.grants(), object_acl.grants()] {
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].permission(), Some(&Permission::FullControl));
        assert_eq!(
            grants[0].grantee().and_then(|g| g.id()),
            bucket_acl.owner().and_then(|o| o.id())
        );
    }
    r.client
        .put_object_acl()
        .bucket("acl")
        .key("k")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    let err = r
        .client
        .put_bucket_acl()
        .bucket("acl")
        .acl(BucketCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotImplemented");
    let missing = r
        .client
        .get_object_acl()
        .bucket("acl")
        .key("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchKey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioning_is_off_and_public_access_blocks_are_kept() {
    let r = start().await;
    let bucket = r.bucket("settings").await;
    let versioning = r.client.get_bucket_versioning().bucket(&bucket).send().await.unwrap();
    assert_eq!(versioning.status(), None, "never enabled");
    let missing = r
        .client
        .get_bucket_versioning()
        .bucket("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchBucket");

    let none = r
        .client
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&none), "NoSuchPublicAccessBlockConfiguration");
    assert_eq!(status(&none), 404);
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(false)
        .restrict_public_buckets(true)
        .build();
    r.client
        .put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(block.clone())
        .send()
        .await
        .unwrap();
    let read = r.client.get_public_access_block().bucket(&bucket).send().await.unwrap();
    assert_eq!(read.public_access_block_configuration(), Some(&block));
    r.client
        .delete_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let gone = r
        .client
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "NoSuchPublicAccessBlockConfiguration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_expecting_another_owner_is_denied() {
    let r = start().await;
    let bucket = r.bucket("owned").await;
    let owner = r.client.get_bucket_acl().bucket(&bucket).send().await.unwrap();
    let owner_id = owner.owner().and_then(|o| o.id()).unwrap().to_owned();
    r.client
        .head_bucket()
        .bucket(&bucket)
        .expected_bucket_owner(&owner_id)
        .send()
        .await
        .unwrap();
    let err = r
        .client
        .put_object()
        .bucket(&bucket)
        .key("k")
        .expected_bucket_owner("123456789012")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDenied");
    assert_eq!(status(&err), 403);
    assert!(common::list_keys(&r.client, &bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_buckets_pages_by_prefix_and_token() {
    let r = start().await;
    for name in ["a-1", "a-2", "a-3", "b-1", "a-4"] {
        r.bucket(name).await;
    }
    let mut names = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = r
            .client
            .list_buckets()
            .prefix("a-")
            .max_buckets(3)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        pages += 1;
        assert_eq!(page.prefix(), Some("a-"));
        names.extend(page.buckets().iter().filter_map(|b| b.name().map(str::to_owned)));
        match page.continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(names, ["a-1", "a-2", "a-3", "a-4"]);
    assert_eq!(pages, 2);
    let all = r.client.list_buckets().send().await.unwrap();
    assert_eq!(all.buckets().len(), 5);
    assert!(all.continuation_token().is_none());
    let err = r.client.list_buckets().max_buckets(0).send().await.unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_edge_cases_answer_as_s3() {
    let r = start().await;
    let bucket = r.bucket("edges").await;
    for key in ["a/1", "a/2", "b"] {
        r.put(&bucket, key, "x").await;
    }
    let zero = r
        .client
        .list_objects_v2()
        .bucket(&bucket)
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert!(zero.contents().is_empty());
    assert_eq!(zero.is_truncated(), Some(false));
    let missing = r
        .client
        .list_objects_v2()
        .bucket("nope")
        .max_keys(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchBucket");

    // `delimiter=` (empty) is no delimiter, and is not echoed.
    let (status, _, body) = raw_get(&r, &format!("/{bucket}?list-type=2&delimiter=")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("<Delimiter>"), "{body}");
    assert_eq!(body.matches("<Key>").count(), 3, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_numbers_out_of_range_get_the_s3_answer() {
    let r = start().await;
    let bucket = r.bucket("parts").await;
    r.put(&bucket, "plain", "sealed bytes").await;
    let whole = r
        .client
        .get_object()
        .bucket(&bucket)
        .key("plain")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.body.collect().await.unwrap().into_bytes(), "sealed bytes");
    let past = r
        .client
        .get_object()
        .bucket(&bucket)
        .key("plain")
        .part_number(2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&past), 416);
    assert_eq!(code(&past), "InvalidPartNumber");
    for n in [0, 10_001] {
        let bad = r
            .client
            .get_object()
            .bucket(&bucket)
            .key("plain")
            .part_number(n)
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&bad), 400, "partNumber={n}");
        assert_eq!(code(&bad), "InvalidArgument", "partNumber={n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_a_request_id_and_errors_name_it() {
    let r = start().await;
    let bucket = r.bucket("ids").await;
    let (status, headers, body) = raw_get(&r, &format!("/{bucket}/missing")).await;
    assert_eq!(status, 404);
    let id = headers["x-amz-request-id"].clone();
    assert_eq!(id.len(), 16);
    assert!(headers.contains_key("x-amz-id-2"));
    assert!(body.contains(&format!("<RequestId>{id}</RequestId>")), "{body}");
    // Another request, another id; a success carries one too.
    let (_, again, _) = raw_get(&r, &format!("/{bucket}")).await;
    assert_ne!(again["x-amz-request-id"], id);
    // Errors s3s makes itself get AWS's message too (the aws CLI would print "Unknown").
    let bad = r.client.create_bucket().bucket("ab").send().await.unwrap_err();
    assert_eq!(code(&bad), "InvalidBucketName");
    assert_eq!(
        bad.as_service_error()
            .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::message(e)),
        Some("The specified bucket is not valid.")
    );
    // The SDK reads it from the error.
    let err = r
        .client
        .get_object()
        .bucket(&bucket)
        .key("missing")
        .send()
        .await
        .unwrap_err();
    let meta = err.as_service_error().unwrap();
    assert_eq!(
        aws_sdk_s3::operation::RequestId::request_id(meta).map(str::len),
        Some(16)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_attributes_describe_an_object_and_page_its_parts() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectAttributes};
    let r = start().await;
    let bucket = r.bucket("attrs").await;
    let part = common::blob(5 * 1024 * 1024, 1);
    let parts = vec![part.clone(), part.clone(), b"tail".to_vec()];
    let etag = common::multipart_put(&r.client, &bucket, "multi", &parts).await;
    r.client
        .put_object()
        .bucket(&bucket)
        .key("single")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(b"sealed".to_vec().into())
        .send()
        .await
        .unwrap();
    let all = [
        ObjectAttributes::Etag,
        ObjectAttributes::ObjectSize,
        ObjectAttributes::StorageClass,
        ObjectAttributes::ObjectParts,
        ObjectAttributes::Checksum,
    ];
    let first = r
        .client
        .get_object_attributes()
        .bucket(&bucket)
        .key("multi")
        .set_object_attributes(Some(all.to_vec()))
        .max_parts(2)
        .send()
        .await
        .unwrap();
    assert_eq!(Some(etag.trim_matches('"')), first.e_tag().map(|e| e.trim_matches('"')));
    assert_eq!(first.object_size(), Some(10 * 1024 * 1024 + 4));
    let pages = first.object_parts().unwrap();
    assert_eq!(pages.total_parts_count(), Some(3));
    assert_eq!(pages.is_truncated(), Some(true));
    let sizes: Vec<i64> = pages.parts().iter().filter_map(|p| p.size()).collect();
    assert_eq!(sizes, [5 * 1024 * 1024, 5 * 1024 * 1024]);
    let rest = r
        .client
        .get_object_attributes()
        .bucket(&bucket)
        .key("multi")
        .object_attributes(ObjectAttributes::ObjectParts)
        .part_number_marker(pages.next_part_number_marker().unwrap().to_owned())
        .send()
        .await
        .unwrap();
    let rest = rest.object_parts().unwrap();
    assert_eq!(rest.is_truncated(), Some(false));
    assert_eq!(
        rest.parts().iter().filter_map(|p| p.part_number()).collect::<Vec<_>>(),
        [3]
    );

    let single = r
        .client
        .get_object_attributes()
        .bucket(&bucket)
        .key("single")
        .set_object_attributes(Some(all.to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(single.object_size(), Some(6));
    assert!(single.object_parts().is_none(), "a single PUT has no parts");
    assert!(single.checksum().and_then(|c| c.checksum_crc32_c()).is_some());
    let missing = r
        .client
        .get_object_attributes()
        .bucket(&bucket)
        .key("nope")
        .object_attributes(ObjectAttributes::Etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchKey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_control_characters_list_url_encoded() {
    use aws_sdk_s3::types::EncodingType;
    let r = start().await;
    let bucket = r.bucket("ctrl").await;
    for key in ["dir\u{1}one/a", "dir\u{1}one/b", "plain\u{7f}\u{0b}"] {
        r.put(&bucket, key, "x").await;
    }
    let listed = r
        .client
        .list_objects_v2()
        .bucket(&bucket)
        .encoding_type(EncodingType::Url)
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = listed.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(prefixes, ["dir%01one/"]);
    assert_eq!(keys, ["plain%7F%0B"]);
    let v1 = r
        .client
        .list_objects()
        .bucket(&bucket)
        .encoding_type(EncodingType::Url)
        .prefix("dir\u{1}")
        .send()
        .await
        .unwrap();
    assert_eq!(v1.prefix(), Some("dir%01"));
    assert_eq!(v1.contents().len(), 2);
}
