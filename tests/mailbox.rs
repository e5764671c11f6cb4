//! The mailbox over real iroh endpoints on loopback: members post sealed messages for each
//! other through the relay and receive them when they connect.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::TestRelay;
use common::tunnel::{direct_only, relay_for, relay_for_with, relay_link};
use mailbox::{Delivery, MessageId, Post, PostStatus};
use tunnel::{InboxStream, MailboxClient, SecretKey, TunnelError};

async fn client(key: &SecretKey, relay: &TestRelay) -> Result<MailboxClient, TunnelError> {
    let endpoint = tunnel::endpoint::bind(key.clone(), &direct_only(), Vec::new()).await?;
    MailboxClient::connect(endpoint, relay_link(relay).endpoint_addr()).await
}

fn post(to: &[&SecretKey], payload: &[u8]) -> Post {
    Post {
        id: MessageId::random(),
        hops: 0,
        lifetime_days: 0,
        recipients: to.iter().map(|k| *k.public().as_bytes()).collect(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// Everything up to the first `Empty`, without acknowledging.
async fn until_empty(inbox: &mut InboxStream) -> Vec<(MessageId, Bytes)> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), inbox.next())
            .await
            .expect("the relay answers")
        {
            Ok(Some(Delivery::Message { id, payload })) => got.push((id, payload)),
            Ok(Some(Delivery::Empty)) => return got,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Receives and acknowledges everything queued for `key`.
async fn drain(key: &SecretKey, relay: &TestRelay) -> Vec<(MessageId, Bytes)> {
    let c = client(key, relay).await.unwrap();
    let mut inbox = c.inbox().await.unwrap();
    let got = until_empty(&mut inbox).await;
    for (id, _) in &got {
        inbox.ack(*id).await.unwrap();
    }
    inbox.close().await.unwrap();
    got
}

fn payloads(got: &[(MessageId, Bytes)]) -> Vec<&[u8]> {
    got.iter().map(|(_, p)| p.as_ref()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_an_offline_member_across_a_restart_and_are_gone_once_acknowledged() {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let relay = relay_for(&[alice.public(), bob.public()]).await;
    let sender = client(&alice, &relay).await.unwrap();
    for i in 0..5u8 {
        assert_eq!(
            sender.post(&post(&[&bob], &[i; 100])).await.unwrap(),
            PostStatus::Stored
        );
    }
    drop(sender);
    let relay = relay.restart().await;

    // Bob connects, takes three and drops the connection before acknowledging the rest.
    {
        let c = client(&bob, &relay).await.unwrap();
        let mut inbox = c.inbox().await.unwrap();
        let got = until_empty(&mut inbox).await;
        assert_eq!(
            payloads(&got),
            (0..5u8).map(|i| [i; 100]).collect::<Vec<_>>(),
            "arrival order"
        );
        for (id, _) in &got[..3] {
            inbox.ack(*id).await.unwrap();
        }
        inbox.close().await.unwrap();
    }
    let again = drain(&bob, &relay).await;
    assert_eq!(
        payloads(&again),
        vec![[3u8; 100], [4u8; 100]],
        "unacknowledged ones come again"
    );
    assert!(drain(&bob, &relay).await.is_empty(), "acknowledged ones never do");
    let relay = relay.restart().await;
    assert!(drain(&bob, &relay).await.is_empty(), "not after a restart either");
    // Nothing is left in the store but the ids kept against repeats.
    let stats = relay.relay.mailbox().unwrap().stats();
    assert_eq!((stats.messages, stats.bytes), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_member_gets_new_messages_pushed_and_the_newest_connection_wins() {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let relay = relay_for(&[alice.public(), bob.public()]).await;
    let bob_client = client(&bob, &relay).await.unwrap();
    let mut first = bob_client.inbox().await.unwrap();
    assert!(until_empty(&mut first).await.is_empty());

    let sender = client(&alice, &relay).await.unwrap();
    assert_eq!(sender.post(&post(&[&bob], b"live")).await.unwrap(), PostStatus::Stored);
    let pushed = tokio::time::timeout(Duration::from_secs(5), first.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(pushed, Some(Delivery::Message { ref payload, .. }) if payload.as_ref() == b"live"));

    // Bob opens his inbox again (an app that reconnected its inbox): the first one is told
    // and ended, and the unacknowledged message goes to the new one.
    let mut second = bob_client.inbox().await.unwrap();
    let got = until_empty(&mut second).await;
    assert_eq!(payloads(&got), vec![b"live".as_slice()]);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), first.next())
            .await
            .unwrap()
        {
            Ok(Some(Delivery::Empty)) => continue,
            Ok(Some(Delivery::Superseded)) => break,
            other => panic!("the old inbox should be superseded, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_post_to_three_members_is_stored_once_and_reaches_each() {
    let keys: Vec<SecretKey> = (0..4).map(|_| SecretKey::generate()).collect();
    let relay = relay_for(&keys.iter().map(|k| k.public()).collect::<Vec<_>>()).await;
    let sender = client(&keys[0], &relay).await.unwrap();
    let p = post(&[&keys[1], &keys[2], &keys[3]], &[7; 5000]);
    assert_eq!(sender.post(&p).await.unwrap(), PostStatus::Stored);
    let stats = relay.relay.mailbox().unwrap().stats();
    assert_eq!((stats.messages, stats.bytes, stats.recipients_waiting), (1, 5000, 3));
    for k in &keys[1..] {
        let got = drain(k, &relay).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].0 == p.id && got[0].1 == p.payload);
    }
    assert!(
        drain(&keys[0], &relay).await.is_empty(),
        "the sender is not a recipient"
    );
    assert_eq!(relay.relay.mailbox().unwrap().stats().messages, 0);
    // The same id again is a duplicate, even after delivery: never stored or delivered twice.
    assert_eq!(sender.post(&p).await.unwrap(), PostStatus::Duplicate);
    assert!(drain(&keys[1], &relay).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_answers_with_its_own_status_and_stores_nothing() {
    let (alice, bob, carol) = (SecretKey::generate(), SecretKey::generate(), SecretKey::generate());
    let outsider = SecretKey::generate();
    let relay = relay_for_with(&[alice.public(), bob.public(), carol.public()], |cfg| {
        cfg.mailbox.max_message_bytes = 10_000;
        cfg.mailbox.max_queued_messages = 3;
        cfg.mailbox.max_queued_bytes = 25_000;
        cfg.mailbox.max_total_bytes = 50_000;
    })
    .await;
    let sender = client(&alice, &relay).await.unwrap();
    let status = |p: Post| {
        let sender = &sender;
        async move { sender.post(&p).await.unwrap() }
    };
    assert_eq!(status(post(&[&bob], &[0; 10_001])).await, PostStatus::TooLarge);
    assert_eq!(status(post(&[&bob, &outsider], b"x")).await, PostStatus::NotAMember);
    let mut hop = post(&[&bob], b"x");
    hop.hops = 3;
    assert_eq!(status(hop).await, PostStatus::HopLimit);
    let mut malformed = post(&[&bob], b"x");
    malformed.recipients.clear();
    assert_eq!(status(malformed).await, PostStatus::Malformed);
    for _ in 0..3 {
        assert_eq!(status(post(&[&bob], &[1; 8000])).await, PostStatus::Stored);
    }
    // Bob's queue is full by count (and a post to him and carol is refused whole).
    assert_eq!(status(post(&[&bob], b"x")).await, PostStatus::QueueFull);
    assert_eq!(status(post(&[&carol, &bob], b"x")).await, PostStatus::QueueFull);
    assert_eq!(status(post(&[&carol], &[2; 9000])).await, PostStatus::Stored);
    assert_eq!(status(post(&[&carol], &[2; 9000])).await, PostStatus::Stored);
    // ... and carol's by bytes: 18,000 + 9,000 > 25,000.
    assert_eq!(status(post(&[&carol], &[2; 9000])).await, PostStatus::QueueFull);
    // Alice's queue is empty, but the mailbox holds 42,000 of its 50,000 bytes.
    assert_eq!(status(post(&[&alice], &[3; 9000])).await, PostStatus::MailboxFull);
    assert_eq!(status(post(&[&alice], &[3; 8000])).await, PostStatus::Stored);
    assert_eq!(drain(&alice, &relay).await.len(), 1);
    let stats = relay.relay.mailbox().unwrap().stats();
    assert_eq!((stats.messages, stats.bytes), (5, 3 * 8000 + 2 * 9000));
    assert_eq!(drain(&carol, &relay).await.len(), 2, "nothing half-stored for carol");
    assert_eq!(drain(&bob, &relay).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_over_its_rate_is_refused_and_others_are_not() {
    let (alice, bob, carol) = (SecretKey::generate(), SecretKey::generate(), SecretKey::generate());
    let relay = relay_for_with(&[alice.public(), bob.public(), carol.public()], |cfg| {
        cfg.mailbox.posts_per_minute = 3;
    })
    .await;
    let alice_client = client(&alice, &relay).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            alice_client.post(&post(&[&bob], b"x")).await.unwrap(),
            PostStatus::Stored
        );
    }
    assert_eq!(
        alice_client.post(&post(&[&bob], b"x")).await.unwrap(),
        PostStatus::RateLimited
    );
    let carol_client = client(&carol, &relay).await.unwrap();
    assert_eq!(
        carol_client.post(&post(&[&bob], b"x")).await.unwrap(),
        PostStatus::Stored
    );
    assert_eq!(drain(&bob, &relay).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_is_refused_before_any_stream_is_read() {
    let member = SecretKey::generate();
    let relay = relay_for(&[member.public()]).await;
    let outsider = SecretKey::generate();
    let result = match client(&outsider, &relay).await {
        Err(e) => Err(e),
        Ok(c) => c.post(&post(&[&member], b"spam")).await,
    };
    // Said as a refusal (the CLI then prints the id to admit), not as a lost connection.
    assert!(matches!(result, Err(tunnel::TunnelError::Refused(_))), "{result:?}");
    assert_eq!(relay.relay.mailbox().unwrap().stats().messages, 0);
    let inbox = match client(&outsider, &relay).await {
        Err(e) => Err(e),
        Ok(c) => match c.inbox().await {
            Ok(mut inbox) => inbox.next().await.map(|_| ()),
            Err(e) => Err(e),
        },
    };
    assert!(matches!(inbox, Err(tunnel::TunnelError::Refused(_))), "{inbox:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailbox_is_invisible_to_the_s3_api() {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let relay = relay_for(&[alice.public(), bob.public()]).await;
    let sender = client(&alice, &relay).await.unwrap();
    assert_eq!(
        sender.post(&post(&[&bob], b"sealed")).await.unwrap(),
        PostStatus::Stored
    );
    let s3 = &relay.client;
    assert!(common::bucket_names(s3).await.is_empty());
    let listed = s3.list_objects_v2().bucket(mailbox::BUCKET).send().await.unwrap_err();
    assert_eq!(common::code(&listed), "NoSuchBucket");
    let made = s3.create_bucket().bucket(mailbox::BUCKET).send().await.unwrap_err();
    assert_eq!(
        common::code(&made),
        "BucketAlreadyExists",
        "the name is taken, not yours"
    );
    let put = s3
        .put_object()
        .bucket(mailbox::BUCKET)
        .key("p/0000000000000000-00000000000000000000000000000000")
        .body(Bytes::from_static(b"forged").into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::code(&put), "NoSuchBucket");
    assert_eq!(payloads(&drain(&bob, &relay).await), vec![b"sealed".as_slice()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_storage_refuses_posts_and_inboxes_with_their_own_status() {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let relay = relay_for_with(&[alice.public(), bob.public()], |cfg| cfg.no_storage = true).await;
    let sender = client(&alice, &relay).await.unwrap();
    assert_eq!(
        sender.post(&post(&[&bob], &[0; 200_000])).await.unwrap(),
        PostStatus::NoStorage
    );
    let mut inbox = client(&bob, &relay).await.unwrap().inbox().await.unwrap();
    let answer = inbox.next().await.unwrap();
    assert_eq!(answer, Some(Delivery::Refused(PostStatus::NoStorage)));
    assert!(
        relay
            .files()
            .iter()
            .all(|f| !f.starts_with(relay.dir.path().join("store")))
    );
}

/// Sixteen members post at once to one; every message arrives exactly once, in an order
/// consistent with each sender's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posters_lose_and_duplicate_nothing() {
    let keys: Vec<SecretKey> = (0..17).map(|_| SecretKey::generate()).collect();
    let relay = relay_for(&keys.iter().map(|k| k.public()).collect::<Vec<_>>()).await;
    let bob = &keys[16];
    let mut tasks = Vec::new();
    for (s, key) in keys[..16].iter().enumerate() {
        let c = client(key, &relay).await.unwrap();
        let bob_id = *bob.public().as_bytes();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u8 {
                let mut p = post(&[], &[s as u8, i]);
                p.recipients = vec![bob_id];
                assert_eq!(c.post(&p).await.unwrap(), PostStatus::Stored);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = drain(bob, &relay).await;
    assert_eq!(got.len(), 16 * 20);
    let unique: BTreeSet<&[u8]> = got.iter().map(|(_, p)| p.as_ref()).collect();
    assert_eq!(unique.len(), 16 * 20);
    for s in 0..16u8 {
        let mine: Vec<u8> = got.iter().filter(|(_, p)| p[0] == s).map(|(_, p)| p[1]).collect();
        assert_eq!(mine, (0..20).collect::<Vec<u8>>(), "sender {s}'s order");
    }
}

/// On a mirror set, messages are mirrored like objects: losing a whole backend while the
/// relay is down loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_set_that_loses_a_backend_loses_no_message() {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let backends = vec![
        backends::spec::BackendSpec::Fs(a.clone()),
        backends::spec::BackendSpec::Fs(b.clone()),
    ];
    let relay = relay_for_with(&[alice.public(), bob.public()], |cfg| {
        common::mirror_set::mirrored(cfg, backends);
    })
    .await;
    let sender = client(&alice, &relay).await.unwrap();
    let sent: Vec<Post> = (0..6u8).map(|i| post(&[&bob], &vec![i; 70_000])).collect();
    for p in &sent {
        assert_eq!(sender.post(p).await.unwrap(), PostStatus::Stored);
    }
    drop(sender);
    assert_eq!(relay.relay.mirror_status().unwrap().len(), 2);
    let relay = relay
        .reconfigure(|_| {
            std::fs::remove_dir_all(&a).unwrap();
        })
        .await;
    let got = drain(&bob, &relay).await;
    assert_eq!(got.len(), sent.len());
    for (p, (id, payload)) in sent.iter().zip(&got) {
        assert!(p.id == *id && p.payload == *payload);
    }
    // The S3 view of the mirror set shows no bucket either.
    assert!(common::bucket_names(&relay.client).await.is_empty());
}
