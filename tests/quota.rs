//! The storage quota (`--max-storage`): every way bytes arrive counts, a write past it is
//! refused with 403 QuotaExceeded before its body is read, and it leaves nothing behind.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

const MIB: usize = 1024 * 1024;

fn refused<E, R>(result: Result<R, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(r) => panic!("accepted past the quota: {r:?}"),
        Err(e) => common::code(&e) == "QuotaExceeded" && common::status(&e) == 403,
    }
}

#[tokio::test]
async fn puts_and_copies_stop_at_the_quota_and_leave_nothing() {
    let r = common::start_with(|c| c.max_storage = Some(10_000)).await;
    let bucket = r.bucket("quota").await;
    r.put(&bucket, "first", vec![1u8; 6000]).await;
    let files_before = r.files();
    let over = r
        .client
        .put_object()
        .bucket(&bucket)
        .key("second")
        .body(vec![2u8; 5000].into())
        .send()
        .await;
    assert!(refused(over));
    assert_eq!(r.files(), files_before, "a refused write left files");
    assert!(
        r.client
            .head_object()
            .bucket(&bucket)
            .key("second")
            .send()
            .await
            .is_err()
    );
    // A copy counts like a write.
    let copy = r
        .client
        .copy_object()
        .bucket(&bucket)
        .key("copy")
        .copy_source(format!("{bucket}/first"))
        .send()
        .await;
    assert!(refused(copy));
    // Rewriting an object counts only what it adds: at the quota's edge it still works.
    r.put(&bucket, "first", vec![3u8; 6000]).await;
    let redescribed = r
        .client
        .copy_object()
        .bucket(&bucket)
        .key("first")
        .copy_source(format!("{bucket}/first"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("application/x-sealed")
        .send()
        .await;
    assert!(redescribed.is_ok(), "{redescribed:?}");
    assert!(refused(
        r.client
            .put_object()
            .bucket(&bucket)
            .key("first")
            .body(vec![4u8; 10_001].into())
            .send()
            .await
    ));
    // Room made is room to write.
    r.client
        .delete_object()
        .bucket(&bucket)
        .key("first")
        .send()
        .await
        .unwrap();
    r.put(&bucket, "second", vec![2u8; 5000]).await;
    assert_eq!(r.get(&bucket, "second").await, vec![2u8; 5000]);
}

#[tokio::test]
async fn staged_parts_count_until_their_upload_ends() {
    let r = common::start_with(|c| c.max_storage = Some(8 * MIB as u64)).await;
    let bucket = r.bucket("parts").await;
    let upload = r
        .client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let part = |key: &str, n: i32, id: &str| {
        r.client
            .upload_part()
            .bucket(&bucket)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .body(vec![n as u8; 5 * MIB].into())
            .send()
    };
    let first = part("big", 1, id).await.unwrap();
    assert!(refused(part("big", 2, id).await), "a second 5 MiB part fit in 8 MiB");
    // Completing moves the part into a stored object: still counted.
    r.client
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(first.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let over = r
        .client
        .put_object()
        .bucket(&bucket)
        .key("more")
        .body(vec![0u8; 4 * MIB].into())
        .send()
        .await;
    assert!(refused(over));
    // An aborted upload's parts stop counting.
    r.client
        .delete_object()
        .bucket(&bucket)
        .key("big")
        .send()
        .await
        .unwrap();
    let upload = r
        .client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("gone")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap().to_owned();
    part("gone", 1, &id).await.unwrap();
    r.client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key("gone")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let attempt = r
            .client
            .put_object()
            .bucket(&bucket)
            .key("after")
            .body(vec![3u8; 6 * MIB].into())
            .send()
            .await;
        match attempt {
            Ok(_) => break,
            Err(e) => assert_eq!(common::code(&e), "QuotaExceeded"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the aborted parts still count"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A bucket's own quota (`--bucket-quota`) holds that bucket only: single PUTs, copies into
/// it and multipart completions stop at it, other buckets go on, and an overwrite counts net.
#[tokio::test]
async fn a_bucket_quota_holds_only_its_bucket() {
    let r = common::start_with(|c| {
        c.bucket_quotas = [("small".to_owned(), 6 * MIB as u64)].into();
    })
    .await;
    let small = r.bucket("small").await;
    let other = r.bucket("other").await;
    r.put(&small, "a", vec![1u8; 4 * MIB]).await;
    let over = r
        .client
        .put_object()
        .bucket(&small)
        .key("b")
        .body(vec![2u8; 3 * MIB].into())
        .send()
        .await;
    assert!(refused(over));
    // The same key rewritten counts only what it adds.
    r.put(&small, "a", vec![3u8; 5 * MIB]).await;
    // Other buckets are not held.
    r.put(&other, "big", vec![4u8; 8 * MIB]).await;
    let copy = r
        .client
        .copy_object()
        .bucket(&small)
        .key("copied")
        .copy_source(format!("{other}/big"))
        .send()
        .await;
    assert!(refused(copy));

    // A multipart upload into the bucket: its parts arrive, its completion is refused, and
    // the upload stays for the client to abort.
    let parts = [vec![5u8; 5 * MIB], vec![6u8; MIB]];
    let (id, done) = common::upload_parts(&r.client, &small, "multi", &parts).await;
    let complete = r
        .client
        .complete_multipart_upload()
        .bucket(&small)
        .key("multi")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await;
    assert!(refused(complete));
    let uploads = r.client.list_multipart_uploads().bucket(&small).send().await.unwrap();
    assert_eq!(uploads.uploads().len(), 1, "the refused completion kept the upload");
    assert_eq!(common::list_keys(&r.client, &small).await, ["a"]);
    assert_eq!(r.get(&small, "a").await, vec![3u8; 5 * MIB]);
}
