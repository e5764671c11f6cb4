//! haven-relay against the two servers a self-hoster would otherwise pick, s3s-fs 0.14.1 and
//! `rclone serve s3`, driven by the same client in the same run on loopback.
//!
//! ```text
//! cargo bench --bench s3 -- [--rounds 3] [--write docs/PERFORMANCE.md] [--rclone PATH]
//! cargo bench --bench s3 -- --limits-overhead [--rounds 3] [--write docs/PERFORMANCE.md]
//! ```
//!
//! `--limits-overhead` runs haven-relay twice instead, with and without what running in the
//! open adds (metrics scraped every second, a request rate limit, a storage quota, the
//! connection cap), and reports the cost.
//!
//! Each round runs every workload against every server (the order rotates between rounds so
//! that noise on this shared machine spreads evenly); figures are medians over rounds. Peak
//! RSS is read from /proc for each server process. `--write` replaces the generated section
//! of the given markdown file.

mod client;
#[path = "../common/mod.rs"]
mod common;
mod report;
mod servers;

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use client::{Client, Error};
use common::run_concurrent;
use report::{Figures, Report};
use servers::Server;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Listings timed per round; the round reports their median.
const LISTINGS_PER_ROUND: usize = 5;

struct Options {
    rounds: usize,
    small_ops: usize,
    large_objects: usize,
    list_keys: usize,
    write: Option<PathBuf>,
    rclone: Option<PathBuf>,
    limits_overhead: bool,
}

impl Options {
    fn parse() -> Result<Self, Error> {
        let mut options = Options {
            rounds: 3,
            small_ops: 3000,
            large_objects: 24,
            list_keys: 10_000,
            write: None,
            rclone: None,
            limits_overhead: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--rounds" => options.rounds = value()?.parse()?,
                "--small-ops" => options.small_ops = value()?.parse()?,
                "--large-objects" => options.large_objects = value()?.parse()?,
                "--list-keys" => options.list_keys = value()?.parse()?,
                "--write" => options.write = Some(value()?.into()),
                "--limits-overhead" => options.limits_overhead = true,
                "--rclone" => options.rclone = Some(value()?.into()),
                // cargo bench passes --bench to harness-less benches.
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
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> Result<(), Error> {
    let scratch = tempfile::Builder::new().prefix("haven-bench-").tempdir()?;
    let dir = |name: &str| -> Result<PathBuf, Error> {
        let path = scratch.path().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    };
    let mut scraper = None;
    let servers = if options.limits_overhead {
        let ops = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let limited = servers::start_haven_relay_named(
            "haven-relay, limits on",
            &dir("limits-on")?,
            &[
                "--ops-addr".into(),
                ops.to_string(),
                "--requests-per-second".into(),
                "1000000".into(),
                "--max-storage".into(),
                "1T".into(),
                "--max-connections".into(),
                "512".into(),
                // Every bucket then has a lifetime: reads and listings check each object.
                "--ttl".into(),
                "3650d".into(),
            ],
            &[],
        )?;
        scraper = Some(tokio::spawn(scrape_every_second(ops)));
        vec![limited, servers::start_haven_relay(&dir("haven-relay")?)?]
    } else {
        vec![
            servers::start_haven_relay(&dir("haven-relay")?)?,
            servers::start_s3s_fs(&dir("s3s-fs")?)?,
            servers::start_rclone(&servers::find_rclone(options.rclone.clone()), &dir("rclone")?)?,
        ]
    };
    let small = Bytes::from(pattern(64 * KIB));
    let large = Bytes::from(pattern(32 * MIB));
    let mut figures: Vec<Vec<Figures>> = servers.iter().map(|_| Vec::new()).collect();

    for server in &servers {
        let client = Client::new(server.addr, servers::ACCESS_KEY, servers::SECRET_KEY);
        for bucket in ["small", "large", "list", "memory"] {
            client.create_bucket(bucket).await?;
        }
        eprintln!("{}: writing {} keys for the listing", server.name, options.list_keys);
        let tiny = Bytes::from_static(b"sealed");
        run_concurrent(options.list_keys, 16, {
            let client = client.clone();
            move |i| {
                let client = client.clone();
                let tiny = tiny.clone();
                async move { client.put("list", &format!("dir/key-{i:06}"), tiny).await }
            }
        })
        .await?;
    }

    for round in 0..options.rounds {
        for offset in 0..servers.len() {
            let index = (round + offset) % servers.len();
            let server = &servers[index];
            eprintln!("round {}/{}: {}", round + 1, options.rounds, server.name);
            figures[index].push(measure(server, &options, &small, &large).await?);
        }
    }

    let mut report = Report::new(options.rounds, options.list_keys);
    for (server, rounds) in servers.iter().zip(figures) {
        let run_peak = server.peak_rss()?;
        let upload_peak = upload_peak_rss(server, &large).await?;
        report.add(server.name, &rounds, run_peak, upload_peak);
    }
    if let Some(scraper) = scraper {
        scraper.abort();
    }
    let (markdown, section) = if options.limits_overhead {
        (report.overhead_markdown(), "s3-limits")
    } else {
        (report.markdown(), "s3")
    };
    println!("{markdown}");
    if let Some(path) = &options.write {
        common::write_section(path, section, &markdown)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// What Prometheus would do: read /metrics every second.
async fn scrape_every_second(ops: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Ok(mut stream) = tokio::net::TcpStream::connect(ops).await else {
            continue;
        };
        let _ = stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n")
            .await;
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    }
}

async fn measure(server: &Server, options: &Options, small: &Bytes, large: &Bytes) -> Result<Figures, Error> {
    let client = Client::new(server.addr, servers::ACCESS_KEY, servers::SECRET_KEY);
    let put_small = run_concurrent(options.small_ops, 16, {
        let (client, body) = (client.clone(), small.clone());
        move |i| {
            let (client, body) = (client.clone(), body.clone());
            async move { client.put("small", &format!("obj-{i:06}"), body).await }
        }
    })
    .await?;
    let get_small = run_concurrent(options.small_ops, 16, {
        let client = client.clone();
        move |i| {
            let client = client.clone();
            async move { expect_len(client.get("small", &format!("obj-{i:06}")).await?, 64 * KIB) }
        }
    })
    .await?;
    let put_large = run_concurrent(options.large_objects, 4, {
        let (client, body) = (client.clone(), large.clone());
        move |i| {
            let (client, body) = (client.clone(), body.clone());
            async move { client.put("large", &format!("obj-{i:03}"), body).await }
        }
    })
    .await?;
    let get_large = run_concurrent(options.large_objects, 4, {
        let client = client.clone();
        move |i| {
            let client = client.clone();
            async move { expect_len(client.get("large", &format!("obj-{i:03}")).await?, 32 * MIB) }
        }
    })
    .await?;
    // One listing takes about 10 ms, less than this machine's scheduling jitter: each round
    // reports the median of several.
    let mut listings = Vec::with_capacity(LISTINGS_PER_ROUND);
    for _ in 0..LISTINGS_PER_ROUND {
        let started = Instant::now();
        let listed = client.list_all("list").await?;
        listings.push(started.elapsed());
        if listed != options.list_keys {
            return Err(format!("{} listed {listed} keys, expected {}", server.name, options.list_keys).into());
        }
    }
    listings.sort();
    let list = listings[LISTINGS_PER_ROUND / 2];
    let large_mib = (options.large_objects * 32) as f64;
    Ok(Figures {
        put_small_ops: options.small_ops as f64 / put_small.as_secs_f64(),
        get_small_ops: options.small_ops as f64 / get_small.as_secs_f64(),
        put_large_mibs: large_mib / put_large.as_secs_f64(),
        get_large_mibs: large_mib / get_large.as_secs_f64(),
        list_secs: list.as_secs_f64(),
    })
}

/// Peak RSS of one server while 16 clients upload a 32 MiB object each at the same time.
async fn upload_peak_rss(server: &Server, large: &Bytes) -> Result<u64, Error> {
    server.reset_peak_rss()?;
    let client = Client::new(server.addr, servers::ACCESS_KEY, servers::SECRET_KEY);
    run_concurrent(16, 16, {
        let body = large.clone();
        move |i| {
            let (client, body) = (client.clone(), body.clone());
            async move { client.put("memory", &format!("upload-{i:02}"), body).await }
        }
    })
    .await?;
    server.peak_rss()
}

fn expect_len(got: u64, want: usize) -> Result<(), Error> {
    if got == want as u64 {
        Ok(())
    } else {
        Err(format!("downloaded {got} bytes, expected {want}").into())
    }
}

/// Incompressible-looking bytes (xorshift), so no server can shortcut on zeros.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
