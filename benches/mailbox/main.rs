//! The mailbox against the relay's own S3 path, in the same run, on loopback with iroh relays
//! disabled:
//!
//! ```text
//! cargo bench --bench mailbox -- [--rounds 3] [--write docs/PERFORMANCE.md]
//! ```
//!
//! One haven-relay process (embedded store) serves HTTP S3 and the tunnel. Figures, medians
//! over rounds:
//! - 1 KiB posts by 16 members at once ÷ 1 KiB S3 PUTs at c=16 over HTTP: what durable
//!   message storage costs next to durable object storage;
//! - p50 from starting a post to the online recipient receiving it, next to the p50 of one
//!   1 KiB S3 PUT (the storage it includes);
//! - 10,000 queued 1 KiB messages drained on reconnect (acknowledging each) ÷ 10,000
//!   sequential 1 KiB S3 GETs;
//! - the relay's peak RSS over the run.

#[path = "../s3/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{Client, Error};
use common::{median, peak_rss, run_concurrent, today};
use mailbox::{Delivery, MessageId, Post, PostStatus};
use process::{ACCESS_KEY, SECRET_KEY, output, spawn};
use tunnel::link::RelayLink;
use tunnel::{EndpointOptions, MailboxClient, RelayChoice, SecretKey};

const SENDERS: usize = 16;
const POSTS: usize = 4000;
const QUEUED: usize = 10_000;
const LATENCY_SAMPLES: usize = 200;

struct Round {
    posts_per_sec: f64,
    puts_per_sec: f64,
    tunnel_puts_per_sec: f64,
    cold_drain_per_sec: f64,
    delivery_p50_ms: f64,
    put_p50_ms: f64,
    drain_per_sec: f64,
    gets_per_sec: f64,
}

fn main() -> Result<(), Error> {
    let (rounds, write) = common::rounds_and_output(3)?;
    tokio::runtime::Runtime::new()?.block_on(run(rounds, write))
}

fn direct_only() -> EndpointOptions {
    EndpointOptions {
        relay: RelayChoice::Disabled,
        bind: Some("127.0.0.1:0".parse().expect("address")),
        bind_also: None,
        relay_ca: Vec::new(),
    }
}

async fn mail_client(key: &SecretKey, link: &RelayLink) -> Result<MailboxClient, Error> {
    let endpoint = tunnel::endpoint::bind(key.clone(), &direct_only(), Vec::new()).await?;
    Ok(MailboxClient::connect(endpoint, link.endpoint_addr()).await?)
}

fn post_to(to: &SecretKey, payload: &Bytes) -> Post {
    Post {
        id: MessageId::random(),
        hops: 0,
        lifetime_days: 0,
        recipients: vec![*to.public().as_bytes()],
        payload: payload.clone(),
    }
}

async fn run(rounds: usize, write: Option<PathBuf>) -> Result<(), Error> {
    let scratch = tempfile::Builder::new().prefix("haven-mailbox-bench-").tempdir()?;
    let senders: Vec<SecretKey> = (0..SENDERS).map(|_| SecretKey::generate()).collect();
    let (bob, carol) = (SecretKey::generate(), SecretKey::generate());
    let circle = tunnel::link::CircleLink {
        circle: tunnel::link::CircleId([2; 16]),
        members: senders.iter().chain([&bob, &carol]).map(|k| k.public()).collect(),
    }
    .to_string();
    let data = scratch.path().join("relay");
    let unlimited = (u32::MAX / 2).to_string();
    let args = [
        "run",
        "--s3-addr",
        "127.0.0.1:0",
        "--link",
        &circle,
        "--data-dir",
        data.to_str().ok_or("non-UTF-8 temp path")?,
        "--iroh-relay",
        "disabled",
        "--iroh-addr",
        "127.0.0.1:0",
        "--mailbox-posts-per-minute",
        &unlimited,
        "--mailbox-queue-messages",
        &unlimited,
        "--mailbox-queue-bytes",
        &unlimited,
    ];
    let (mut relay, lines) = spawn(&args, &["S3 endpoint:", "relay link:"])?;
    let http: SocketAddr = lines[0].trim_start_matches("http://").trim_end_matches('/').parse()?;
    let link: RelayLink = lines[1].parse()?;
    let mut s3 = Client::new(http, ACCESS_KEY, SECRET_KEY);
    s3.create_bucket("bench").await?;
    // The same S3 PUTs through `connect`, which pays the tunnel's QUIC as the mailbox does.
    let member_dir = scratch.path().join("member");
    let connect_args = [
        "connect",
        &lines[1],
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        member_dir.to_str().ok_or("non-UTF-8 temp path")?,
        "--iroh-relay",
        "disabled",
        "--iroh-addr",
        "127.0.0.1:0",
    ];
    let connect_id = output(&["id", "--data-dir", member_dir.to_str().ok_or("non-UTF-8 temp path")?])?;
    let members_file = data.join("members.json");
    let mut members: serde_json::Value = serde_json::from_slice(&std::fs::read(&members_file)?)?;
    members["members"]
        .as_array_mut()
        .ok_or("members.json has no list")?
        .push(connect_id.trim().into());
    std::fs::write(&members_file, serde_json::to_vec(&members)?)?;
    tokio::time::sleep(Duration::from_secs(1)).await; // the relay re-reads members.json
    let (_connect, connect_lines) = spawn(&connect_args, &["S3 endpoint:"])?;
    let tunnelled = Client::new(
        connect_lines[0]
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()?,
        ACCESS_KEY,
        SECRET_KEY,
    );
    let mut clients = Vec::new();
    for key in &senders {
        clients.push(Arc::new(mail_client(key, &link).await?));
    }
    let kib = Bytes::from(vec![0x5a; 1024]);

    let mut results = Vec::new();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        // 1. Posts by 16 at once, and PUTs at c=16; alternating which goes first.
        let mut posts_per_sec = 0.0;
        let mut puts_per_sec = 0.0;
        for posts_first in if round % 2 == 0 { [true, false] } else { [false, true] } {
            if posts_first {
                posts_per_sec = post_batch(&clients, &bob, &kib, POSTS).await?;
                eprintln!("  posts/s {posts_per_sec:.0}");
            } else {
                let (s3, body) = (s3.clone(), kib.clone());
                let took = run_concurrent(QUEUED, 16, move |i| {
                    let (s3, body) = (s3.clone(), body.clone());
                    async move { s3.put("bench", &format!("{round}/{i}"), body).await }
                })
                .await?;
                puts_per_sec = QUEUED as f64 / took.as_secs_f64();
            }
        }
        drain(&bob, &link, POSTS).await?;
        let tunnel_puts_per_sec = {
            let (s3, body) = (tunnelled.clone(), kib.clone());
            let took = run_concurrent(POSTS, 16, move |i| {
                let (s3, body) = (s3.clone(), body.clone());
                async move { s3.put("bench", &format!("tunnel/{round}/{i}"), body).await }
            })
            .await?;
            POSTS as f64 / took.as_secs_f64()
        };

        // 2. Post → delivery to an online recipient, one at a time; and one PUT at a time.
        let bob_client = mail_client(&bob, &link).await?;
        let mut inbox = bob_client.inbox().await?;
        expect_empty(&mut inbox).await?;
        let mut delivery = Vec::new();
        for _ in 0..LATENCY_SAMPLES {
            let p = post_to(&bob, &kib);
            let started = Instant::now();
            let status = clients[0].post(&p).await?;
            if status != PostStatus::Stored {
                return Err(format!("post answered {status}").into());
            }
            loop {
                match inbox.next().await? {
                    Some(Delivery::Message { id, .. }) if id == p.id => break,
                    Some(Delivery::Empty) => {}
                    other => return Err(format!("unexpected {other:?}").into()),
                }
            }
            delivery.push(started.elapsed().as_secs_f64() * 1000.0);
            inbox.ack(p.id).await?;
        }
        inbox.close().await?;
        let mut put_latency = Vec::new();
        for i in 0..LATENCY_SAMPLES {
            let started = Instant::now();
            s3.put("bench", &format!("latency/{i}"), kib.clone()).await?;
            put_latency.push(started.elapsed().as_secs_f64() * 1000.0);
        }

        // 3. 10,000 queued for carol, drained on reconnect; 10,000 sequential GETs.
        post_batch(&clients, &carol, &kib, QUEUED).await?;
        let drain_per_sec = QUEUED as f64 / drain(&carol, &link, QUEUED).await?.as_secs_f64();
        let started = Instant::now();
        for i in 0..QUEUED {
            let got = s3.get("bench", &format!("{round}/{i}")).await?;
            if got != 1024 {
                return Err(format!("GET returned {got} bytes").into());
            }
        }
        let gets_per_sec = QUEUED as f64 / started.elapsed().as_secs_f64();

        // 4. The same after a restart: nothing in memory, every message read from the store.
        post_batch(&clients, &carol, &kib, QUEUED).await?;
        drop(relay);
        let (restarted, lines) = spawn(&args, &["S3 endpoint:", "relay link:"])?;
        relay = restarted;
        // A new HTTP port (port 0); the tunnel's port is remembered, so the link holds.
        let http: SocketAddr = lines[0].trim_start_matches("http://").trim_end_matches('/').parse()?;
        s3 = Client::new(http, ACCESS_KEY, SECRET_KEY);
        // The members reconnect too: their old connections died with the relay, and the first
        // post on each would wait out the idle timeout inside the next round's figure.
        clients.clear();
        for key in &senders {
            clients.push(Arc::new(mail_client(key, &link).await?));
        }
        let cold_drain_per_sec = QUEUED as f64 / drain(&carol, &link, QUEUED).await?.as_secs_f64();
        results.push(Round {
            posts_per_sec,
            puts_per_sec,
            tunnel_puts_per_sec,
            cold_drain_per_sec,
            delivery_p50_ms: median(delivery),
            put_p50_ms: median(put_latency),
            drain_per_sec,
            gets_per_sec,
        });
    }
    let rss = peak_rss(relay.0.id())?;
    let markdown = report(&results, rss);
    println!("{markdown}");
    if let Some(path) = write {
        common::write_section(&path, "mailbox", &markdown)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `count` 1 KiB posts to `to`, spread over every sender at once; posts per second.
async fn post_batch(clients: &[Arc<MailboxClient>], to: &SecretKey, body: &Bytes, count: usize) -> Result<f64, Error> {
    let clients: Arc<Vec<Arc<MailboxClient>>> = Arc::new(clients.to_vec());
    let to = to.clone();
    let body = body.clone();
    let n = clients.len();
    let took = run_concurrent(count, n, move |i| {
        let (client, p) = (clients[i % n].clone(), post_to(&to, &body));
        async move {
            match client.post(&p).await? {
                PostStatus::Stored => Ok(()),
                other => Err(format!("post answered {other}").into()),
            }
        }
    })
    .await?;
    Ok(count as f64 / took.as_secs_f64())
}

/// Connects as `who`, receives and acknowledges `count` messages; the time from opening
/// the inbox to the last one.
async fn drain(who: &SecretKey, link: &RelayLink, count: usize) -> Result<Duration, Error> {
    let client = mail_client(who, link).await?;
    let started = Instant::now();
    let mut inbox = client.inbox().await?;
    let mut got = 0;
    while got < count {
        match inbox.next().await? {
            Some(Delivery::Message { id, payload }) => {
                if payload.len() != 1024 {
                    return Err("a message came back with the wrong size".into());
                }
                inbox.ack(id).await?;
                got += 1;
            }
            Some(Delivery::Empty) => return Err(format!("the queue ran empty after {got} of {count}").into()),
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    let took = started.elapsed();
    inbox.close().await?;
    Ok(took)
}

async fn expect_empty(inbox: &mut tunnel::InboxStream) -> Result<(), Error> {
    match inbox.next().await? {
        Some(Delivery::Empty) => Ok(()),
        other => Err(format!("expected an empty queue, got {other:?}").into()),
    }
}

fn report(rounds: &[Round], relay_rss: u64) -> String {
    let m = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let yes = |ok: bool| if ok { "yes" } else { "**no**" };
    let vs_http = m(&|r| r.posts_per_sec / r.puts_per_sec);
    let vs_tunnel = m(&|r| r.posts_per_sec / r.tunnel_puts_per_sec);
    let warm = m(&|r| r.drain_per_sec / r.gets_per_sec);
    let cold = m(&|r| r.cold_drain_per_sec / r.gets_per_sec);
    let mut out = format!(
        "Measured {} on {} cores, medians of {} rounds, embedded store, iroh relays disabled (loopback).\n\n\
         | figure | mailbox | peer | mailbox ÷ peer | target | met |\n|---|---:|---:|---:|---|---|\n",
        today(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rounds.len(),
    );
    out.push_str(&format!(
        "| 1 KiB posts/s by 16 members at once, vs 1 KiB S3 PUTs/s at c=16 over HTTP | {:.0} | {:.0} | {vs_http:.2}× | ≥ 0.8× | {} |\n",
        m(&|r| r.posts_per_sec),
        m(&|r| r.puts_per_sec),
        yes(vs_http >= 0.8),
    ));
    out.push_str(&format!(
        "| the same, vs 1 KiB S3 PUTs/s at c=16 through `connect` (QUIC too) | {:.0} | {:.0} | {vs_tunnel:.2}× | — | — |\n",
        m(&|r| r.posts_per_sec),
        m(&|r| r.tunnel_puts_per_sec),
    ));
    out.push_str(&format!(
        "| 10,000 queued 1 KiB drained on reconnect (msgs/s), vs 10,000 sequential GETs/s | {:.0} | {:.0} | {warm:.1}× | ≥ 10× | {} |\n",
        m(&|r| r.drain_per_sec),
        m(&|r| r.gets_per_sec),
        yes(warm >= 10.0),
    ));
    out.push_str(&format!(
        "| the same right after a relay restart (every payload read from the store) | {:.0} | {:.0} | {cold:.1}× | ≥ 10× | {} |\n",
        m(&|r| r.cold_drain_per_sec),
        m(&|r| r.gets_per_sec),
        yes(cold >= 10.0),
    ));
    out.push_str(&format!(
        "| p50 post → delivery to an online member (ms), vs p50 of one 1 KiB PUT | {:.2} | {:.2} | {:.2}× | reported | — |\n",
        m(&|r| r.delivery_p50_ms),
        m(&|r| r.put_p50_ms),
        m(&|r| r.delivery_p50_ms / r.put_p50_ms),
    ));
    out.push_str(&format!(
        "| relay peak RSS over the run, 10,000 messages queued at a time (MiB) | {:.1} | — | — | reported | — |\n",
        relay_rss as f64 / (1024.0 * 1024.0),
    ));
    out
}
