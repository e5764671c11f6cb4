//! Mailbox races and abuse found by trying it as a hostile member: writes finishing out of
//! order under a live inbox, a retry racing its first attempt, inboxes and posts that never
//! finish.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::TestRelay;
use common::tunnel::{direct_only, relay_for, relay_link};
use mailbox::{Delivery, MessageId, Post, PostStatus};
use tunnel::{MailboxClient, SecretKey, TunnelError};

async fn client(key: &SecretKey, relay: &TestRelay) -> Result<MailboxClient, TunnelError> {
    let endpoint = tunnel::endpoint::bind(key.clone(), &direct_only(), Vec::new()).await?;
    MailboxClient::connect(endpoint, relay_link(relay).endpoint_addr()).await
}

fn post(to: &SecretKey, payload: Vec<u8>) -> Post {
    Post {
        id: MessageId::random(),
        hops: 0,
        lifetime_days: 0,
        recipients: vec![*to.public().as_bytes()],
        payload: payload.into(),
    }
}

/// Large and tiny posts from eight members at once finish storing out of order; a live
/// inbox must still get every one of them (a cursor over acceptance order skipped slow ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_inbox_misses_nothing_when_writes_finish_out_of_order() {
    let keys: Vec<SecretKey> = (0..9).map(|_| SecretKey::generate()).collect();
    let relay = relay_for(&keys.iter().map(|k| k.public()).collect::<Vec<_>>()).await;
    let bob = keys[8].clone();
    let bob_client = client(&bob, &relay).await.unwrap();
    let mut inbox = bob_client.inbox().await.unwrap();
    assert_eq!(inbox.next().await.unwrap(), Some(Delivery::Empty));
    let mut posters = Vec::new();
    for (s, key) in keys[..8].iter().enumerate() {
        let c = client(key, &relay).await.unwrap();
        let bob = bob.clone();
        posters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..10usize {
                let len = if (s + i) % 2 == 0 { 600_000 } else { 2 };
                let p = post(&bob, vec![i as u8; len]);
                assert_eq!(c.post(&p).await.unwrap(), PostStatus::Stored);
                ids.push(p.id);
            }
            ids
        }));
    }
    let mut sent = BTreeSet::new();
    for p in posters {
        sent.extend(p.await.unwrap());
    }
    let mut got = BTreeSet::new();
    while got.len() < sent.len() {
        match tokio::time::timeout(Duration::from_secs(10), inbox.next()).await {
            Ok(Ok(Some(Delivery::Message { id, .. }))) => {
                got.insert(id);
                inbox.ack(id).await.unwrap();
            }
            Ok(Ok(Some(Delivery::Empty))) => {}
            other => panic!("the live inbox stalled with {} of {}: {other:?}", got.len(), sent.len()),
        }
    }
    assert_eq!(got, sent);
}

/// Three sends of one message id at once (a retry racing the first attempt): one stores it,
/// the others are told `duplicate` only once it is stored, and it is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_of_one_id_store_it_once_and_say_duplicate_only_when_true() {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let relay = relay_for(&[alice.public(), bob.public()]).await;
    let c = std::sync::Arc::new(client(&alice, &relay).await.unwrap());
    let p = post(&bob, vec![9; 900_000]);
    let tries: Vec<_> = (0..3)
        .map(|_| {
            let (c, p) = (c.clone(), p.clone());
            tokio::spawn(async move { c.post(&p).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tries {
        answers.push(t.await.unwrap());
    }
    answers.sort_by_key(|s| *s as u8);
    assert_eq!(
        answers,
        [PostStatus::Stored, PostStatus::Duplicate, PostStatus::Duplicate]
    );
    let inbox_client = client(&bob, &relay).await.unwrap();
    let mut inbox = inbox_client.inbox().await.unwrap();
    let mut got = Vec::new();
    loop {
        match inbox.next().await.unwrap() {
            Some(Delivery::Message { id, payload }) => got.push((id, payload)),
            Some(Delivery::Empty) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got.len(), 1);
    assert!(got[0].0 == p.id && got[0].1 == vec![9u8; 900_000]);
}

/// A member that opens inboxes and never reads them cannot make the relay hold one inbox's
/// worth of messages per stream: each newer inbox ends the older one, read or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_inbox_is_ended_when_a_newer_one_opens() {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let relay = relay_for(&[alice.public(), bob.public()]).await;
    let sender = client(&alice, &relay).await.unwrap();
    for i in 0..20u8 {
        assert_eq!(
            sender.post(&post(&bob, vec![i; 900_000])).await.unwrap(),
            PostStatus::Stored
        );
    }
    let bob_client = client(&bob, &relay).await.unwrap();
    let mut stale: Vec<_> = Vec::new();
    for _ in 0..5 {
        stale.push(bob_client.inbox().await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut current = bob_client.inbox().await.unwrap();
    let mut fresh = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), current.next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(Delivery::Message { .. }) => fresh += 1,
            Some(Delivery::Empty) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fresh, 20, "the newest inbox gets everything");
    // Every older one ends (told, or cut off) instead of waiting for its reader forever.
    for mut old in stale {
        let ended = async {
            loop {
                match old.next().await {
                    Ok(Some(Delivery::Message { .. } | Delivery::Empty)) => continue,
                    _ => return,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("an older inbox ended");
    }
}

/// Posts that start and never finish are limited per member: past the limit a new one is
/// answered at once, without its payload being read, and a finished post still goes through
/// once the stalled ones are given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_that_never_finish_are_limited_per_member() {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let relay = relay_for(&[alice.public(), bob.public()]).await;
    let endpoint = tunnel::endpoint::bind(alice.clone(), &direct_only(), Vec::new())
        .await
        .unwrap();
    let conn = endpoint
        .connect(relay_link(&relay).endpoint_addr(), tunnel::MAILBOX_ALPN)
        .await
        .unwrap();
    let whole = post(&bob, vec![1; 1000]).encode();
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&whole[..whole.len() - 10]).await.unwrap(); // never the end
        stalled.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let _ = send.write_all(&whole).await;
    let _ = send.finish();
    let mut status = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), recv.read_exact(&mut status))
        .await
        .expect("answered at once")
        .unwrap();
    assert_eq!(PostStatus::from_byte(status[0]), Some(PostStatus::RateLimited));
    drop(stalled);
    let c = client(&alice, &relay).await.unwrap();
    let mut answer = PostStatus::RateLimited;
    for _ in 0..50 {
        answer = c.post(&post(&bob, b"through".to_vec())).await.unwrap();
        if answer == PostStatus::Stored {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, PostStatus::Stored);
}
