//! Acknowledgements are group-committed into receipt batches, and a delivered message's
//! payload is deleted in the background: what a crash in between leaves behind is repaired
//! when the mailbox opens again. On the embedded store, as the relay runs it.

use std::sync::Arc;

use backends::fs::FsStore;
use backends::{ListQuery, Store};
use bytes::Bytes;
use mailbox::{Limits, Mailbox, MessageId, NodeId, Post, PostStatus, SystemClock};

const ALICE: NodeId = [1; 32];
const BOB: NodeId = [2; 32];

fn post(payload: &'static [u8]) -> Post {
    Post {
        id: MessageId::random(),
        hops: 0,
        lifetime_days: 0,
        recipients: vec![BOB],
        payload: Bytes::from_static(payload),
    }
}

async fn open(dir: &std::path::Path) -> (Arc<dyn Store>, Arc<Mailbox>) {
    let store: Arc<dyn Store> = Arc::new(FsStore::open(dir).await.unwrap());
    let mailbox = Mailbox::open(store.clone(), Limits::default(), Arc::new(SystemClock))
        .await
        .unwrap();
    (store, mailbox)
}

async fn keys(store: &Arc<dyn Store>, prefix: &str) -> Vec<String> {
    let query = ListQuery {
        prefix: prefix.into(),
        delimiter: None,
        start_after: None,
        max_keys: 1000,
    };
    let page = store.list_objects(mailbox::BUCKET, &query).await.unwrap();
    page.objects.into_iter().map(|o| o.key).collect()
}

fn pending(mailbox: &Mailbox) -> usize {
    let mut inbox = mailbox.open_inbox(BOB);
    mailbox.next_for(&mut inbox, None, 1000).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_that_arrive_together_share_a_batch_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mailbox) = open(dir.path()).await;
    let mut ids = Vec::new();
    for _ in 0..64 {
        let p = post(b"sealed");
        assert_eq!(mailbox.post(&ALICE, p.clone(), |_| true).await, PostStatus::Stored);
        ids.push(p.id);
    }
    let acks = ids.iter().map(|id| mailbox.ack(&BOB, *id));
    for acked in futures::future::join_all(acks).await {
        acked.unwrap();
    }
    mailbox.settled().await;
    let batches = keys(&store, "r/").await;
    assert!(
        batches.len() < 32,
        "64 acknowledgements at once took {} store writes",
        batches.len()
    );
    assert!(keys(&store, "p/").await.is_empty(), "every payload deleted");
    drop((store, mailbox));

    let (_store, mailbox) = open(dir.path()).await;
    assert_eq!(pending(&mailbox), 0, "nothing comes again");
    for id in ids {
        let again = Post { id, ..post(b"sealed") };
        assert_eq!(mailbox.post(&ALICE, again, |_| true).await, PostStatus::Duplicate);
    }
}

/// The process dies after the receipt is durable and before the payload is deleted (the
/// runtime is dropped with the deletion still queued): the next open deletes the payload and
/// never delivers the message again.
#[test]
fn a_crash_between_the_receipt_and_the_deletion_is_repaired_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = post(b"delivered just before the crash");
    {
        let first_life = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        first_life.block_on(async {
            let (store, mailbox) = open(dir.path()).await;
            assert_eq!(mailbox.post(&ALICE, p.clone(), |_| true).await, PostStatus::Stored);
            mailbox.ack(&BOB, p.id).await.unwrap();
            assert_eq!(keys(&store, "r/").await.len(), 1, "the receipt is durable");
            assert_eq!(keys(&store, "p/").await.len(), 1, "the payload is not deleted yet");
        });
        // Dropping the runtime drops the janitor with the deletion still queued.
    }
    let second_life = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second_life.block_on(async {
        let (store, mailbox) = open(dir.path()).await;
        assert_eq!(pending(&mailbox), 0);
        assert!(keys(&store, "p/").await.is_empty(), "the payload is deleted on open");
        assert_eq!(mailbox.post(&ALICE, p, |_| true).await, PostStatus::Duplicate);
    });
}
