//! Expiry and what the mailbox remembers, on the embedded store with a clock the test moves.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use backends::fs::FsStore;
use backends::{ListQuery, Store};
use bytes::Bytes;
use mailbox::{Limits, Mailbox, ManualClock, MessageId, NodeId, Post, PostStatus};

const DAY: i64 = 24 * 60 * 60;
/// 2026-11-30 10:00 UTC.
const START: i64 = 20_787 * DAY + 10 * 3600;

fn post(to: &[NodeId], lifetime_days: u16, payload: &'static [u8]) -> Post {
    Post {
        id: MessageId::random(),
        hops: 0,
        lifetime_days,
        recipients: to.to_vec(),
        payload: Bytes::from_static(payload),
    }
}

async fn open(dir: &std::path::Path, clock: &ManualClock) -> (Arc<dyn Store>, Arc<Mailbox>) {
    let store: Arc<dyn Store> = Arc::new(FsStore::open(dir).await.unwrap());
    let mailbox = Mailbox::open(store.clone(), Limits::default(), Arc::new(clock.clone()))
        .await
        .unwrap();
    (store, mailbox)
}

fn pending(mailbox: &Mailbox, member: NodeId) -> Vec<MessageId> {
    let mut inbox = mailbox.open_inbox(member);
    mailbox
        .next_for(&mut inbox, None, 100)
        .into_iter()
        .map(|q| q.id)
        .collect()
}

async fn keys(store: &Arc<dyn Store>) -> Vec<String> {
    let query = ListQuery {
        prefix: String::new(),
        delimiter: None,
        start_after: None,
        max_keys: 1000,
    };
    let page = store.list_objects(mailbox::BUCKET, &query).await.unwrap();
    page.objects.into_iter().map(|o| o.key).collect()
}

const ANYONE: fn(&NodeId) -> bool = |_| true;

#[tokio::test]
async fn a_message_is_delivered_through_its_expiry_day_never_after_and_deleted_the_day_after() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(START);
    let (store, mailbox) = open(dir.path(), &clock).await;
    let (alice, bob) = ([1u8; 32], [2u8; 32]);
    let p = post(&[bob], 1, b"soon gone");
    assert_eq!(mailbox.post(&alice, p.clone(), ANYONE).await, PostStatus::Stored);

    // Expiry day = tomorrow; still deliverable in its last second.
    clock.set(START - 10 * 3600 + 2 * DAY - 1);
    assert_eq!(pending(&mailbox, bob), vec![p.id]);
    assert_eq!(mailbox.sweep().await.unwrap(), 0);
    // The day after: never delivered again, but only deleted within the next 24 hours.
    clock.advance(Duration::from_secs(2));
    assert!(pending(&mailbox, bob).is_empty());
    assert_eq!(mailbox.post(&alice, p.clone(), ANYONE).await, PostStatus::Duplicate);
    clock.advance(Duration::from_secs(DAY as u64));
    assert_eq!(mailbox.sweep().await.unwrap(), 1);
    assert!(keys(&store).await.is_empty(), "{:?}", keys(&store).await);
    assert_eq!(mailbox.stats().bytes, 0);
}

#[tokio::test]
async fn only_days_are_stored_not_arrival_times() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(START);
    let (store, mailbox) = open(dir.path(), &clock).await;
    let (alice, bob, carol) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let p = post(&[bob, carol], 500, b"when?");
    assert_eq!(mailbox.post(&alice, p.clone(), ANYONE).await, PostStatus::Stored);
    mailbox.ack(&bob, p.id).await.unwrap();
    let stored = keys(&store).await;
    assert_eq!(stored.len(), 2, "the message and bob's acknowledgement: {stored:?}");
    for key in &stored {
        let meta = store.head_object(mailbox::BUCKET, key).await.unwrap();
        assert_eq!(meta.last_modified_ms, 0, "{key}");
        let header = meta.attrs.user_metadata.get("mailbox").cloned().unwrap_or_default();
        // The longest lifetime is 120 days: the expiry day is the only date kept.
        assert!(!header.contains(&START.to_string()));
        if key.starts_with("p/") {
            assert!(header.starts_with(&format!("1 {} 0 ", 20_787 + 120)), "{header}");
        }
    }
    // Nor in the files' times: every file under the store's mailbox bucket is dated 1970.
    let mut files = vec![dir.path().to_path_buf()];
    let mut checked = 0;
    while let Some(d) = files.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                files.push(path);
            } else if path.to_string_lossy().contains(mailbox::BUCKET) && path.extension().is_none() {
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                if modified == UNIX_EPOCH {
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 2, "message files dated 1970: {checked}");
    // The sender appears nowhere.
    let alice_hex: String = alice.iter().map(|b| format!("{b:02x}")).collect();
    for key in keys(&store).await {
        let meta = store.head_object(mailbox::BUCKET, &key).await.unwrap();
        assert!(!key.contains(&alice_hex) && !format!("{meta:?}").contains(&alice_hex));
    }
}

#[tokio::test]
async fn a_reopened_mailbox_remembers_who_has_acknowledged_what_and_which_ids_were_seen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(START);
    let (alice, bob, carol) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let (both, just_bob) = (post(&[bob, carol], 0, b"both"), post(&[bob], 3, b"bob"));
    {
        let (_, mailbox) = open(dir.path(), &clock).await;
        assert_eq!(mailbox.post(&alice, both.clone(), ANYONE).await, PostStatus::Stored);
        assert_eq!(mailbox.post(&alice, just_bob.clone(), ANYONE).await, PostStatus::Stored);
        mailbox.ack(&bob, both.id).await.unwrap();
        mailbox.ack(&bob, just_bob.id).await.unwrap();
    }
    let (store, mailbox) = open(dir.path(), &clock).await;
    assert!(pending(&mailbox, bob).is_empty());
    assert_eq!(pending(&mailbox, carol), vec![both.id]);
    assert_eq!(
        mailbox.post(&alice, just_bob.clone(), ANYONE).await,
        PostStatus::Duplicate
    );
    assert_eq!(mailbox.post(&alice, both.clone(), ANYONE).await, PostStatus::Duplicate);
    mailbox.ack(&carol, both.id).await.unwrap();
    mailbox.settled().await;
    let left = keys(&store).await;
    // Only receipts remain (three batches: each acknowledgement came alone), no payload.
    assert!(
        left.iter().all(|k| k.starts_with("r/")),
        "only receipts remain: {left:?}"
    );
    assert_eq!(left.len(), 3);
    // A new message after the reopen sorts after the old ones.
    let later = post(&[carol], 0, b"later");
    assert_eq!(mailbox.post(&alice, later.clone(), ANYONE).await, PostStatus::Stored);
    assert_eq!(pending(&mailbox, carol), vec![later.id]);
    // Once their days are over (plus the random day of grace) the ids go too.
    clock.advance(Duration::from_secs(32 * DAY as u64));
    mailbox.sweep().await.unwrap();
    assert!(keys(&store).await.is_empty());
    assert_eq!(mailbox.post(&alice, just_bob, ANYONE).await, PostStatus::Stored);
}
