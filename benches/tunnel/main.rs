//! The tunnel against direct HTTP to the same relay, in the same run, on loopback with iroh
//! relays disabled:
//!
//! ```text
//! cargo bench --bench tunnel -- [--rounds 5] [--write docs/PERFORMANCE.md]
//! ```
//!
//! One haven-relay process serves both its HTTP listener and the tunnel; a `haven-relay
//! connect` process forwards a local port over the tunnel. The same client (the S3 bench's)
//! drives both addresses, alternating each round; figures are medians and ratios
//! tunnel ÷ direct. Also reported: the `connect` process's peak RSS, the time from
//! starting `connect` to the first successful request through it, and what decoding
//! chunk-signed uploads (restic's, the Java SDKs') costs through the tunnel: the same 32 MiB
//! PUTs framed as `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` ÷ sent plain.
//!
//! The tunnel's physical limit on this machine is not direct HTTP served from the page cache
//! but a raw iroh stream between two processes: each round also sends 64 MiB over one
//! bi-stream from this process to a peer process (this bench started again with `--peer`),
//! and the large S3 transfers through `connect` are reported as a ratio to it. Both are timed
//! in CPU too: a 32 MiB PUT through `connect` keeps three processes busy (the client,
//! `connect`, the relay, which also hashes and writes), the raw stream two, so on a machine
//! whose cores are all in use the PUT's best share of the raw stream is the ratio of their CPU
//! per byte; that limit is printed next to the figure.

// Shared with the S3 bench; listing is not used here.
#[path = "../s3/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/iroh_peer.rs"]
#[allow(dead_code)]
mod iroh_peer;
#[path = "../common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{Client, Error};
use common::{cpu_times, median, peak_rss, per_gib, run_concurrent, today};
use process::{ACCESS_KEY, SECRET_KEY, output, spawn};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// What the raw iroh baseline sends each round.
const RAW_BYTES: usize = 64 * MIB;
/// Through `connect`, the large transfers' share of a raw iroh stream's rate.
const RAW_TARGET: f64 = 0.8;

struct Workload {
    label: &'static str,
    size: usize,
    count: usize,
    concurrency: usize,
    put: bool,
    target: f64,
}

const WORKLOADS: [Workload; 6] = [
    Workload {
        label: "64 KiB PUT, c=1 (ops/s)",
        size: 64 * KIB,
        count: 400,
        concurrency: 1,
        put: true,
        target: 0.7,
    },
    Workload {
        label: "64 KiB GET, c=1 (ops/s)",
        size: 64 * KIB,
        count: 400,
        concurrency: 1,
        put: false,
        target: 0.7,
    },
    Workload {
        label: "64 KiB PUT, c=16 (ops/s)",
        size: 64 * KIB,
        count: 3000,
        concurrency: 16,
        put: true,
        target: 0.9,
    },
    Workload {
        label: "64 KiB GET, c=16 (ops/s)",
        size: 64 * KIB,
        count: 3000,
        concurrency: 16,
        put: false,
        target: 0.9,
    },
    Workload {
        label: "32 MiB PUT, c=4 (MiB/s)",
        size: 32 * MIB,
        count: 16,
        concurrency: 4,
        put: true,
        target: 0.85,
    },
    Workload {
        label: "32 MiB GET, c=4 (MiB/s)",
        size: 32 * MIB,
        count: 16,
        concurrency: 4,
        put: false,
        target: 0.85,
    },
];

fn main() -> Result<(), Error> {
    iroh_peer::run_if_peer();
    let (rounds, write) = common::rounds_and_output(5)?;
    tokio::runtime::Runtime::new()?.block_on(run(rounds, write))
}

async fn run(rounds: usize, write: Option<PathBuf>) -> Result<(), Error> {
    let scratch = tempfile::Builder::new().prefix("haven-tunnel-bench-").tempdir()?;
    let relay_dir = scratch.path().join("relay");
    let client_dir = scratch.path().join("client");
    let member = output(&["id", "--data-dir", path_str(&client_dir)?])?;
    let circle = tunnel::link::CircleLink {
        circle: tunnel::link::CircleId([1; 16]),
        members: vec![member.trim().parse()?],
    }
    .to_string();
    let tunnel_flags = ["--iroh-relay", "disabled", "--iroh-addr", "127.0.0.1:0"];

    let mut relay_args = vec!["run", "--s3-addr", "127.0.0.1:0", "--link", &circle, "--data-dir"];
    relay_args.push(path_str(&relay_dir)?);
    relay_args.extend(tunnel_flags);
    let (relay, lines) = spawn(&relay_args, &["S3 endpoint:", "relay link:"])?;
    let direct = parse_addr(&lines[0])?;
    let relay_link = lines[1].clone();

    let started = Instant::now();
    let mut connect_args = vec!["connect", &relay_link, "--listen", "127.0.0.1:0", "--data-dir"];
    connect_args.push(path_str(&client_dir)?);
    connect_args.extend(tunnel_flags);
    let (connect, lines) = spawn(&connect_args, &["S3 endpoint:"])?;
    let tunnelled = parse_addr(&lines[0])?;
    let via_tunnel = Client::new(tunnelled, ACCESS_KEY, SECRET_KEY);
    via_tunnel.create_bucket("bench").await?;
    let first_request = started.elapsed();
    let via_http = Client::new(direct, ACCESS_KEY, SECRET_KEY);
    let peer = iroh_peer::spawn_peer(&iroh::SecretKey::generate(), None)?;
    let raw_endpoint =
        tunnel::endpoint::bind(iroh::SecretKey::generate(), &iroh_peer::loopback_options(), Vec::new()).await?;
    let mut raw = Vec::new();
    // CPU seconds per GiB, each round: the large PUT through `connect` (client, `connect`,
    // relay) and the raw stream (sender, receiver).
    let mut cpu: Vec<([f64; 3], [f64; 2])> = Vec::new();
    let me = std::process::id();

    let mut ratios: Vec<Vec<(f64, f64)>> = WORKLOADS.iter().map(|_| Vec::new()).collect();
    let mut chunked: Vec<(f64, f64)> = Vec::new();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let mut put_cpu = [0.0; 3];
        for (i, w) in WORKLOADS.iter().enumerate() {
            let body = Bytes::from(vec![0x5a; w.size]);
            // Alternate which path goes first, so neither always meets a warmer cache.
            let order = if round % 2 == 0 {
                [&via_http, &via_tunnel]
            } else {
                [&via_tunnel, &via_http]
            };
            let mut figures = [0.0; 2];
            for client in order {
                let slot = if std::ptr::eq(client, &via_http) { 0 } else { 1 };
                let timed = w.put && w.size >= MIB && slot == 1;
                let pids = [me, connect.0.id(), relay.0.id()];
                let before = cpu_times(pids)?;
                figures[slot] = measure(client, w, &body).await?;
                if timed {
                    put_cpu = per_gib(before, cpu_times(pids)?, w.count * w.size);
                }
            }
            ratios[i].push((figures[0], figures[1]));
        }
        chunked.push(chunked_vs_plain(&via_tunnel, round).await?);
        let (mut send, mut recv) = iroh_peer::direct_stream(&raw_endpoint, &peer.addr).await?;
        let before = cpu_times([me, peer.pid()])?;
        let took = iroh_peer::bulk(&mut send, &mut recv, RAW_BYTES).await?;
        let raw_cpu = per_gib(before, cpu_times([me, peer.pid()])?, RAW_BYTES);
        raw.push(RAW_BYTES as f64 / MIB as f64 / took.as_secs_f64());
        cpu.push((put_cpu, raw_cpu));
    }
    let connect_rss = peak_rss(connect.0.id())?;
    let mut markdown = report(rounds, &ratios, connect_rss, first_request);
    markdown.push_str(&chunked_report(&chunked));
    markdown.push_str(&raw_report(&ratios, &raw));
    markdown.push_str(&cpu_report(&ratios, &raw, &cpu));
    println!("{markdown}");
    if let Some(path) = write {
        common::write_section(&path, "tunnel", &markdown)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Ops/s for small objects, MiB/s for large ones.
async fn measure(client: &Client, w: &Workload, body: &Bytes) -> Result<f64, Error> {
    let prefix = format!("{}-{}", w.size, w.concurrency);
    let elapsed = if w.put {
        let (client, body) = (client.clone(), body.clone());
        run_concurrent(w.count, w.concurrency, move |i| {
            let (client, body, key) = (client.clone(), body.clone(), format!("{prefix}/{i}"));
            async move { client.put("bench", &key, body).await }
        })
        .await?
    } else {
        let (client, size) = (client.clone(), w.size as u64);
        run_concurrent(w.count, w.concurrency, move |i| {
            let (client, key) = (client.clone(), format!("{prefix}/{i}"));
            async move {
                let got = client.get("bench", &key).await?;
                if got == size {
                    Ok(())
                } else {
                    Err(format!("got {got} bytes").into())
                }
            }
        })
        .await?
    };
    let secs = elapsed.as_secs_f64();
    Ok(if w.size >= MIB {
        (w.count * w.size) as f64 / MIB as f64 / secs
    } else {
        w.count as f64 / secs
    })
}

/// 32 MiB PUTs at c=4 through `connect`, plain and aws-chunked (64 KiB chunks, as minio-go
/// frames them), alternating which goes first; MiB/s of payload for each.
async fn chunked_vs_plain(client: &Client, round: usize) -> Result<(f64, f64), Error> {
    const SIZE: usize = 32 * MIB;
    const COUNT: usize = 16;
    let plain = Bytes::from(vec![0x5a; SIZE]);
    let framed = Bytes::from(gateway::chunked::encode_for_tests(&plain, 64 * KIB, None));
    let mut figures = [0.0; 2];
    for chunked in if round.is_multiple_of(2) {
        [false, true]
    } else {
        [true, false]
    } {
        let (client, plain, framed) = (client.clone(), plain.clone(), framed.clone());
        let elapsed = run_concurrent(COUNT, 4, move |i| {
            let (client, plain, framed) = (client.clone(), plain.clone(), framed.clone());
            async move {
                if chunked {
                    client
                        .put_aws_chunked("bench", &format!("chunked/{i}"), framed, SIZE)
                        .await
                } else {
                    client.put("bench", &format!("plain/{i}"), plain).await
                }
            }
        })
        .await?;
        figures[usize::from(chunked)] = (COUNT * SIZE) as f64 / MIB as f64 / elapsed.as_secs_f64();
    }
    Ok((figures[0], figures[1]))
}

fn chunked_report(rounds: &[(f64, f64)]) -> String {
    let plain = median(rounds.iter().map(|r| r.0).collect());
    let chunked = median(rounds.iter().map(|r| r.1).collect());
    let ratio = median(rounds.iter().map(|r| r.1 / r.0).collect());
    format!(
        "\n| through `connect`, 32 MiB PUT, c=4 | plain | aws-chunked, decoded by the relay | chunked ÷ plain |\n\
         |---|---:|---:|---:|\n\
         | MiB/s of payload | {plain:.0} | {chunked:.0} | {ratio:.2}× |\n"
    )
}

/// The large S3 transfers through `connect` as a share of a raw iroh stream measured in the
/// same rounds.
fn raw_report(figures: &[Vec<(f64, f64)>], raw: &[f64]) -> String {
    let raw_median = median(raw.to_vec());
    let mut out = format!(
        "\n| the tunnel's physical limit | MiB/s | share of the raw stream | target | met |\n\
         |---|---:|---:|---|---|\n\
         | raw iroh stream between two processes, {} MiB one way | {raw_median:.0} | — | — | — |\n",
        RAW_BYTES / MIB
    );
    for (w, rounds) in WORKLOADS.iter().zip(figures) {
        if w.size < MIB {
            continue;
        }
        let tunnel = median(rounds.iter().map(|r| r.1).collect());
        let share = median(rounds.iter().zip(raw).map(|(r, raw)| r.1 / raw).collect());
        let met = if share >= RAW_TARGET { "yes" } else { "**no**" };
        out.push_str(&format!(
            "| {} through `connect` | {tunnel:.0} | {share:.2}× | ≥ {RAW_TARGET}× | {met} |\n",
            w.label
        ));
    }
    out
}

/// Where a large PUT through `connect` spends its CPU, against the raw stream, and the best
/// share of the raw stream the PUT can have when the cores, not the tunnel, are the limit.
fn cpu_report(figures: &[Vec<(f64, f64)>], raw: &[f64], cpu: &[([f64; 3], [f64; 2])]) -> String {
    let put = |i: usize| median(cpu.iter().map(|c| c.0[i]).collect());
    let stream = |i: usize| median(cpu.iter().map(|c| c.1[i]).collect());
    let (client, connect, relay) = (put(0), put(1), put(2));
    let (sender, receiver) = (stream(0), stream(1));
    let limit = (sender + receiver) / (client + connect + relay);
    let Some(large_put) = WORKLOADS.iter().position(|w| w.put && w.size >= MIB) else {
        return String::new();
    };
    let share = median(figures[large_put].iter().zip(raw).map(|(r, raw)| r.1 / raw).collect());
    format!(
        "\n| CPU seconds per GiB | client / sender | `connect` | relay / receiver | all |\n\
         |---|---:|---:|---:|---:|\n\
         | 32 MiB PUT, c=4, through `connect` | {client:.2} | {connect:.2} | {relay:.2} | {:.2} |\n\
         | raw iroh stream | {sender:.2} | — | {receiver:.2} | {:.2} |\n\n\
         With every core busy, the PUT's best share of the raw stream is the raw stream's CPU per byte \
         over the PUT's: {limit:.2}× here. The PUT reaches {share:.2}×, {:.0} % of that.\n",
        client + connect + relay,
        sender + receiver,
        100.0 * share / limit,
    )
}

fn report(rounds: usize, figures: &[Vec<(f64, f64)>], connect_rss: u64, first_request: Duration) -> String {
    let mut out = format!(
        "Measured {} on {} cores, medians of {rounds} rounds, iroh relays disabled (direct loopback path).\n\n\
         | figure | direct HTTP | through `connect` | tunnel ÷ direct | target | met |\n|---|---:|---:|---:|---|---|\n",
        today(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for (w, rounds) in WORKLOADS.iter().zip(figures) {
        let direct = median(rounds.iter().map(|r| r.0).collect());
        let tunnel = median(rounds.iter().map(|r| r.1).collect());
        let ratio = median(rounds.iter().map(|r| r.1 / r.0).collect());
        let met = if ratio >= w.target { "yes" } else { "**no**" };
        out.push_str(&format!(
            "| {} | {direct:.0} | {tunnel:.0} | {ratio:.2}× | ≥ {}× | {met} |\n",
            w.label, w.target
        ));
    }
    let rss_mib = connect_rss as f64 / MIB as f64;
    let met = if rss_mib <= 48.0 { "yes" } else { "**no**" };
    out.push_str(&format!(
        "| `connect` peak RSS (MiB) | — | {rss_mib:.1} | — | ≤ 48 MB | {met} |\n"
    ));
    out.push_str(&format!(
        "| `connect` start → first successful request (ms) | — | {} | — | reported | — |\n",
        first_request.as_millis()
    ));
    out
}

fn parse_addr(url: &str) -> Result<SocketAddr, Error> {
    Ok(url.trim_start_matches("http://").trim_end_matches('/').parse()?)
}

fn path_str(path: &Path) -> Result<&str, Error> {
    path.to_str().ok_or_else(|| "non-UTF-8 temp path".into())
}
