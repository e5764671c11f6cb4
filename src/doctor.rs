//! `haven-relay doctor`: round-trips a blob through every backend, and says which limits a
//! relay started with the same settings would apply.

use std::fmt::Write as _;

use anyhow::Context;
use backends::spec::BackendSpec;

use crate::RelayConfig;

/// The report, and whether every backend passed.
pub struct Report {
    pub text: String,
    pub failed: usize,
    pub backends: usize,
}

/// Checks the store `config` names and describes its limits.
pub async fn check(config: &RelayConfig) -> anyhow::Result<Report> {
    let mut out = String::new();
    let (failed, backends) = if config.no_storage {
        writeln!(out, "no storage (--no-storage): nothing to check")?;
        (0, 0)
    } else if config.storage.backends.is_empty() {
        embedded_store(config, &mut out)?;
        (0, 0)
    } else {
        let failed = mirror_set(config, &mut out).await?;
        (failed, config.storage.backends.len())
    };
    limits(config, &mut out)?;
    Ok(Report {
        text: out,
        failed,
        backends,
    })
}

fn embedded_store(config: &RelayConfig, out: &mut String) -> anyhow::Result<()> {
    // The embedded store, seen as a blob directory would only confuse: check the disk.
    let dir = config.store_dir();
    let probe = dir.join(".doctor");
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .with_context(|| format!("writing to {}", dir.display()))?;
    std::fs::remove_file(&probe)?;
    writeln!(
        out,
        "embedded store at {}: writable (no --backend configured)",
        dir.display()
    )?;
    Ok(())
}

/// Returns how many backends failed.
async fn mirror_set(config: &RelayConfig, out: &mut String) -> anyhow::Result<usize> {
    let reports = crate::storage::doctor(config).await?;
    let mut failed = 0;
    for r in &reports {
        writeln!(out, "{}", r.label)?;
        match &r.round_trip {
            Ok(took) => writeln!(
                out,
                "  reachable:        yes (round trip {:.1} ms)",
                took.as_secs_f64() * 1000.0
            )?,
            Err(why) => {
                failed += 1;
                writeln!(out, "  reachable:        NO: {why}")?;
            }
        }
        match r.stored {
            Some((objects, bytes)) => writeln!(out, "  stored:           {objects} blobs, {bytes} bytes")?,
            None => writeln!(out, "  stored:           unknown")?,
        }
        match r.pending_repairs {
            Some(n) => writeln!(out, "  pending repairs:  {n}")?,
            None => writeln!(out, "  pending repairs:  unknown")?,
        }
    }
    match backends::mirror::ScrubProgress::load(&config.data_dir.join("catalog")) {
        Some(p) => match p.round_finished {
            Some(_) => writeln!(
                out,
                "scrub: {} round(s) done; the last checked {} copies ({} bytes), {} bad and repaired",
                p.rounds_completed, p.copies_checked, p.bytes_checked, p.bad_copies
            )?,
            None => writeln!(
                out,
                "scrub: round {} under way, {} copies ({} bytes) checked so far, {} bad",
                p.rounds_completed + 1,
                p.copies_checked,
                p.bytes_checked,
                p.bad_copies
            )?,
        },
        None => writeln!(out, "scrub: no round recorded yet")?,
    }
    let uses_rclone = config
        .storage
        .backends
        .iter()
        .any(|b| matches!(b, BackendSpec::Rclone { .. }));
    if uses_rclone
        && let Ok(version) = backends::rclone::version(&backends::rclone::RcloneOptions {
            binary: config.storage.connect.rclone_binary.clone(),
            config: None,
            remote: String::new(),
        })
        .await
    {
        writeln!(out, "rclone: {version}")?;
    }
    Ok(failed)
}

/// What a relay started with these settings lets clients take (`config show` says where
/// each value comes from).
fn limits(config: &RelayConfig, out: &mut String) -> anyhow::Result<()> {
    let limits = &config.limits;
    let open_files = crate::fd_limit::reachable();
    let cap = crate::fd_limit::connection_cap(limits.connections.max_connections, open_files);
    writeln!(out, "limits (as `run` with these settings applies them):")?;
    writeln!(
        out,
        "  open files:           {}",
        open_files.map_or("unlimited".into(), |n| format!(
            "{n} (the soft limit is raised to it at start)"
        ))
    )?;
    writeln!(
        out,
        "  HTTP connections:     {cap} at once{}; headers within {} s, idle keep-alive {} s",
        if cap < limits.connections.max_connections {
            format!(
                " (configured {}, lowered to stay below the open-file limit)",
                limits.connections.max_connections
            )
        } else {
            String::new()
        },
        limits.connections.header_timeout.as_secs(),
        limits.connections.header_timeout.as_secs()
    )?;
    writeln!(
        out,
        "  requests per second:  {}",
        limits.requests_per_second.map_or("no limit".into(), |r| format!(
            "{r} per client, bursts of {}",
            (2 * r.get()).max(20)
        ))
    )?;
    writeln!(out, "  largest object:       {} bytes", config.max_object_size)?;
    writeln!(
        out,
        "  storage quota:        {}",
        config.max_storage.map_or("none".into(), |b| format!("{b} bytes"))
    )?;
    if !config.bucket_quotas.is_empty() {
        let quotas: Vec<String> = config
            .bucket_quotas
            .iter()
            .map(|(name, size)| format!("{name} {size} bytes"))
            .collect();
        writeln!(out, "  bucket quotas:        {}", quotas.join(", "))?;
    }
    writeln!(
        out,
        "  object lifetime:      {}",
        config
            .ttl
            .map_or("none (--ttl; buckets' own lifecycle rules still apply)".into(), |t| t
                .to_string())
    )?;
    writeln!(
        out,
        "  unfinished uploads:   aborted after {} days",
        config.incomplete_upload_max_age.as_secs() / 86_400
    )?;
    writeln!(
        out,
        "  tunnel:               {} connections per member, {} requests in flight per connection",
        limits.connections_per_member, limits.streams_per_connection
    )?;
    let mailbox = &config.mailbox;
    writeln!(
        out,
        "  mailbox:              messages up to {} bytes, {} queued or {} bytes per member, {} bytes in all, {} posts a minute",
        mailbox.max_message_bytes,
        mailbox.max_queued_messages,
        mailbox.max_queued_bytes,
        mailbox.max_total_bytes,
        mailbox.posts_per_minute
    )?;
    writeln!(
        out,
        "  switchboard:          {} pipes per member, {}",
        config.switchboard.pipes_per_member,
        config
            .switchboard
            .bytes_per_second
            .map_or("no byte rate limit".into(), |b| format!(
                "{b} bytes per second per member"
            ))
    )?;
    Ok(())
}
