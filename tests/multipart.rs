//! Multipart uploads with aws-sdk-s3: AWS-style ETags, validation, abort, listings, copies.

mod common;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{blob, code, start, upload_parts};

const MIB: usize = 1024 * 1024;

fn md5(data: &[u8]) -> [u8; 16] {
    let mut d = backends::digest::Digester::new(&[]);
    d.update(data);
    d.finish().md5
}

#[tokio::test]
async fn multipart_round_trip_with_aws_etag_and_part_reads() {
    let r = start().await;
    let b = r.bucket("mpu").await;
    let parts = vec![blob(5 * MIB, 1), blob(5 * MIB, 2), blob(MIB + 7, 3)];
    let (id, done) = upload_parts(&r.client, &b, "big", &parts).await;
    let listed = r
        .client
        .list_parts()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 3);
    let uploads = r.client.list_multipart_uploads().bucket(&b).send().await.unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    let out = r
        .client
        .complete_multipart_upload()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await
        .unwrap();
    // AWS: hex(md5(md5(p1) || md5(p2) || md5(p3)))-3, computed here independently.
    let concat: Vec<u8> = parts.iter().flat_map(|p| md5(p)).collect();
    let expected = format!("\"{}-3\"", backends::digest::hex(&md5(&concat)));
    assert_eq!(out.e_tag.as_deref(), Some(expected.as_str()));
    let whole: Vec<u8> = parts.concat();
    assert_eq!(r.get(&b, "big").await, whole);
    // A range across the part boundary.
    let start = 5 * MIB - 10;
    let got = r
        .client
        .get_object()
        .bucket(&b)
        .key("big")
        .range(format!("bytes={}-{}", start, start + 19))
        .send()
        .await
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), &whole[start..start + 20]);
    let part2 = r
        .client
        .get_object()
        .bucket(&b)
        .key("big")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(part2.parts_count, Some(3));
    assert_eq!(part2.body.collect().await.unwrap().to_vec(), parts[1]);
    assert!(
        r.client
            .list_multipart_uploads()
            .bucket(&b)
            .send()
            .await
            .unwrap()
            .uploads()
            .is_empty()
    );
    // It survives a restart, and overwriting it leaves no orphaned parts behind.
    let r = r.restart().await;
    assert_eq!(r.get(&b, "big").await, whole);
    r.put(&b, "big", b"small now".to_vec()).await;
    assert_eq!(r.get(&b, "big").await, b"small now");
    let part_files = r
        .files()
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("part-"))
        .count();
    assert_eq!(part_files, 0);
}

#[tokio::test]
async fn complete_validates_parts() {
    let r = start().await;
    let b = r.bucket("mpu-bad").await;
    let (id, done) = upload_parts(&r.client, &b, "k", &[blob(1000, 1), blob(1000, 2)]).await;
    let complete = |parts: Vec<CompletedPart>| {
        r.client
            .complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
    };
    let err = complete(done.clone()).await.unwrap_err();
    assert_eq!(code(&err), "EntityTooSmall");
    let wrong = vec![
        CompletedPart::builder()
            .part_number(1)
            .e_tag("\"00000000000000000000000000000000\"")
            .build(),
    ];
    assert_eq!(code(&complete(wrong).await.unwrap_err()), "InvalidPart");
    let reversed = vec![done[1].clone(), done[0].clone()];
    assert_eq!(code(&complete(reversed).await.unwrap_err()), "InvalidPartOrder");
    // A single small last part is fine.
    complete(vec![done[0].clone()]).await.unwrap();
    assert_eq!(r.get(&b, "k").await, blob(1000, 1));
}

#[tokio::test]
async fn abort_and_unknown_upload_ids() {
    let r = start().await;
    let b = r.bucket("mpu-abort").await;
    let (id, _) = upload_parts(&r.client, &b, "k", &[blob(100, 1)]).await;
    r.client
        .abort_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let err = r
        .client
        .list_parts()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
    let err = r
        .client
        .upload_part()
        .bucket(&b)
        .key("k")
        .upload_id("../../../../etc")
        .part_number(1)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
}

#[tokio::test]
async fn upload_part_copy_builds_an_object_from_ranges() {
    let r = start().await;
    let b = r.bucket("mpu-copy").await;
    let src = blob(6 * MIB, 4);
    r.put(&b, "src", src.clone()).await;
    let id = r
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("dst")
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let mut parts = Vec::new();
    for (n, range) in [
        (1, format!("bytes=0-{}", 5 * MIB - 1)),
        (2, format!("bytes={}-{}", 5 * MIB, 6 * MIB - 1)),
    ] {
        let out = r
            .client
            .upload_part_copy()
            .bucket(&b)
            .key("dst")
            .upload_id(&id)
            .part_number(n)
            .copy_source(format!("{b}/src"))
            .copy_source_range(range)
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.copy_part_result.unwrap().e_tag.unwrap())
                .build(),
        );
    }
    r.client
        .complete_multipart_upload()
        .bucket(&b)
        .key("dst")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .unwrap();
    assert_eq!(r.get(&b, "dst").await, src);
}

#[tokio::test]
async fn list_multipart_uploads_pages_by_key_and_upload_id() {
    let r = start().await;
    let b = r.bucket("mpu-pages").await;
    let mut started = Vec::new();
    for key in ["a", "b", "b", "c", "d/e"] {
        let out = r
            .client
            .create_multipart_upload()
            .bucket(&b)
            .key(key)
            .send()
            .await
            .unwrap();
        started.push((key.to_string(), out.upload_id().unwrap().to_string()));
    }
    let mut seen = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    let mut pages = 0;
    loop {
        let page = r
            .client
            .list_multipart_uploads()
            .bucket(&b)
            .max_uploads(2)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(page.uploads().len() <= 2);
        seen.extend(
            page.uploads()
                .iter()
                .map(|u| (u.key().unwrap().to_string(), u.upload_id().unwrap().to_string())),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        id_marker = page.next_upload_id_marker().map(str::to_string);
        assert!(pages < 10, "paging does not advance");
    }
    assert_eq!(pages, 3);
    let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b", "b", "c", "d/e"], "in key order");
    let (mut seen, mut started) = (seen, started);
    seen.sort();
    started.sort();
    assert_eq!(seen, started, "every upload exactly once across pages");
}

/// An upload nobody completes (a client or relay killed mid-way) is aborted once it is older
/// than the relay's maximum age, parts and all; a younger one is left alone.
#[tokio::test]
async fn unfinished_uploads_expire_and_younger_ones_stay() {
    let r = common::start_with(|c| {
        c.incomplete_upload_max_age = std::time::Duration::from_secs(2);
        c.incomplete_upload_check = std::time::Duration::from_millis(100);
    })
    .await;
    let bucket = r.bucket("uploads").await;
    let files_before = r.files();
    let (old, _) = common::upload_parts(&r.client, &bucket, "old", &[blob(1 << 20, 1)]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (young, _) = common::upload_parts(&r.client, &bucket, "young", &[blob(1 << 20, 2)]).await;
    let listed = |r: &common::TestRelay| {
        let (client, bucket) = (r.client.clone(), bucket.clone());
        async move {
            client
                .list_multipart_uploads()
                .bucket(bucket)
                .send()
                .await
                .unwrap()
                .uploads()
                .iter()
                .map(|u| u.upload_id().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ids = listed(&r).await;
        if !ids.contains(&old) {
            assert!(ids.contains(&young), "the younger upload was kept: {ids:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the old upload never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let err = r
        .client
        .upload_part()
        .bucket(&bucket)
        .key("old")
        .upload_id(&old)
        .part_number(2)
        .body(b"late".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::code(&err), "NoSuchUpload");
    // Then the younger one goes too, and no part file is left behind.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !listed(&r).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the younger upload never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The sweeper moves an upload out of sight before it deletes its parts, so the files may
    // outlive the listing by a moment. The embedded store is left with exactly the files it had.
    // A mirror set also writes bookkeeping as it runs (its staging bucket, its scrub record),
    // far smaller than the 1 MiB parts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let new: Vec<_> = r.files().into_iter().filter(|f| !files_before.contains(f)).collect();
        let new_bytes: u64 = new
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let swept = if common::on_mirror_set() {
            new_bytes < 64 * 1024
        } else {
            new.is_empty()
        };
        if swept {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "parts left on disk: {new:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A CompleteMultipartUpload repeated with the same parts (an SDK retrying after a lost
/// answer) gets the same answer, as on AWS; with other parts, or once the key holds another
/// object, it is `NoSuchUpload`.
#[tokio::test]
async fn a_repeated_completion_gets_the_same_answer() {
    let r = start().await;
    let b = r.bucket("again").await;
    let data = [blob(5 << 20, 1), blob(1000, 2)];
    let (id, done) = upload_parts(&r.client, &b, "k", &data).await;
    let complete = |parts: Vec<CompletedPart>| {
        r.client
            .complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
    };
    let first = complete(done.clone()).await.unwrap();
    let again = complete(done.clone()).await.unwrap();
    assert_eq!(again.e_tag(), first.e_tag());
    assert_eq!(r.get(&b, "k").await, [data[0].clone(), data[1].clone()].concat());
    let fewer = complete(done[..1].to_vec()).await.unwrap_err();
    assert_eq!(code(&fewer), "NoSuchUpload");
    r.put(&b, "k", b"replaced".to_vec()).await;
    let after_overwrite = complete(done).await.unwrap_err();
    assert_eq!(code(&after_overwrite), "NoSuchUpload");
    assert_eq!(r.get(&b, "k").await, b"replaced");
}

/// Bitwise reflected CRC-32 with `poly`: the test's own reference.
fn crc32_with(poly: u32, data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ poly } else { crc >> 1 };
        }
    }
    !crc
}

/// CRC-32 (ISO-HDLC), as the SDK computes it.
fn crc32(data: &[u8]) -> u32 {
    crc32_with(0xEDB8_8320, data)
}

/// Uploads `parts` to upload `id` with `algorithm`'s checksum on each, as an SDK does;
/// returns them as CompleteMultipartUpload lists them, with their checksums.
async fn upload_with_checksum(
    r: &common::TestRelay,
    bucket: &str,
    key: &str,
    id: &str,
    parts: &[Vec<u8>],
    algorithm: aws_sdk_s3::types::ChecksumAlgorithm,
) -> Vec<CompletedPart> {
    let mut done = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = r
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .checksum_algorithm(algorithm.clone())
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag.unwrap())
                .set_checksum_crc32(out.checksum_crc32)
                .set_checksum_crc32_c(out.checksum_crc32_c)
                .build(),
        );
    }
    done
}

/// `x-amz-checksum-type: FULL_OBJECT`: the object's CRC is the whole body's, combined from
/// the parts'; a completion whose checksum is wrong is refused and can be corrected.
#[tokio::test]
async fn full_object_checksums_combine_the_parts_and_check_the_completion() {
    full_object_checksums(start().await).await;
}

/// The same on a mirror set, where parts are staged apart from the mirrors.
#[tokio::test]
async fn full_object_checksums_on_a_mirror_set() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let r = common::start_with(|cfg| {
        common::mirror_set::mirrored(
            cfg,
            vec![
                backends::spec::BackendSpec::Fs(a.clone()),
                backends::spec::BackendSpec::Fs(b.clone()),
            ],
        )
    })
    .await;
    full_object_checksums(r).await;
}

async fn full_object_checksums(r: common::TestRelay) {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType};
    let bucket = r.bucket("full").await;
    let parts = [blob(5 * 1024 * 1024, 1), blob(5 * 1024 * 1024, 2), blob(1234, 3)];
    let whole = parts.concat();
    let created = r
        .client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("k")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .checksum_type(ChecksumType::FullObject)
        .send()
        .await
        .unwrap();
    assert_eq!(created.checksum_type(), Some(&ChecksumType::FullObject));
    let id = created.upload_id.unwrap();
    let done = upload_with_checksum(&r, &bucket, "k", &id, &parts, ChecksumAlgorithm::Crc32).await;
    let b64 = |v: u32| base64_simd::STANDARD.encode_to_string(v.to_be_bytes());
    let complete = |value: String| {
        r.client
            .complete_multipart_upload()
            .bucket(&bucket)
            .key("k")
            .upload_id(&id)
            .checksum_crc32(value)
            .checksum_type(ChecksumType::FullObject)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done.clone()))
                    .build(),
            )
            .send()
    };
    let wrong = complete(b64(crc32(b"something else"))).await.unwrap_err();
    assert_eq!(common::status(&wrong), 400, "{}", code(&wrong));
    assert!(
        r.client.head_object().bucket(&bucket).key("k").send().await.is_err(),
        "a refused completion commits nothing"
    );
    let right = complete(b64(crc32(&whole))).await.unwrap();
    assert_eq!(right.checksum_crc32(), Some(b64(crc32(&whole)).as_str()));
    assert_eq!(right.checksum_type(), Some(&ChecksumType::FullObject));
    // The SDK checks a full-object checksum on GET by itself.
    let got = r
        .client
        .get_object()
        .bucket(&bucket)
        .key("k")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_crc32(), Some(b64(crc32(&whole)).as_str()));
    assert!(got.body.collect().await.unwrap().into_bytes() == whole);

    // What S3 does not support is refused.
    let sha = r
        .client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("s")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_type(ChecksumType::FullObject)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&sha), "InvalidRequest");

    // A composite checksum at completion: the checksum of the parts' checksums, matched with
    // or without its `-N`.
    let created = r
        .client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("c")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .send()
        .await
        .unwrap();
    assert_eq!(created.checksum_type(), Some(&ChecksumType::Composite));
    let id = created.upload_id.unwrap();
    let crc32c = |d: &[u8]| crc32_with(0x82F6_3B78, d);
    let done = upload_with_checksum(&r, &bucket, "c", &id, &parts[..2], ChecksumAlgorithm::Crc32C).await;
    let raw: Vec<u8> = parts[..2].iter().flat_map(|p| crc32c(p).to_be_bytes()).collect();
    let composite = b64(crc32c(&raw));
    let complete = |value: String| {
        r.client
            .complete_multipart_upload()
            .bucket(&bucket)
            .key("c")
            .upload_id(&id)
            .checksum_crc32_c(value)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done.clone()))
                    .build(),
            )
            .send()
    };
    let wrong = complete(format!("{}-2", b64(0))).await.unwrap_err();
    assert_eq!(code(&wrong), "BadDigest");
    let ok = complete(format!("{composite}-2")).await.unwrap();
    assert_eq!(ok.checksum_crc32_c(), Some(format!("{composite}-2").as_str()));
    assert_eq!(ok.checksum_type(), Some(&ChecksumType::Composite));
}
