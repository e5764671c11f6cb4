//! `haven-relay config show` and `config init`: the effective configuration with where each
//! value came from, and a commented relay.json to start from.

use std::fmt::Write as _;

use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::config::{ConfigFile, RelayConfig};
use crate::credentials::Credentials;

/// Where an effective value came from, in the order they win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    /// Kept in the data dir (the HTTP endpoint's generated keys).
    Stored,
    Default,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::File => "relay.json",
            Source::Stored => "stored in the data dir",
            Source::Default => "default",
        }
    }
}

/// The source of the value of clap argument `id` (its field name in `run`'s arguments),
/// given whether relay.json sets the matching key.
pub fn source(matches: &ArgMatches, id: &str, in_file: bool) -> Source {
    debug_assert!(matches.try_get_raw(id).is_ok(), "`run` has no argument {id}");
    match matches.try_get_raw(id).ok().flatten().and(matches.value_source(id)) {
        Some(ValueSource::CommandLine) => Source::Flag,
        Some(ValueSource::EnvVariable) => Source::Env,
        _ if in_file => Source::File,
        _ => Source::Default,
    }
}

/// One line of `config show`.
pub struct Row {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
}

/// The rows for what `run` would use, given its parsed arguments and relay.json. Secrets are
/// never printed; their presence is.
pub fn rows(matches: &ArgMatches, config: &RelayConfig, file: &ConfigFile, credentials: &Credentials) -> Vec<Row> {
    let src = |id: &str, in_file: bool| source(matches, id, in_file);
    let mailbox_file = file.mailbox.as_ref();
    let switch_file = file.switchboard.as_ref();
    let mut rows = vec![
        Row {
            key: "data_dir",
            value: config.data_dir.display().to_string(),
            source: src("data_dir", file.data_dir.is_some()),
        },
        Row {
            key: "s3_addr",
            value: config.s3_addr.map_or("off".into(), |a| a.to_string()),
            // --s3-port wins; then --s3-addr or its variable; then relay.json; then `--s3`
            // alone, which picks the default address.
            source: match (
                src("s3_port", false),
                src("s3_addr", file.s3_addr.is_some()),
                src("s3", false),
            ) {
                (Source::Flag, _, _) => Source::Flag,
                (_, Source::Default, Source::Flag) => Source::Flag,
                (_, addr, _) => addr,
            },
        },
        Row {
            key: "ops_addr",
            value: config.ops_addr.map_or("off".into(), |a| a.to_string()),
            source: src("ops_addr", file.ops_addr.is_some()),
        },
        Row {
            key: "tls_cert",
            value: config
                .tls
                .as_ref()
                .map_or("off (plain HTTP)".into(), |t| t.cert.display().to_string()),
            source: src("tls_cert", file.tls_cert.is_some()),
        },
        Row {
            key: "tls_key",
            value: config
                .tls
                .as_ref()
                .map_or("off".into(), |t| t.key.display().to_string()),
            source: src("tls_key", file.tls_key.is_some()),
        },
        Row {
            key: "s3_domains",
            value: if config.s3_domains.is_empty() {
                "none".into()
            } else {
                config.s3_domains.join(",")
            },
            source: src("s3_domains", file.s3_domains.is_some()),
        },
        Row {
            key: "access_key",
            value: credentials.access_key.clone(),
            source: stored_unless(src("access_key", false)),
        },
        Row {
            key: "secret_key",
            value: "(set, not shown: `haven-relay credentials` prints it)".into(),
            source: stored_unless(src("secret_key", false)),
        },
        Row {
            key: "max_object_size",
            value: config.max_object_size.to_string(),
            source: src("max_object_size", file.max_object_size.is_some()),
        },
        Row {
            key: "max_storage",
            value: config.max_storage.map_or("no quota".into(), |b| b.to_string()),
            source: src("max_storage", file.max_storage.is_some()),
        },
        Row {
            key: "bucket_quotas",
            value: if config.bucket_quotas.is_empty() {
                "none".into()
            } else {
                config
                    .bucket_quotas
                    .iter()
                    .map(|(name, size)| format!("{name}={size}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
            source: src("bucket_quotas", file.bucket_quotas.is_some()),
        },
        Row {
            key: "ttl",
            value: config
                .ttl
                .map_or("none (objects stay until deleted)".into(), |t| t.to_string()),
            source: src("ttl", file.ttl.is_some()),
        },
        Row {
            key: "no_storage",
            value: config.no_storage.to_string(),
            source: src("no_storage", file.no_storage.is_some()),
        },
        Row {
            key: "incomplete_upload_days",
            value: (config.incomplete_upload_max_age.as_secs() / 86_400).to_string(),
            source: src("incomplete_upload_days", file.incomplete_upload_days.is_some()),
        },
        Row {
            key: "backends",
            value: if config.storage.backends.is_empty() {
                format!("embedded store in {}", config.store_dir().display())
            } else {
                let uris: Vec<String> = config.storage.backends.iter().map(|b| b.to_string()).collect();
                uris.join(" ")
            },
            source: [src("backends", false), src("rclone_remotes", false)]
                .into_iter()
                .find(|s| *s == Source::Flag)
                .unwrap_or(if file.backends.is_some() {
                    Source::File
                } else {
                    Source::Default
                }),
        },
        Row {
            key: "s3_credentials",
            value: file.s3_credentials.as_ref().map_or("none".into(), |named| {
                let mut names: Vec<&str> = named.keys().map(String::as_str).collect();
                names.sort();
                format!("{} (secrets not shown)", names.join(", "))
            }),
            source: if file.s3_credentials.is_some() {
                Source::File
            } else {
                Source::Default
            },
        },
    ];
    let mirror = &config.storage.mirror;
    let connect = &config.storage.connect;
    rows.extend([
        Row {
            key: "ack",
            value: match mirror.ack {
                backends::mirror::AckPolicy::All => "all".into(),
                backends::mirror::AckPolicy::Quorum(n) => format!("quorum:{n}"),
            },
            source: src("ack", file.ack.is_some()),
        },
        Row {
            key: "backend_timeout_secs",
            value: connect.timeout.as_secs().to_string(),
            source: src("backend_timeout", file.backend_timeout_secs.is_some()),
        },
        Row {
            key: "rclone_bin",
            value: connect.rclone_binary.display().to_string(),
            source: src("rclone_bin", file.rclone_bin.is_some()),
        },
        Row {
            key: "rclone_config",
            value: connect
                .rclone_config
                .as_ref()
                .map_or("rclone's own".into(), |p| p.display().to_string()),
            source: src("rclone_config", file.rclone_config.is_some()),
        },
        Row {
            key: "scrub_rate",
            value: mirror.scrub_rate.to_string(),
            source: src("scrub_rate", file.scrub_rate.is_some()),
        },
        Row {
            key: "scrub_interval_hours",
            value: (mirror.scrub_interval.as_secs() / 3600).to_string(),
            source: if file.scrub_interval_hours.is_some() {
                Source::File
            } else {
                Source::Default
            },
        },
        Row {
            key: "repair_interval_secs",
            value: mirror.repair_interval.as_secs().to_string(),
            source: if file.repair_interval_secs.is_some() {
                Source::File
            } else {
                Source::Default
            },
        },
    ]);
    if let Some(tunnel) = &config.tunnel {
        rows.push(Row {
            key: "iroh_relay",
            value: match &tunnel.relay {
                tunnel::RelayChoice::Default => "default".into(),
                tunnel::RelayChoice::Disabled => "disabled".into(),
                tunnel::RelayChoice::Custom(url) => url.to_string(),
            },
            source: src("iroh_relay", file.iroh_relay.is_some()),
        });
        rows.push(Row {
            key: "iroh_relay_ca",
            value: match tunnel.relay_ca.len() {
                0 => "none".into(),
                n => format!("{n} certificate(s)"),
            },
            source: src("iroh_relay_ca", file.iroh_relay_ca.is_some()),
        });
        rows.push(Row {
            key: "iroh_addr",
            value: tunnel.bind.map_or("any".into(), |a| a.to_string()),
            source: src("iroh_addr", file.iroh_addr.is_some()),
        });
    }
    let limits = &config.mailbox;
    let mailbox_rows: [(&'static str, String, &str, bool); 7] = [
        (
            "mailbox.max_message_bytes",
            limits.max_message_bytes.to_string(),
            "mailbox_max_message",
            mailbox_file.is_some_and(|m| m.max_message_bytes.is_some()),
        ),
        (
            "mailbox.max_queued_messages",
            limits.max_queued_messages.to_string(),
            "mailbox_queue_messages",
            mailbox_file.is_some_and(|m| m.max_queued_messages.is_some()),
        ),
        (
            "mailbox.max_queued_bytes",
            limits.max_queued_bytes.to_string(),
            "mailbox_queue_bytes",
            mailbox_file.is_some_and(|m| m.max_queued_bytes.is_some()),
        ),
        (
            "mailbox.posts_per_minute",
            limits.posts_per_minute.to_string(),
            "mailbox_posts_per_minute",
            mailbox_file.is_some_and(|m| m.posts_per_minute.is_some()),
        ),
        (
            "mailbox.max_total_bytes",
            limits.max_total_bytes.to_string(),
            "mailbox_total_bytes",
            mailbox_file.is_some_and(|m| m.max_total_bytes.is_some()),
        ),
        (
            "mailbox.default_lifetime_days",
            limits.default_lifetime_days.to_string(),
            "mailbox_lifetime_days",
            mailbox_file.is_some_and(|m| m.default_lifetime_days.is_some()),
        ),
        (
            "mailbox.max_lifetime_days",
            limits.max_lifetime_days.to_string(),
            "mailbox_max_lifetime_days",
            mailbox_file.is_some_and(|m| m.max_lifetime_days.is_some()),
        ),
    ];
    for (key, value, id, in_file) in mailbox_rows {
        rows.push(Row {
            key,
            value,
            source: src(id, in_file),
        });
    }
    // Settings relay.json alone sets.
    let file_only = |set: bool| if set { Source::File } else { Source::Default };
    rows.push(Row {
        key: "mailbox.max_hops",
        value: limits.max_hops.to_string(),
        source: file_only(mailbox_file.is_some_and(|m| m.max_hops.is_some())),
    });
    rows.push(Row {
        key: "mailbox.memory_cache_bytes",
        value: limits.memory_cache_bytes.to_string(),
        source: file_only(mailbox_file.is_some_and(|m| m.memory_cache_bytes.is_some())),
    });
    rows.push(Row {
        key: "switchboard.pipes_per_member",
        value: config.switchboard.pipes_per_member.to_string(),
        source: src(
            "switch_pipes_per_member",
            switch_file.is_some_and(|s| s.pipes_per_member.is_some()),
        ),
    });
    rows.push(Row {
        key: "switchboard.bytes_per_second",
        value: config
            .switchboard
            .bytes_per_second
            .map_or("no limit".into(), |r| r.to_string()),
        source: src(
            "switch_bytes_per_second",
            switch_file.is_some_and(|s| s.bytes_per_second.is_some()),
        ),
    });
    let limits_file = file.limits.as_ref();
    let connections = config.limits.connections;
    rows.push(Row {
        key: "limits.max_connections",
        value: connections.max_connections.to_string(),
        source: src(
            "max_connections",
            limits_file.is_some_and(|l| l.max_connections.is_some()),
        ),
    });
    rows.push(Row {
        key: "limits.header_timeout_secs",
        value: connections.header_timeout.as_secs().to_string(),
        source: src(
            "header_timeout_secs",
            limits_file.is_some_and(|l| l.header_timeout_secs.is_some()),
        ),
    });
    rows.push(Row {
        key: "limits.requests_per_second",
        value: config
            .limits
            .requests_per_second
            .map_or("no limit".into(), |r| r.to_string()),
        source: src(
            "requests_per_second",
            limits_file.is_some_and(|l| l.requests_per_second.is_some()),
        ),
    });
    rows.push(Row {
        key: "limits.max_connections_per_member",
        value: config.limits.connections_per_member.to_string(),
        source: src(
            "max_connections_per_member",
            limits_file.is_some_and(|l| l.max_connections_per_member.is_some()),
        ),
    });
    rows.push(Row {
        key: "limits.max_streams_per_connection",
        value: config.limits.streams_per_connection.to_string(),
        source: src(
            "max_streams_per_connection",
            limits_file.is_some_and(|l| l.max_streams_per_connection.is_some()),
        ),
    });
    rows
}

/// The HTTP endpoint's keys: given, or generated once and kept in the data dir.
fn stored_unless(source: Source) -> Source {
    if source == Source::Default {
        Source::Stored
    } else {
        source
    }
}

/// The rows as aligned text: key, value, and where it came from.
pub fn render(rows: &[Row]) -> String {
    let key_width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let mut out = String::new();
    for row in rows {
        let _ = writeln!(out, "{:key_width$}  {}  ({})", row.key, row.value, row.source.label());
    }
    out
}

/// What `config init` writes: every key commented out, with its default or an example, so
/// that uncommenting a line is all a change takes (relay.json accepts `//` comments and trailing
/// commas).
pub const EXAMPLE: &str = r#"{
  // haven-relay's relay.json. Flags and HAVEN_RELAY_* variables win over what is here;
  // `haven-relay config show --config THIS_FILE` prints what is in effect and why.
  // Uncomment a line to change a setting; values are the defaults unless marked "example".

  // Where the relay keeps its store, credentials and identity.
  // "data_dir": "/home/you/.haven-relay",

  // The plain-HTTP S3 endpoint (off unless set here or with --s3 / --s3-addr).
  // "s3_addr": "127.0.0.1:8333",
  // /health, /ready and /metrics (Prometheus) for monitoring (example; default: off).
  // "ops_addr": "127.0.0.1:9090",
  // HTTPS on it: a PEM certificate chain and key (example), re-read when they change.
  // "tls_cert": "/etc/letsencrypt/live/relay.example.org/fullchain.pem",
  // "tls_key": "/etc/letsencrypt/live/relay.example.org/privkey.pem",
  // Host names clients reach the S3 endpoint by (virtual-hosted style on <bucket>.NAME).
  // "s3_domains": ["relay.example.org"],
  // Largest object accepted, in bytes (5 GiB).
  // "max_object_size": 5368709120,
  // Storage quota for the whole relay: bytes or "500M", "2G" (example; default: none).
  // "max_storage": "20G",
  // Storage quotas of single buckets (example; default: none).
  // "bucket_quotas": {"photos": "10G"},
  // How long objects live in buckets without lifecycle rules (example; default: for good).
  // "ttl": "30d",
  // Unfinished multipart uploads are aborted after this many days.
  // "incomplete_upload_days": 7,
  // A connection-only relay: store nothing.
  // "no_storage": false,

  // Storage: several backends mirror each other; none means <data_dir>/store.
  // "backends": ["fs:/mnt/usb/haven", "rclone:mydrive:haven", "s3://bucket?endpoint=https://…&credentials=r2"],
  // "s3_credentials": {"r2": {"access_key_id": "…", "secret_access_key": "…"}},
  // "ack": "all",
  // "backend_timeout_secs": 30,
  // "scrub_rate": 8388608,

  // The iroh tunnel: "default" (n0's relays, works behind NAT), "disabled", or your own relay's URL.
  // "iroh_relay": "default",
  // UDP address for the tunnel (example; default: all interfaces, the ports of the last run).
  // "iroh_addr": "0.0.0.0:4433",

  // The mailbox: messages held for members who are offline.
  // "mailbox": {
  //   "max_message_bytes": 1048576,
  //   "max_queued_messages": 1000,
  //   "max_queued_bytes": 50000000,
  //   "posts_per_minute": 600,
  //   "max_total_bytes": 1073741824,
  //   "default_lifetime_days": 30,
  //   "max_lifetime_days": 120,
  // },

  // The switchboard: pipes between members who cannot reach each other.
  // "switchboard": {
  //   "pipes_per_member": 16,
  //   // Per member, all its pipes together (example; default: no limit).
  //   "bytes_per_second": 1048576,
  // },

  // What clients may take of the relay.
  // "limits": {
  //   // HTTP connections at once; past it a new one replaces the one idle longest.
  //   "max_connections": 4096,
  //   // Seconds to send a request's headers; also an idle keep-alive connection's life.
  //   "header_timeout_secs": 20,
  //   // Per client: the access key over HTTP, a member over the tunnel (example; default: no limit).
  //   "requests_per_second": 100,
  //   // Over the tunnel: connections one member may hold (past it, its oldest is closed),
  //   // and requests one connection may have in flight.
  //   "max_connections_per_member": 16,
  //   "max_streams_per_connection": 1024,
  // },
}
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_parses_and_sets_nothing() {
        let file: crate::config::ConfigFile = serde_json::from_str(&crate::jsonc::strip(super::EXAMPLE)).unwrap();
        assert!(file.data_dir.is_none() && file.s3_addr.is_none() && file.mailbox.is_none());
    }

    #[test]
    fn every_commented_key_is_a_real_key() {
        // Uncommenting every line must give a file relay.json accepts (no unknown keys).
        let uncommented: String = super::EXAMPLE
            .lines()
            .filter(|l| {
                l.trim_start().starts_with("// \"") || l.trim_start().starts_with("//   ") || l.trim() == "// },"
            })
            .map(|l| l.replacen("//", "", 1))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("{{{uncommented}}}");
        let parsed: Result<crate::config::ConfigFile, _> = serde_json::from_str(&crate::jsonc::strip(&text));
        assert!(parsed.is_ok(), "{text}\n{parsed:?}");
    }
}
