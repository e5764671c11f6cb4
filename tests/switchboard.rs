//! The switchboard over real iroh endpoints on loopback: two members whose endpoints know only
//! the relay's address (so they cannot dial each other) talk through a pipe.

mod common;

use std::time::Duration;

use common::TestRelay;
use common::tunnel::{direct_only, relay_for, relay_for_with, relay_link};
use sha2::{Digest, Sha256};
use tunnel::switch::{CallStatus, Pipe, SwitchClient};
use tunnel::{SecretKey, TunnelError};

async fn switch(key: &SecretKey, relay: &TestRelay) -> Result<SwitchClient, TunnelError> {
    let endpoint = tunnel::endpoint::bind(key.clone(), &direct_only(), Vec::new()).await?;
    SwitchClient::connect(endpoint, relay_link(relay).endpoint_addr()).await
}

/// Two members of a circle on one relay, each with its switchboard connection open.
struct Two {
    alice: SecretKey,
    bob: SecretKey,
    relay: TestRelay,
    a: SwitchClient,
    b: SwitchClient,
}

async fn two_members() -> Two {
    two_members_with(|_| {}).await
}

async fn two_members_with(tweak: impl FnOnce(&mut haven_relay::RelayConfig)) -> Two {
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let relay = relay_for_with(&[alice.public(), bob.public()], tweak).await;
    let (a, b) = (
        switch(&alice, &relay).await.unwrap(),
        switch(&bob, &relay).await.unwrap(),
    );
    Two {
        alice,
        bob,
        relay,
        a,
        b,
    }
}

fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) as u8)
        .collect()
}

fn status(e: TunnelError) -> CallStatus {
    match e {
        TunnelError::CallFailed(s) => s,
        other => panic!("expected a call status, got {other}"),
    }
}

/// Sends `data` and finishes while hashing everything that comes back until the far end
/// finishes.
async fn exchange(pipe: &mut Pipe, data: &[u8]) -> sha2::digest::Output<Sha256> {
    let Pipe { send, recv, .. } = pipe;
    let sending = async {
        for chunk in data.chunks(1 << 20) {
            send.write_all(chunk).await.unwrap();
        }
        send.finish().unwrap();
    };
    let receiving = async {
        let mut h = Sha256::new();
        while let Some(c) = recv.read_chunk(1 << 20).await.unwrap() {
            h.update(&c);
        }
        h.finalize()
    };
    let ((), got) = tokio::join!(sending, receiving);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_at_once_arrive_intact() {
    let Two {
        alice,
        bob,
        relay: _relay,
        a,
        b,
    } = two_members().await;
    let (up, down) = (bytes(64 << 20, 1), bytes(64 << 20, 2));
    let (want_up, want_down) = (Sha256::digest(&up), Sha256::digest(&down));
    let alice_id = alice.public();
    let callee = tokio::spawn(async move {
        let call = b.next_call().await.unwrap();
        assert_eq!(call.caller, alice_id, "the relay says who calls");
        let mut pipe = call.accept().await.unwrap();
        let got = exchange(&mut pipe, &down).await;
        (got, b, pipe) // kept until the caller is done too
    });
    let mut pipe = a.call(bob.public()).await.unwrap();
    assert_eq!(exchange(&mut pipe, &up).await, want_down);
    assert_eq!(callee.await.unwrap().0, want_up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_pass_between_the_two_ends() {
    let Two {
        alice: _alice,
        bob,
        relay: _relay,
        a,
        b,
    } = two_members().await;
    let callee = tokio::spawn(async move {
        let mut pipe = b.next_call().await.unwrap().accept().await.unwrap();
        let got = pipe.recv_datagram().await.unwrap();
        pipe.send_datagram(&[got.as_ref(), b" back"].concat()).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        got
    });
    let mut pipe = a.call(bob.public()).await.unwrap();
    // Datagrams may be lost: send until one comes back.
    let back = loop {
        pipe.send_datagram(b"ping").unwrap();
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(200), pipe.recv_datagram()).await {
            break d;
        }
    };
    assert_eq!(back.as_ref(), b"ping back");
    assert_eq!(callee.await.unwrap().as_ref(), b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_cannot_connect_get_a_clear_answer_at_once() {
    let (alice, bob, carol) = (SecretKey::generate(), SecretKey::generate(), SecretKey::generate());
    let outsider = SecretKey::generate();
    let relay = relay_for(&[alice.public(), bob.public(), carol.public()]).await;
    let a = switch(&alice, &relay).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(status(a.call(bob.public()).await.err().unwrap()), CallStatus::Offline);
    assert_eq!(
        status(a.call(outsider.public()).await.err().unwrap()),
        CallStatus::NotAMember
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Carol is online and refuses.
    let c = switch(&carol, &relay).await.unwrap();
    tokio::spawn(async move { c.next_call().await.unwrap().refuse().await });
    assert_eq!(status(a.call(carol.public()).await.err().unwrap()), CallStatus::Refused);
    // A non-member cannot even reach the switchboard.
    let stranger = switch(&outsider, &relay).await;
    let refused = match stranger {
        Err(e) => Err(e),
        Ok(s) => s.call(alice.public()).await.map(|_| ()),
    };
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_cuts_its_pipes() {
    let Two {
        alice,
        bob,
        relay,
        a,
        b,
    } = two_members().await;
    let callee = tokio::spawn(async move {
        let mut pipe = b.next_call().await.unwrap().accept().await.unwrap();
        let mut total = 0usize;
        loop {
            match pipe.recv.read_chunk(1 << 16).await {
                Ok(Some(c)) => total += c.len(),
                Ok(None) => return Ok(total),
                Err(e) => return Err(e),
            }
        }
    });
    let mut pipe = a.call(bob.public()).await.unwrap();
    pipe.send.write_all(b"hello").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tunnel::members::save(relay.dir.path(), &[alice.public()].into_iter().collect()).unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(5), callee)
        .await
        .expect("cut within seconds");
    assert!(cut.unwrap().is_err(), "bob's end is cut, not finished");
    let mut buf = [0u8; 1];
    let alice_end = tokio::time::timeout(Duration::from_secs(5), pipe.recv.read(&mut buf)).await;
    assert!(!matches!(alice_end, Ok(Ok(Some(_)))), "alice's end ends too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_pipes_at_once() {
    let Two {
        alice: _alice,
        bob,
        relay,
        a,
        b,
    } = two_members().await;
    let callee = tokio::spawn(async move {
        let mut served = Vec::new();
        for _ in 0..16 {
            let call = b.next_call().await.unwrap();
            served.push(tokio::spawn(async move {
                let mut pipe = call.accept().await.unwrap();
                // Echo.
                let Pipe { send, recv, .. } = &mut pipe;
                while let Some(c) = recv.read_chunk(1 << 16).await.unwrap() {
                    send.write_chunk(c).await.unwrap();
                }
                send.finish().unwrap();
                let _ = send.stopped().await;
            }));
        }
        for s in served {
            s.await.unwrap();
        }
    });
    let a = std::sync::Arc::new(a);
    let mut calls = Vec::new();
    for i in 0..16u32 {
        let (a, bob) = (a.clone(), bob.public());
        calls.push(tokio::spawn(async move {
            let data = bytes(1 << 20, i);
            let mut pipe = a.call(bob).await.unwrap();
            assert_eq!(exchange(&mut pipe, &data).await, Sha256::digest(&data));
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    callee.await.unwrap();
    // Once they are closed their places are free again: the next call is rung (and refused).
    let b2 = switch(&bob, &relay).await.unwrap();
    tokio::spawn(async move { b2.next_call().await.unwrap().refuse().await });
    assert_eq!(status(a.call(bob.public()).await.err().unwrap()), CallStatus::Refused);
}

/// Found by a hostile member: unanswered rings took the callee's pipe places (anyone could
/// lock a member out for 30 s at a time), and pipes whose other end died kept theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_rings_and_dead_ends_lock_nobody_out() {
    let (alice, bob, carol) = (SecretKey::generate(), SecretKey::generate(), SecretKey::generate());
    let relay = relay_for(&[alice.public(), bob.public(), carol.public()]).await;
    let b = std::sync::Arc::new(switch(&bob, &relay).await.unwrap());
    let c = std::sync::Arc::new(switch(&carol, &relay).await.unwrap());
    // Carol rings bob 16 times and he answers none of them (yet).
    let mut rings = Vec::new();
    for _ in 0..16 {
        let (c, bob) = (c.clone(), bob.public());
        rings.push(tokio::spawn(async move { c.call(bob).await.map(|_| ()) }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Bob can still place calls of his own, and alice's call still rings him.
    let a = std::sync::Arc::new(switch(&alice, &relay).await.unwrap());
    let a_answers = {
        let a = a.clone();
        tokio::spawn(async move { a.next_call().await.unwrap().refuse().await })
    };
    assert_eq!(status(b.call(alice.public()).await.err().unwrap()), CallStatus::Refused);
    a_answers.await.unwrap();
    // Bob now takes the 16 calls; carol's side dies with all 16 pipes open.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(b.next_call().await.unwrap().accept().await.unwrap());
    }
    for r in rings {
        r.await.unwrap().unwrap();
    }
    drop(c);
    // Within seconds bob's places are back: a new call from alice is rung again.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while std::time::Instant::now() < deadline {
        let b2 = b.clone();
        let answer = tokio::spawn(async move {
            if let Ok(Ok(call)) = tokio::time::timeout(Duration::from_secs(2), b2.next_call()).await {
                call.refuse().await;
            }
        });
        let outcome = a.call(bob.public()).await.err().map(status);
        let _ = answer.await;
        if outcome == Some(CallStatus::Refused) {
            return;
        }
        last = outcome;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("bob is still locked out: {last:?}");
}

/// The newest switchboard connection of a node wins: the older one is closed, and its
/// `next_call` ends with that reason instead of dialling again and fighting the newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_connection_of_a_node_wins_and_the_older_does_not_fight_back() {
    let Two { bob, relay, a, b, .. } = two_members().await;
    let newer = switch(&bob, &relay).await.unwrap();
    let older = tokio::time::timeout(Duration::from_secs(5), b.next_call()).await;
    assert!(
        matches!(older, Ok(Err(TunnelError::Superseded))),
        "{:?}",
        older.map(|r| r.map(|c| c.caller))
    );
    // Calls ring the newer connection, and keep doing so.
    let answer = tokio::spawn(async move { newer.next_call().await.unwrap().refuse().await });
    assert_eq!(status(a.call(bob.public()).await.err().unwrap()), CallStatus::Refused);
    answer.await.unwrap();
}

/// The operator's limits: fewer pipes per member than the default, and a byte rate that
/// slows a member's pipe (everything still arrives) and drops its datagrams beyond it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_limits_pipes_and_bytes_per_member() {
    const RATE: u32 = 128 * 1024;
    let Two {
        bob,
        a,
        b,
        relay: _relay,
        ..
    } = two_members_with(|c| {
        c.switchboard = tunnel::SwitchLimits {
            pipes_per_member: 2,
            bytes_per_second: std::num::NonZeroU32::new(RATE),
        }
    })
    .await;
    let b = std::sync::Arc::new(b);
    let callee = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut pipes = Vec::new();
            for _ in 0..2 {
                pipes.push(b.next_call().await.unwrap().accept().await.unwrap());
            }
            pipes
        })
    };
    let mut first = a.call(bob.public()).await.unwrap();
    let _second = a.call(bob.public()).await.unwrap();
    assert_eq!(
        status(a.call(bob.public()).await.err().unwrap()),
        CallStatus::TooManyPipes
    );
    let mut at_bob = callee.await.unwrap();
    let mut first_at_bob = at_bob.swap_remove(if at_bob[0].id == first.id { 0 } else { 1 });

    // Four seconds' worth: one second of burst, then at most RATE a second.
    let data = bytes(4 * RATE as usize, 7);
    let started = std::time::Instant::now();
    let echo = tokio::spawn(async move {
        let got = first_at_bob.recv.read_to_end(usize::MAX).await.unwrap();
        first_at_bob.send.finish().unwrap();
        let _ = first_at_bob.send.stopped().await;
        (got, first_at_bob)
    });
    assert_eq!(exchange(&mut first, &data).await, Sha256::digest(b""));
    let (got, first_at_bob) = echo.await.unwrap();
    let took = started.elapsed();
    assert!(got == data, "every byte arrives, only later");
    assert!(took >= Duration::from_millis(2_500), "4 s of bytes passed in {took:?}");

    // Datagrams: 64 KiB offered at once against a bucket just emptied; most are dropped.
    let mut received = 0;
    for _ in 0..64 {
        first.send_datagram(&[0u8; 1024]).unwrap();
    }
    let mut first_at_bob = first_at_bob;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), first_at_bob.recv_datagram()).await {
        received += 1;
    }
    assert!(received < 64, "all 64 datagrams passed a {RATE} B/s limit");
}

/// A process that only places calls (`pipe --to`) does not take the place of the same node's
/// process that takes them (`pipe --accept`): both work at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_only_calls_leaves_its_own_callee_reachable() {
    let Two {
        alice,
        bob,
        relay,
        a,
        b,
    } = two_members().await;
    let endpoint = tunnel::endpoint::bind(bob.clone(), &direct_only(), Vec::new())
        .await
        .unwrap();
    let bob_calling = SwitchClient::caller(endpoint, relay_link(&relay).endpoint_addr())
        .await
        .unwrap();
    let a_answers = tokio::spawn(async move { a.next_call().await.unwrap().refuse().await });
    assert_eq!(
        status(bob_calling.call(alice.public()).await.err().unwrap()),
        CallStatus::Refused
    );
    a_answers.await.unwrap();
    // Bob's callee connection is still the one calls ring.
    let b_answers = tokio::spawn(async move { b.next_call().await.unwrap().refuse().await });
    let endpoint = tunnel::endpoint::bind(alice.clone(), &direct_only(), Vec::new())
        .await
        .unwrap();
    let alice_calling = SwitchClient::caller(endpoint, relay_link(&relay).endpoint_addr())
        .await
        .unwrap();
    assert_eq!(
        status(alice_calling.call(bob.public()).await.err().unwrap()),
        CallStatus::Refused
    );
    tokio::time::timeout(Duration::from_secs(5), b_answers)
        .await
        .unwrap()
        .unwrap();
}
