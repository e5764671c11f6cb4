//! Lifecycle rules and the relay-wide lifetime (`--ttl`), through aws-sdk-s3, with the
//! relay's clock moved forward by days: objects vanish from every read at their expiry
//! moment, never before the midnight after their last day, and the sweeper frees the bytes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleAndOperator, LifecycleRuleFilter, Tag, Transition, TransitionStorageClass,
};
use backends::clock::{Day, ManualClock};
use common::{TestRelay, code, list_keys, status};
use gateway::lifecycle::sweep::{Swept, sweep};

const DAY: i64 = 24 * 60 * 60;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A relay whose expiry clock starts at the real time (objects are stamped with it) and then
/// moves only when the test says.
async fn relay_with_clock(ttl: Option<&str>) -> (TestRelay, ManualClock) {
    let clock = ManualClock::at(now_secs());
    let shared = clock.clone();
    let relay = common::start_with(move |c| {
        c.clock = Arc::new(shared);
        c.ttl = ttl.map(|t| t.parse().unwrap());
        // The background sweeper stays out of the way; tests sweep by hand.
        c.expiry_sweep = Duration::from_secs(3600);
    })
    .await;
    (relay, clock)
}

fn rule(id: &str) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder().id(id).status(ExpirationStatus::Enabled)
}

fn days(n: i32) -> LifecycleExpiration {
    LifecycleExpiration::builder().days(n).build()
}

async fn put_rules(relay: &TestRelay, bucket: &str, rules: Vec<LifecycleRule>) -> Result<(), String> {
    relay
        .client
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code(&e))
}

async fn visible(relay: &TestRelay, bucket: &str, key: &str) -> bool {
    let head = relay.client.head_object().bucket(bucket).key(key).send().await;
    let get = relay.client.get_object().bucket(bucket).key(key).send().await;
    let listed = list_keys(&relay.client, bucket).await.contains(&key.to_owned());
    match (&head, &get) {
        (Ok(_), Ok(_)) => assert!(listed, "{key}: readable but not listed"),
        (Err(h), Err(g)) => {
            assert_eq!(status(h), 404, "{key}");
            assert_eq!(code(g), "NoSuchKey", "{key}");
            assert!(!listed, "{key}: listed but not readable");
        }
        _ => panic!("{key}: HEAD and GET disagree"),
    }
    head.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_read_back_as_written_and_bad_ones_get_the_s3_error() {
    let (relay, _clock) = relay_with_clock(None).await;
    let bucket = relay.bucket("rules").await;
    let missing = relay
        .client
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchLifecycleConfiguration");
    assert_eq!(status(&missing), 404);

    let written = vec![
        rule("logs")
            .filter(
                LifecycleRuleFilter::builder()
                    .and(
                        LifecycleRuleAndOperator::builder()
                            .prefix("logs/")
                            .object_size_greater_than(100)
                            .object_size_less_than(1 << 20)
                            .build(),
                    )
                    .build(),
            )
            .expiration(days(30))
            .build()
            .unwrap(),
        rule("uploads")
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(2)
                    .build(),
            )
            .build()
            .unwrap(),
    ];
    put_rules(&relay, &bucket, written.clone()).await.unwrap();
    let read = relay
        .client
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(read.rules(), written.as_slice());

    let refused = |rules: Vec<LifecycleRule>| put_rules(&relay, &bucket, rules);
    assert_eq!(
        refused(vec![rule("zero").expiration(days(0)).build().unwrap()])
            .await
            .unwrap_err(),
        "InvalidArgument"
    );
    assert_eq!(
        refused(vec![rule("forever").expiration(days(i32::MAX)).build().unwrap()])
            .await
            .unwrap_err(),
        "InvalidArgument",
        "a lifetime past any date S3 can write"
    );
    assert_eq!(
        refused(vec![rule("none").build().unwrap()]).await.unwrap_err(),
        "InvalidRequest",
        "a rule without an action"
    );
    assert_eq!(
        refused(vec![
            rule("same").expiration(days(1)).build().unwrap(),
            rule("same").expiration(days(2)).build().unwrap(),
        ])
        .await
        .unwrap_err(),
        "InvalidArgument"
    );
    let tagged = rule("tagged")
        .filter(
            LifecycleRuleFilter::builder()
                .tag(Tag::builder().key("k").value("v").build().unwrap())
                .build(),
        )
        .expiration(days(1))
        .build()
        .unwrap();
    assert_eq!(refused(vec![tagged]).await.unwrap_err(), "NotImplemented");
    let transition = rule("cold")
        .transitions(
            Transition::builder()
                .days(30)
                .storage_class(TransitionStorageClass::Glacier)
                .build(),
        )
        .build()
        .unwrap();
    assert_eq!(refused(vec![transition]).await.unwrap_err(), "NotImplemented");
    // A refused configuration changed nothing.
    let still = relay
        .client
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(still.rules(), written.as_slice());
    assert_eq!(
        put_rules(&relay, "no-such-bucket", written.clone()).await.unwrap_err(),
        "NoSuchBucket"
    );

    // Rules survive a restart; deleting them answers 204 and leaves none.
    let relay = relay.restart().await;
    let read = relay
        .client
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(read.rules(), written.as_slice());
    relay
        .client
        .delete_bucket_lifecycle()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let gone = relay
        .client
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "NoSuchLifecycleConfiguration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_expire_after_the_midnight_following_their_last_day_and_are_swept() {
    let (relay, clock) = relay_with_clock(None).await;
    let bucket = relay.bucket("expiring").await;
    put_rules(
        &relay,
        &bucket,
        vec![
            rule("tmp")
                .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
                .expiration(days(1))
                .build()
                .unwrap(),
            rule("big")
                .filter(LifecycleRuleFilter::builder().object_size_greater_than(1000).build())
                .expiration(days(3))
                .build()
                .unwrap(),
        ],
    )
    .await
    .unwrap();
    for i in 0..5 {
        relay.put(&bucket, &format!("tmp/{i}"), vec![i as u8; 10]).await;
    }
    relay.put(&bucket, "keep/small", vec![1; 10]).await;
    relay.put(&bucket, "keep/big", vec![2; 5000]).await;

    // The header says when: the midnight (UTC) after the last day, and which rule.
    let today = Day::of_secs(now_secs());
    let head = relay
        .client
        .head_object()
        .bucket(&bucket)
        .key("tmp/0")
        .send()
        .await
        .unwrap();
    let expiration = head.expiration().expect("x-amz-expiration");
    let midnight = aws_sdk_s3::primitives::DateTime::from_secs(today.plus(1).end_secs())
        .fmt(aws_sdk_s3::primitives::DateTimeFormat::HttpDate)
        .unwrap();
    assert_eq!(expiration, format!("expiry-date=\"{midnight}\", rule-id=\"tmp\""));
    let head = relay
        .client
        .head_object()
        .bucket(&bucket)
        .key("keep/small")
        .send()
        .await
        .unwrap();
    assert_eq!(head.expiration(), None);

    // A second before that midnight every object is there.
    clock.set(today.plus(1).end_secs() - 1);
    for key in ["tmp/0", "tmp/4", "keep/small", "keep/big"] {
        assert!(visible(&relay, &bucket, key).await, "{key} expired early");
    }
    assert_eq!(sweep(relay.relay.lifecycle()).await.unwrap(), Swept::default());

    // A day after it, the tmp/ objects are gone from every read, but their bytes wait for
    // the sweeper. A copy of one finds nothing either.
    clock.set(today.plus(2).end_secs());
    for i in 0..5 {
        assert!(!visible(&relay, &bucket, &format!("tmp/{i}")).await);
    }
    let copy = relay
        .client
        .copy_object()
        .bucket(&bucket)
        .key("copied")
        .copy_source(format!("{bucket}/tmp/1"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&copy), "NoSuchKey");
    assert!(visible(&relay, &bucket, "keep/small").await);
    assert!(visible(&relay, &bucket, "keep/big").await, "3 days for big objects");
    let files_before = relay.files().len();
    let swept = sweep(relay.relay.lifecycle()).await.unwrap();
    assert_eq!(swept.objects, 5);
    assert!(relay.files().len() < files_before, "the sweep deleted files");

    // Pages of one still list every visible object, past the swept and the expired.
    clock.set(today.plus(4).end_secs() + DAY);
    assert!(!visible(&relay, &bucket, "keep/big").await);
    assert_eq!(
        common::list_keys_paged(&relay.client, &bucket, 1).await,
        vec!["keep/small"]
    );
    assert_eq!(sweep(relay.relay.lifecycle()).await.unwrap().objects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_wide_ttl_applies_where_a_bucket_has_no_rules() {
    let (relay, clock) = relay_with_clock(Some("2d")).await;
    let plain = relay.bucket("plain").await;
    let ruled = relay.bucket("ruled").await;
    put_rules(&relay, &ruled, vec![rule("long").expiration(days(10)).build().unwrap()])
        .await
        .unwrap();
    relay.put(&plain, "a", "sealed-a").await;
    relay.put(&ruled, "b", "sealed-b").await;
    let today = Day::of_secs(now_secs());
    clock.set(today.plus(2).end_secs() - 1);
    assert!(visible(&relay, &plain, "a").await);
    clock.set(today.plus(3).end_secs());
    assert!(!visible(&relay, &plain, "a").await);
    assert!(
        visible(&relay, &ruled, "b").await,
        "the bucket's own rule wins over --ttl"
    );

    // An expired object does not stop a create-only write, and the fresh object lives (the
    // store stamps it with the real time, so the clock goes back to it).
    relay
        .client
        .put_object()
        .bucket(&plain)
        .key("a")
        .if_none_match("*")
        .body(b"sealed-a2".to_vec().into())
        .send()
        .await
        .unwrap();
    clock.set(now_secs());
    assert_eq!(relay.get(&plain, "a").await, b"sealed-a2");

    // A bucket holding nothing but expired objects can be deleted.
    relay.put(&plain, "old", "x").await;
    clock.set(today.plus(6).end_secs());
    relay
        .client
        .delete_object()
        .bucket(&plain)
        .key("a")
        .send()
        .await
        .unwrap();
    relay.client.delete_bucket().bucket(&plain).send().await.unwrap();
    assert!(!common::bucket_names(&relay.client).await.contains(&plain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_uploads_are_aborted_after_their_rules_days() {
    let (relay, clock) = relay_with_clock(None).await;
    let bucket = relay.bucket("uploads").await;
    put_rules(
        &relay,
        &bucket,
        vec![
            rule("abort")
                .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(1)
                        .build(),
                )
                .build()
                .unwrap(),
        ],
    )
    .await
    .unwrap();
    let part = common::blob(1000, 1);
    let (doomed, _) = common::upload_parts(&relay.client, &bucket, "tmp/x", std::slice::from_ref(&part)).await;
    let (kept, _) = common::upload_parts(&relay.client, &bucket, "keep/y", std::slice::from_ref(&part)).await;
    let today = Day::of_secs(now_secs());
    clock.set(today.plus(1).end_secs() - 1);
    assert_eq!(sweep(relay.relay.lifecycle()).await.unwrap().uploads, 0);
    clock.set(today.plus(2).end_secs());
    assert_eq!(sweep(relay.relay.lifecycle()).await.unwrap().uploads, 1);
    let left = relay
        .client
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = left.uploads().iter().filter_map(|u| u.upload_id()).collect();
    assert_eq!(ids, vec![kept.as_str()]);
    assert!(!ids.contains(&doomed.as_str()));
}

/// The sweeper runs by itself: with a short interval, expired bytes go without a hand sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweeper_deletes_expired_bytes() {
    let clock = ManualClock::at(now_secs());
    let shared = clock.clone();
    let relay = common::start_with(move |c| {
        c.clock = Arc::new(shared);
        c.ttl = Some("1d".parse().unwrap());
        c.expiry_sweep = Duration::from_millis(200);
    })
    .await;
    let bucket = relay.bucket("swept").await;
    relay.put(&bucket, "k", vec![7; 100]).await;
    let files_with_object = relay.files().len();
    clock.set(Day::of_secs(now_secs()).plus(2).end_secs());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while relay.files().len() >= files_with_object {
        assert!(std::time::Instant::now() < deadline, "the sweeper never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing left to sweep.
    assert_eq!(sweep(relay.relay.lifecycle()).await.unwrap(), Swept::default());
}
