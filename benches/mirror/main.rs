//! The mirror set measured against a single backend, in the same run:
//!
//! 1. write throughput with three mirrors against one (`fs:` directories, so the backends
//!    themselves cost the same and only the fan-out differs), read against the disk's own
//!    ratio for the same durable writes without the relay (see `disk.rs`);
//! 2. GET latency with the mirror that serves reads killed, after the first failure, against
//!    the healthy set (three `rclone serve s3` processes standing in for buckets);
//! 3. the relay's peak memory while streaming objects to an rclone remote, 32 MiB against
//!    256 MiB objects: flat means it does not grow with the object size.
//!
//! `cargo bench --bench mirror -- [--rounds N] [--write docs/PERFORMANCE.md] [--rclone PATH]`

#![allow(dead_code)]

#[path = "../s3/client.rs"]
mod client;
#[path = "../common/mod.rs"]
mod common;
mod disk;
#[path = "../s3/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use client::{Client, Error};
use common::{cpu_time, median, run_concurrent, today};
use servers::{ACCESS_KEY, SECRET_KEY, Server};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

struct Options {
    rounds: usize,
    write: Option<PathBuf>,
    rclone: Option<PathBuf>,
}

impl Options {
    fn parse() -> Result<Self, Error> {
        let mut options = Options {
            rounds: 3,
            write: None,
            rclone: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--rounds" => options.rounds = args.next().ok_or("--rounds N")?.parse()?,
                "--write" => options.write = Some(args.next().ok_or("--write PATH")?.into()),
                "--rclone" => options.rclone = Some(args.next().ok_or("--rclone PATH")?.into()),
                "--bench" => {}
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        Ok(options)
    }
}

fn main() -> Result<(), Error> {
    servers::serve_s3s_fs_if_asked();
    let options = Options::parse()?;
    tokio::runtime::Runtime::new()?.block_on(run(options))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn fs_backends(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter()
        .flat_map(|d| ["--backend".to_string(), format!("fs:{}", d.display())])
        .collect()
}

async fn run(options: Options) -> Result<(), Error> {
    let scratch = tempfile::Builder::new().prefix("haven-bench-mirror-").tempdir()?;
    let dir = |name: &str| -> Result<PathBuf, Error> {
        let path = scratch.path().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    };
    let rclone = servers::find_rclone(options.rclone.clone());
    let mut out = String::new();
    out.push_str(&format!(
        "Measured {} with `cargo bench --bench mirror -- --rounds {}` (medians of {} rounds, order rotated each round).\n\n",
        today(),
        options.rounds,
        options.rounds
    ));

    // 1. Write throughput: one mirror against three.
    let one = servers::start_haven_relay_with(&dir("one")?, &fs_backends(&[dir("one-m1")?]), &[])?;
    let three = servers::start_haven_relay_with(
        &dir("three")?,
        &fs_backends(&[dir("three-m1")?, dir("three-m2")?, dir("three-m3")?]),
        &[],
    )?;
    let small = Bytes::from(pattern(64 * KIB));
    let large = Bytes::from(pattern(32 * MIB));
    let figures = one_against_three(options.rounds, [&one, &three], "fs", |relay| {
        write_throughput(relay, &small, &large)
    })
    .await?;
    drop((one, three));
    let small_ops = figures.clone().map(|f| median(f.iter().map(|x| x.0).collect()));
    let large_mibs = figures.clone().map(|f| median(f.iter().map(|x| x.1).collect()));
    let small_cpu = figures.map(|f| median(f.iter().map(|x| x.2).collect()));
    out.push_str("| Workload (`fs:` directories on one disk unless named) | 1 mirror | 3 mirrors | 3 ÷ 1 | Target |\n|---|---|---|---|---|\n");
    out.push_str(&row("64 KiB PUT, c=16", small_ops, ops, TARGET));
    out.push_str(&row("32 MiB PUT, c=4", large_mibs, mibs, TARGET));
    out.push_str(&row(
        "relay CPU per 64 KiB PUT (ms; not a throughput)",
        small_cpu,
        ms,
        "—",
    ));

    // 1a. The disk's own limit for those two rows, in the same run: one copy and three
    // measured back to back, three times a round for the quick small writes, since the
    // shared disk's speed drifts within seconds.
    let (mut disk_small, mut disk_cpu, mut disk_large) = (
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
    );
    for pair in 0..options.rounds * 3 {
        eprintln!("pair {}/{}: the disk alone", pair + 1, options.rounds * 3);
        for offset in 0..2 {
            let index = (pair + offset) % 2;
            let roots: Vec<PathBuf> = (0..[1, 3][index])
                .map(|copy| scratch.path().join(format!("disk-{pair}-{copy}")))
                .collect();
            let written = disk::durable_writes(&roots, 16, 600, &small)?;
            disk_small[index].push(written.per_second);
            disk_cpu[index].push(written.cpu_ms);
            if pair % 3 == 0 {
                let written = disk::durable_writes(&roots, 4, 12, &large)?;
                disk_large[index].push(written.per_second * large.len() as f64 / MIB as f64);
            }
        }
    }
    // The kernel's CPU for two more copies, from each pair (never below nothing).
    let cpu_more = median(
        disk_cpu[1]
            .iter()
            .zip(&disk_cpu[0])
            .map(|(three, one)| (three - one).max(0.0))
            .collect(),
    );
    let disk_small = disk_small.map(median);
    let disk_large = disk_large.map(median);
    let disk_cpu = disk_cpu.map(median);
    // 1b. The same with backends that are slow rather than CPU- or disk-bound: each
    // `rclone serve s3` capped at 40 MiB/s. Sequential writes would give 0.33× here.
    let mut limited = Vec::new();
    for i in 0..4 {
        let root = dir(&format!("limited-{i}"))?;
        std::fs::create_dir_all(root.join("mirror"))?;
        limited.push(servers::start_rclone_with(&rclone, &root, &["--bwlimit", "40M"])?);
    }
    let keys = [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)];
    let s3_backends = |set: &[Server]| -> Vec<String> {
        set.iter()
            .flat_map(|s| {
                [
                    "--backend".to_string(),
                    format!("s3://mirror?endpoint=http://{}", s.addr),
                ]
            })
            .collect()
    };
    let one = servers::start_haven_relay_with(&dir("limited-one")?, &s3_backends(&limited[..1]), &keys)?;
    let three = servers::start_haven_relay_with(&dir("limited-three")?, &s3_backends(&limited[1..]), &keys)?;
    let large = &large;
    let limited_mibs = one_against_three(options.rounds, [&one, &three], "bandwidth-limited", |relay| {
        let addr = relay.addr;
        async move {
            let client = Client::new(addr, ACCESS_KEY, SECRET_KEY);
            let n = 8;
            let took = put_many(&client, "large", n, 4, large).await?;
            Ok((n * large.len()) as f64 / MIB as f64 / took.as_secs_f64())
        }
    })
    .await?;
    drop((one, three, limited));
    out.push_str(&row(
        "32 MiB PUT, c=4, `rclone serve s3 --bwlimit 40M` backends",
        limited_mibs.map(median),
        mibs,
        TARGET,
    ));
    out.push('\n');
    let mut limits = format!(
        "| The disk alone (no relay; medians of {} pairs for 64 KiB, {} for 32 MiB) | 1 copy | 3 copies | 3 ÷ 1 | |\n\
         |---|---|---|---|---|\n",
        options.rounds * 3,
        options.rounds
    );
    limits.push_str(&row("durable 64 KiB writes, c=16", disk_small, ops, "(limit)"));
    limits.push_str(&row("CPU per 64 KiB object (ms; not a throughput)", disk_cpu, ms, "—"));
    limits.push_str(&row("durable 32 MiB writes, c=4", disk_large, mibs, "(limit)"));
    // Three mirrors cannot write faster than the disk writes three copies, nor faster than
    // one mirror; nor can their CPU per PUT be less than one mirror's plus the kernel's work
    // for two more copies (the disk-alone CPU figures), on cores shared with the client.
    let disk_limit = |disk_three: f64, one: f64| (disk_three / one).min(1.0);
    let cpu_limit = small_cpu[0] / (small_cpu[0] + cpu_more);
    let small_limit = disk_limit(disk_small[1], small_ops[0]).min(cpu_limit);
    let large_limit = disk_limit(disk_large[1], large_mibs[0]);
    limits.push_str(&format!(
        "\n**Limits, same run.** Three `fs:` mirrors on one disk can write no faster than the disk \
         writes three copies (the rows above: the mirrors' write, fdatasync, rename and directory fsync \
         by plain threads, no relay) and no faster than one mirror: at most {:.2}× for 64 KiB PUTs \
         and {:.2}× for 32 MiB. A 64 KiB PUT is also bound by CPU: two more copies cost at least \
         the kernel's work for them ({:.3} ms more per object for the disk alone), which allows \
         {cpu_limit:.2}×. The mirror set reaches {:.2}× of {small_limit:.2}× ({:.0} %) for 64 KiB \
         and {:.2}× of {large_limit:.2}× ({:.0} %) for 32 MiB.\n",
        disk_limit(disk_small[1], small_ops[0]),
        large_limit,
        cpu_more,
        small_ops[1] / small_ops[0],
        100.0 * small_ops[1] / small_ops[0] / small_limit,
        large_mibs[1] / large_mibs[0],
        100.0 * large_mibs[1] / large_mibs[0] / large_limit,
    ));
    out.push_str(&limits);
    out.push('\n');

    // 2. Read latency with the mirror that serves reads down; a fresh set each round.
    let (mut healthy, mut down, mut first_failure) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        eprintln!("round {}/{}: read latency", round + 1, options.rounds);
        let (h, first, d) = read_latency_round(&rclone, &dir(&format!("fallback-{round}"))?, &small).await?;
        healthy.push(h);
        first_failure.push(first);
        down.push(d);
    }
    let (h, d) = (median(healthy), median(down));
    out.push_str("| Reads (64 KiB GET, c=1, p50 of 300) | Healthy | First mirror down | Ratio | Target |\n|---|---|---|---|---|\n");
    out.push_str(&format!(
        "| three `rclone serve s3` mirrors | {h:.2} ms | {d:.2} ms | {:.2}× | ≤ 1.5× |\n\n",
        d / h
    ));
    out.push_str(&format!(
        "The first GET after the kill, which pays for discovering the failure, took {:.1} ms.\n\n",
        median(first_failure)
    ));

    // 3. Memory while streaming large objects to an rclone remote.
    let remote_root = dir("remote")?;
    let conf = scratch.path().join("rclone.conf");
    std::fs::write(
        &conf,
        format!("[bench]\ntype = alias\nremote = {}\n", remote_root.display()),
    )?;
    let args = vec![
        "--rclone-remote".to_string(),
        "bench:store".to_string(),
        "--rclone-config".to_string(),
        conf.display().to_string(),
        "--rclone-bin".to_string(),
        rclone.display().to_string(),
    ];
    let relay = servers::start_haven_relay_with(&dir("memory")?, &args, &[])?;
    let client = Client::new(relay.addr, ACCESS_KEY, SECRET_KEY);
    client.create_bucket("bench").await?;
    let mut peaks = Vec::new();
    for size in [32 * MIB, 256 * MIB] {
        let body = Bytes::from(pattern(size));
        relay.reset_peak_rss()?;
        put_many(&client, "big", 4, 4, &body).await?;
        peaks.push(relay.peak_rss()? as f64 / MIB as f64);
    }
    out.push_str("| Relay peak RSS, 4 concurrent uploads to an rclone remote | 32 MiB objects | 256 MiB objects | Ratio |\n|---|---|---|---|\n");
    out.push_str(&format!(
        "| `--rclone-remote` (rclone's own memory not included) | {:.1} MiB | {:.1} MiB | {:.2}× |\n",
        peaks[0],
        peaks[1],
        peaks[1] / peaks[0]
    ));
    println!("{out}");
    if let Some(path) = &options.write {
        common::write_section(path, "mirror", &out)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs `measure` against a one-mirror and a three-mirror relay, alternating which goes
/// first each round; returns each relay's figures.
async fn one_against_three<'a, T, F, Fut>(
    rounds: usize,
    relays: [&'a Server; 2],
    kind: &str,
    mut measure: F,
) -> Result<[Vec<T>; 2], Error>
where
    F: FnMut(&'a Server) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    for relay in relays {
        Client::new(relay.addr, ACCESS_KEY, SECRET_KEY)
            .create_bucket("bench")
            .await?;
    }
    let mut figures = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for offset in 0..2 {
            let index = (round + offset) % 2;
            eprintln!("round {}/{rounds}: {} {kind} mirror(s)", round + 1, [1, 3][index]);
            figures[index].push(measure(relays[index]).await?);
        }
    }
    Ok(figures)
}

/// The mirror set's target for three mirrors against one.
const TARGET: &str = "≥ 0.8×";

/// A table row: the figures for one and for three (mirrors or copies), their ratio, and what
/// the ratio is held to.
fn row(workload: &str, [one, three]: [f64; 2], figure: fn(f64) -> String, held_to: &str) -> String {
    format!(
        "| {workload} | {} | {} | {:.2}× | {held_to} |\n",
        figure(one),
        figure(three),
        three / one
    )
}

fn ops(x: f64) -> String {
    format!("{x:.1} ops/s")
}

fn mibs(x: f64) -> String {
    format!("{x:.1} MiB/s")
}

/// Milliseconds, named in the row's label.
fn ms(x: f64) -> String {
    format!("{x:.3}")
}

/// PUTs `body` as `bench/<prefix>-0..n` with `concurrency` workers; the batch's wall time.
async fn put_many(
    client: &Client,
    prefix: &'static str,
    n: usize,
    concurrency: usize,
    body: &Bytes,
) -> Result<std::time::Duration, Error> {
    let (client, body) = (client.clone(), body.clone());
    run_concurrent(n, concurrency, move |i| {
        let (client, body) = (client.clone(), body.clone());
        async move { client.put("bench", &format!("{prefix}-{i}"), body).await }
    })
    .await
}

/// (64 KiB PUT ops/s at c=16, 32 MiB PUT MiB/s at c=4, the relay's CPU ms per 64 KiB PUT)
/// against one relay.
async fn write_throughput(relay: &Server, small: &Bytes, large: &Bytes) -> Result<(f64, f64, f64), Error> {
    let client = Client::new(relay.addr, ACCESS_KEY, SECRET_KEY);
    let n_small = 600;
    let before = cpu_time(relay.pid())?;
    let took = put_many(&client, "small", n_small, 16, small).await?;
    let ops = n_small as f64 / took.as_secs_f64();
    let cpu_ms = (cpu_time(relay.pid())? - before).as_secs_f64() * 1000.0 / n_small as f64;
    let n_large = 12;
    let took = put_many(&client, "large", n_large, 4, large).await?;
    let mibs = (n_large * large.len()) as f64 / MIB as f64 / took.as_secs_f64();
    Ok((ops, mibs, cpu_ms))
}

/// Median latency of `n` sequential GETs over the first `keys` keys, in milliseconds.
async fn get_latency_p50(client: &Client, keys: usize, n: usize) -> Result<f64, Error> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        client.get("bench", &format!("k{}", i % keys)).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(samples))
}

/// User plus system CPU ticks a process has used (0 once it is gone).
fn cpu_ticks(server: Option<&Server>) -> u64 {
    let Some(server) = server else { return 0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Three rclone stand-ins behind one relay: p50 GET latency healthy, the first GET after the
/// mirror serving reads is killed, and p50 after that (all in ms).
async fn read_latency_round(rclone: &Path, root: &Path, body: &Bytes) -> Result<(f64, f64, f64), Error> {
    let mut stand_ins = Vec::new();
    for i in 0..3 {
        let dir = root.join(format!("rclone-{i}"));
        std::fs::create_dir_all(dir.join("mirror"))?;
        stand_ins.push(Some(servers::start_rclone(rclone, &dir)?));
    }
    let backends: Vec<String> = stand_ins
        .iter()
        .flatten()
        .flat_map(|s| {
            [
                "--backend".to_string(),
                format!("s3://mirror?endpoint=http://{}", s.addr),
            ]
        })
        .collect();
    let relay_dir = root.join("relay");
    std::fs::create_dir_all(&relay_dir)?;
    let relay = servers::start_haven_relay_with(
        &relay_dir,
        &backends,
        &[("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)],
    )?;
    let client = Client::new(relay.addr, ACCESS_KEY, SECRET_KEY);
    client.create_bucket("bench").await?;
    const KEYS: usize = 100;
    for i in 0..KEYS {
        client.put("bench", &format!("k{i}"), body.clone()).await?;
    }
    let before: Vec<u64> = stand_ins.iter().map(|s| cpu_ticks(s.as_ref())).collect();
    let healthy = get_latency_p50(&client, KEYS, 300).await?;
    // The mirror that served the reads is the one that burned CPU: kill it.
    let busiest = (0..3)
        .max_by_key(|&i| cpu_ticks(stand_ins[i].as_ref()).saturating_sub(before[i]))
        .expect("three stand-ins");
    stand_ins[busiest] = None;
    let started = Instant::now();
    client.get("bench", "k0").await?;
    let first = started.elapsed().as_secs_f64() * 1000.0;
    let down = get_latency_p50(&client, KEYS, 300).await?;
    Ok((healthy, first, down))
}
