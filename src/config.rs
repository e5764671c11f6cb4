//! One `RelayConfig`, filled from flags, environment variables and `relay.json` alike.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use backends::mirror::MirrorOptions;
use backends::spec::{BackendSpec, ConnectOptions, S3Keys};
use serde::Deserialize;

/// Default plain-HTTP S3 address: loopback only, so nothing is exposed by accident.
pub const DEFAULT_S3_ADDR: &str = "127.0.0.1:8333";

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub data_dir: PathBuf,
    /// The plain-HTTP S3 listener, if any.
    pub s3_addr: Option<SocketAddr>,
    /// The iroh tunnel, if any.
    pub tunnel: Option<tunnel::EndpointOptions>,
    pub max_object_size: u64,
    /// A connection-only relay: no store is opened and S3 requests are refused.
    pub no_storage: bool,
    /// Where objects go when storage is on.
    pub storage: StorageConfig,
    /// Host names the relay answers to besides `localhost` and IP addresses (`--s3-domain`).
    pub s3_domains: Vec<String>,
    /// Unfinished multipart uploads older than this are aborted (`--incomplete-upload-days`).
    pub incomplete_upload_max_age: std::time::Duration,
    /// How often they are looked for.
    pub incomplete_upload_check: std::time::Duration,
    /// What the mailbox holds and accepts (`--mailbox-*`).
    pub mailbox: mailbox::Limits,
    /// How often expired messages are looked for.
    pub mailbox_sweep: std::time::Duration,
    /// What one member may use of the switchboard (`--switch-*`).
    pub switchboard: tunnel::SwitchLimits,
    /// What clients may take of the relay (`--max-connections`, `--requests-per-second`, …).
    pub limits: crate::limit_args::Limits,
    /// HTTPS on the S3 endpoint (`--tls-cert`, `--tls-key`).
    pub tls: Option<gateway::TlsFiles>,
    /// The ops listener: `/health`, `/ready`, `/metrics` (`--ops-addr`).
    pub ops_addr: Option<SocketAddr>,
    /// Bytes the relay may hold in all (`--max-storage`); `None`: no quota.
    pub max_storage: Option<u64>,
    /// Bytes named buckets may hold (`--bucket-quota NAME=SIZE`).
    pub bucket_quotas: std::collections::BTreeMap<String, u64>,
    /// How long objects live in buckets without lifecycle rules (`--ttl`); `None`: for good.
    pub ttl: Option<crate::lifetime::Lifetime>,
    /// How often the bytes of expired objects are looked for and deleted.
    pub expiry_sweep: std::time::Duration,
    /// Where expiry reads the time (mailbox and lifecycle rules); tests move it by days.
    pub clock: std::sync::Arc<dyn backends::clock::Clock>,
}

/// The backends and how to reach them. No backends: the embedded store in `<data-dir>/store`.
#[derive(Debug, Clone, Default)]
pub struct StorageConfig {
    pub backends: Vec<BackendSpec>,
    pub connect: ConnectOptions,
    pub mirror: MirrorOptions,
}

impl RelayConfig {
    /// No transport yet: set `s3_addr` and/or `tunnel`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            s3_addr: None,
            tunnel: None,
            max_object_size: gateway::GatewayConfig::DEFAULT_MAX_OBJECT_SIZE,
            no_storage: false,
            storage: StorageConfig::default(),
            s3_domains: Vec::new(),
            incomplete_upload_max_age: backends::upload_expiry::DEFAULT_MAX_AGE,
            incomplete_upload_check: std::time::Duration::from_secs(3600),
            mailbox: mailbox::Limits::default(),
            mailbox_sweep: std::time::Duration::from_secs(15 * 60),
            switchboard: tunnel::SwitchLimits::default(),
            limits: crate::limit_args::Limits::default(),
            tls: None,
            ops_addr: None,
            max_storage: None,
            ttl: None,
            bucket_quotas: Default::default(),
            expiry_sweep: std::time::Duration::from_secs(3600),
            clock: std::sync::Arc::new(backends::clock::SystemClock),
        }
    }

    /// The embedded default store.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }
}

/// `relay.json`: every field optional; flags and environment variables win over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub s3_addr: Option<SocketAddr>,
    /// As for `--ops-addr`.
    pub ops_addr: Option<SocketAddr>,
    /// As for `--tls-cert` and `--tls-key`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_object_size: Option<u64>,
    /// As for `--max-storage`: bytes, or a string such as "500M" or "2G".
    pub max_storage: Option<crate::byte_size::ByteSize>,
    /// As for `--bucket-quota`: `{"photos": "10G"}`.
    pub bucket_quotas: Option<std::collections::BTreeMap<String, crate::byte_size::ByteSize>>,
    /// As for `--ttl`: days, or a string such as "30d".
    pub ttl: Option<crate::lifetime::Lifetime>,
    /// `default`, `disabled` or a relay URL, as for `--iroh-relay`.
    pub iroh_relay: Option<String>,
    pub iroh_addr: Option<SocketAddr>,
    pub iroh_relay_ca: Option<PathBuf>,
    pub no_storage: Option<bool>,
    /// As for `--s3-domain`.
    pub s3_domains: Option<Vec<String>>,
    /// As for `--incomplete-upload-days`.
    pub incomplete_upload_days: Option<u64>,
    /// Backend URIs, as for `--backend`.
    pub backends: Option<Vec<String>>,
    /// Named S3 key pairs that `s3://...&credentials=NAME` backends refer to.
    pub s3_credentials: Option<HashMap<String, S3Keys>>,
    /// `all` or `quorum:N`.
    pub ack: Option<String>,
    pub rclone_bin: Option<PathBuf>,
    pub rclone_config: Option<PathBuf>,
    /// Per attempt of one remote backend operation.
    pub backend_timeout_secs: Option<u64>,
    pub repair_interval_secs: Option<u64>,
    /// As for `--scrub-rate`.
    pub scrub_rate: Option<u64>,
    /// Hours from the start of one scrub round to the next.
    pub scrub_interval_hours: Option<u64>,
    /// The mailbox's limits, as for the `--mailbox-*` flags.
    pub mailbox: Option<MailboxFile>,
    /// The switchboard's limits, as for the `--switch-*` flags.
    pub switchboard: Option<SwitchboardFile>,
    /// Client limits, as for `--max-connections`, `--header-timeout-secs` and
    /// `--requests-per-second`.
    pub limits: Option<crate::limit_args::LimitsFile>,
}

/// `relay.json`'s `switchboard` object; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SwitchboardFile {
    pub pipes_per_member: Option<usize>,
    pub bytes_per_second: Option<u32>,
}

/// `relay.json`'s `mailbox` object; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct MailboxFile {
    pub max_message_bytes: Option<u64>,
    pub max_queued_messages: Option<usize>,
    pub max_queued_bytes: Option<u64>,
    pub posts_per_minute: Option<u32>,
    pub max_total_bytes: Option<u64>,
    pub default_lifetime_days: Option<u16>,
    pub max_lifetime_days: Option<u16>,
    pub max_hops: Option<u8>,
    /// Memory for recent messages' payloads, delivered without a store read (32 MiB).
    pub memory_cache_bytes: Option<u64>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&crate::jsonc::strip(&text)).with_context(|| format!("parsing {}", path.display()))
    }
}

/// A host name for `--s3-domain`: dot-separated labels of letters, digits and '-'.
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `~/.haven-relay`, or `./.haven-relay` when there is no home directory.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(
        || PathBuf::from(".haven-relay"),
        |h| PathBuf::from(h).join(".haven-relay"),
    )
}

/// The data dir: `--data-dir` or `HAVEN_RELAY_DATA_DIR` (clap hands either over as one),
/// then relay.json's `data_dir`, then `~/.haven-relay`.
pub fn data_dir(flag_or_env: Option<PathBuf>, file: &ConfigFile) -> PathBuf {
    flag_or_env
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(default_data_dir)
}
