//! The disk's own limit for the write figures. An `fs:` mirror makes each blob durable the way
//! `backends/src/blobs/local.rs` does: a staging file written and fdatasync'd, renamed into a
//! `blobs/<hh>/` directory, that directory fsync'd. Here plain threads do exactly that, with
//! no HTTP, hashing or catalog, writing one copy against three in parallel at the bench's
//! concurrency. Three copies on one disk cannot go faster than the disk writes three, so the
//! mirror set's three-against-one ratio is read against this one, measured in the same run.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::client::Error;
use crate::common::cpu_time;

/// What writing the objects took.
pub struct Written {
    pub per_second: f64,
    /// CPU milliseconds (user and system: the kernel's filesystem work) per object.
    pub cpu_ms: f64,
}

/// Every object written durably under each of `roots` (the copies in parallel),
/// `concurrency` objects at a time, `objects` in all.
pub fn durable_writes(roots: &[PathBuf], concurrency: usize, objects: usize, body: &[u8]) -> Result<Written, Error> {
    for root in roots {
        std::fs::create_dir_all(root.join("tmp"))?;
        for shard in 0..256 {
            std::fs::create_dir_all(root.join(format!("blobs/{shard:02x}")))?;
        }
    }
    let per_worker = objects.div_ceil(concurrency);
    let cpu_before = cpu_time(std::process::id())?;
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = roots
            .iter()
            .flat_map(|root| (0..concurrency).map(move |worker| (root, worker)))
            .map(|(root, worker)| {
                scope.spawn(move || -> io::Result<()> {
                    for i in 0..per_worker {
                        write_one(root, &format!("{worker}-{i}"), body)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|_| Err(io::Error::other("writer panicked"))))
    })?;
    let took = started.elapsed();
    let cpu = cpu_time(std::process::id())? - cpu_before;
    for root in roots {
        std::fs::remove_dir_all(root)?;
    }
    let written = (per_worker * concurrency) as f64;
    Ok(Written {
        per_second: written / took.as_secs_f64(),
        cpu_ms: cpu.as_secs_f64() * 1000.0 / written,
    })
}

fn write_one(root: &Path, name: &str, body: &[u8]) -> io::Result<()> {
    let staging = root.join("tmp").join(name);
    let mut file = File::create(&staging)?;
    file.write_all(body)?;
    file.sync_data()?;
    let shard = root.join(format!("blobs/{:02x}", fnv(name) % 256));
    std::fs::rename(&staging, shard.join(name))?;
    File::open(&shard)?.sync_all()
}

/// Spreads names over the shards the way random blob ids do.
fn fnv(name: &str) -> usize {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }) as usize
}
