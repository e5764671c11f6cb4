//! The switchboard against a direct iroh stream between the same two processes, in the same
//! run, on loopback with iroh relays disabled:
//!
//! ```text
//! cargo bench --bench switchboard -- [--rounds 5] [--write docs/PERFORMANCE.md]
//! ```
//!
//! A `haven-relay run --no-storage` process is the switchboard; a peer process (this bench
//! started again with `--peer`) is member B, reachable both directly and through the relay;
//! this process is member A. Each round, alternating which goes first: 64 MiB one way
//! (A sends, B counts), and 200 round trips of a 64-byte message, once over a stream dialled
//! straight to B and once over a pipe through the relay. Then 16 pipes at once move 16 MiB
//! each while the relay's resident memory is sampled.

// Shared with the other benches; not every helper is used here.
#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "../common/iroh_peer.rs"]
mod iroh_peer;
#[path = "../common/process.rs"]
#[allow(dead_code)]
mod process;

use std::path::PathBuf;
use std::time::Duration;

use common::{cpu_times, median, per_gib, rss, today};
use iroh::SecretKey;
use iroh_peer::{bulk, direct_stream, loopback_options, round_trips, spawn_peer};
use process::{Error, spawn};
use tunnel::switch::SwitchClient;

const MIB: usize = 1024 * 1024;
const BULK: usize = 64 * MIB;
const MESSAGE: usize = 64;
const TRIPS: usize = 200;
const PIPES: usize = 16;
const PER_PIPE: usize = 16 * MIB;

/// One round's figures: MiB/s and p50 round trip, direct and through the relay, and the CPU
/// seconds per GiB each process spent on the 64 MiB (`[sender, relay, receiver]`).
#[derive(Default)]
struct Round {
    direct_mib_s: f64,
    pipe_mib_s: f64,
    direct_rtt: Duration,
    pipe_rtt: Duration,
    direct_cpu: [f64; 3],
    pipe_cpu: [f64; 3],
}

fn main() -> Result<(), Error> {
    iroh_peer::run_if_peer();
    let (rounds, write) = common::rounds_and_output(5)?;
    tokio::runtime::Runtime::new()?.block_on(run(rounds, write))
}

async fn run(rounds: usize, write: Option<PathBuf>) -> Result<(), Error> {
    let scratch = tempfile::Builder::new().prefix("haven-switch-bench-").tempdir()?;
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let circle = tunnel::link::CircleLink {
        circle: tunnel::link::CircleId([2; 16]),
        members: vec![alice.public(), bob.public()],
    }
    .to_string();
    let dir = scratch.path().to_str().ok_or("non-UTF-8 temp path")?;
    let relay_args = [
        "run",
        "--no-storage",
        "--link",
        &circle,
        "--data-dir",
        dir,
        "--iroh-relay",
        "disabled",
        "--iroh-addr",
        "127.0.0.1:0",
    ];
    let (relay, lines) = spawn(&relay_args, &["relay link:"])?;
    let link: tunnel::link::RelayLink = lines[0].parse()?;
    let peer = spawn_peer(&bob, Some(&lines[0]))?;
    let endpoint = tunnel::endpoint::bind(alice, &loopback_options(), Vec::new()).await?;
    let switch = SwitchClient::connect(endpoint.clone(), link.endpoint_addr()).await?;

    let pids = [std::process::id(), relay.0.id(), peer.pid()];
    let mut figures = Vec::new();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let mut r = Round::default();
        // Alternate which path goes first, so neither always meets a warmer machine.
        for through_relay in if round % 2 == 0 { [false, true] } else { [true, false] } {
            let (mib_s, cpu, mut trips) = if through_relay {
                let mut pipe = switch.call(bob.public()).await?;
                let before = cpu_times(pids)?;
                let took = bulk(&mut pipe.send, &mut pipe.recv, BULK).await?;
                let cpu = per_gib(before, cpu_times(pids)?, BULK);
                let mut pipe = switch.call(bob.public()).await?;
                let trips = round_trips(&mut pipe.send, &mut pipe.recv, MESSAGE, TRIPS).await?;
                (BULK as f64 / MIB as f64 / took.as_secs_f64(), cpu, trips)
            } else {
                let (mut send, mut recv) = direct_stream(&endpoint, &peer.addr).await?;
                let before = cpu_times(pids)?;
                let took = bulk(&mut send, &mut recv, BULK).await?;
                let cpu = per_gib(before, cpu_times(pids)?, BULK);
                let (mut send, mut recv) = direct_stream(&endpoint, &peer.addr).await?;
                let trips = round_trips(&mut send, &mut recv, MESSAGE, TRIPS).await?;
                (BULK as f64 / MIB as f64 / took.as_secs_f64(), cpu, trips)
            };
            trips.sort();
            let p50 = trips[trips.len() / 2];
            if through_relay {
                (r.pipe_mib_s, r.pipe_rtt, r.pipe_cpu) = (mib_s, p50, cpu);
            } else {
                (r.direct_mib_s, r.direct_rtt, r.direct_cpu) = (mib_s, p50, cpu);
            }
        }
        figures.push(r);
    }
    let memory = sixteen_pipes(&switch, bob.public(), relay.0.id()).await?;
    let markdown = report(rounds, &figures, memory);
    println!("{markdown}");
    if let Some(path) = write {
        common::write_section(&path, "switchboard", &markdown)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The relay's resident memory before, and at its highest while 16 pipes move 16 MiB each
/// at once (sampled every 10 ms), in bytes.
async fn sixteen_pipes(switch: &SwitchClient, bob: iroh::EndpointId, relay_pid: u32) -> Result<(u64, u64), Error> {
    let idle = rss(relay_pid)?;
    let mut pipes = Vec::new();
    for _ in 0..PIPES {
        pipes.push(switch.call(bob).await?);
    }
    let transfers = futures::future::try_join_all(
        pipes
            .iter_mut()
            .map(|pipe| bulk(&mut pipe.send, &mut pipe.recv, PER_PIPE)),
    );
    tokio::pin!(transfers);
    let mut highest = idle;
    let mut sample = tokio::time::interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            done = &mut transfers => {
                done?;
                break;
            }
            _ = sample.tick() => highest = highest.max(rss(relay_pid)?),
        }
    }
    Ok((idle, highest))
}

fn report(rounds: usize, figures: &[Round], (idle, highest): (u64, u64)) -> String {
    let direct = median(figures.iter().map(|r| r.direct_mib_s).collect());
    let pipe = median(figures.iter().map(|r| r.pipe_mib_s).collect());
    let ratio = median(figures.iter().map(|r| r.pipe_mib_s / r.direct_mib_s).collect());
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let direct_rtt = median(figures.iter().map(|r| micros(r.direct_rtt)).collect());
    let pipe_rtt = median(figures.iter().map(|r| micros(r.pipe_rtt)).collect());
    let rtt_ratio = median(
        figures
            .iter()
            .map(|r| micros(r.pipe_rtt) / micros(r.direct_rtt))
            .collect(),
    );
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    let (idle_mib, highest_mib) = (idle as f64 / MIB as f64, highest as f64 / MIB as f64);
    let growth = highest_mib - idle_mib;
    let moved = (PIPES * PER_PIPE / MIB) as f64;
    let cpu = |pick: fn(&Round) -> [f64; 3], i: usize| median(figures.iter().map(|r| pick(r)[i]).collect());
    let (d_send, d_recv) = (cpu(|r| r.direct_cpu, 0), cpu(|r| r.direct_cpu, 2));
    let (p_send, p_relay, p_recv) = (cpu(|r| r.pipe_cpu, 0), cpu(|r| r.pipe_cpu, 1), cpu(|r| r.pipe_cpu, 2));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = format!(
        "Measured {} on {cores} cores, medians of {rounds} rounds, iroh relays disabled (direct loopback \
         paths). Both paths run between the same two processes; the pipe goes A → relay process → B.\n\n\
         | figure | direct iroh stream A → B | pipe through the relay | pipe ÷ direct | target | met |\n\
         |---|---:|---:|---:|---|---|\n\
         | 64 MiB one way (MiB/s) | {direct:.0} | {pipe:.0} | {ratio:.2}× | ≥ 0.5× | {} |\n\
         | round trip of a {MESSAGE}-byte message, p50 of {TRIPS} (µs) | {direct_rtt:.0} | {pipe_rtt:.0} | {rtt_ratio:.2}× | ≤ 2× | {} |\n\n\
         | relay resident memory | MiB |\n|---|---:|\n\
         | idle, pipes closed | {idle_mib:.1} |\n\
         | highest while {PIPES} pipes move {} MiB each at once ({moved:.0} MiB in all) | {highest_mib:.1} |\n\
         | growth (target: flat, ≤ 32 MiB whatever is moved) | {growth:.1} ({}) |\n",
        today(),
        met(ratio >= 0.5),
        met(rtt_ratio <= 2.0),
        PER_PIPE / MIB,
        met(growth <= 32.0),
    );
    // Where the pipe's time goes: each hop decrypts and encrypts every byte once more.
    out.push_str(&format!(
        "\n| CPU seconds per GiB of the 64 MiB | sender A | relay | receiver B | all |\n\
         |---|---:|---:|---:|---:|\n\
         | direct | {d_send:.2} | — | {d_recv:.2} | {:.2} |\n\
         | through the relay | {p_send:.2} | {p_relay:.2} | {p_recv:.2} | {:.2} |\n\n\
         The relay spends {:.2}× what the two ends spend on average: it receives and sends every \
         byte, so about 2× is all it can do. The pipe also takes the {cores} cores from two busy \
         processes to three, so on this machine the pipe's best is about \
         {cores} ÷ (CPU of all three per byte) against {cores} ÷ (CPU of both ends per byte) \
         direct: {:.2}× here.\n",
        d_send + d_recv,
        p_send + p_relay + p_recv,
        p_relay / ((p_send + p_recv) / 2.0),
        (d_send + d_recv) / (p_send + p_relay + p_recv),
    ));
    out
}
