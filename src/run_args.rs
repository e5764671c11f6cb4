//! `run`'s arguments (shared with `config show` and `doctor`) and their resolution into a
//! [`RelayConfig`], with one precedence for every setting: flag > environment > relay.json >
//! default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use backends::mirror::{AckPolicy, MirrorOptions};
use backends::spec::{BackendSpec, ConnectOptions, S3Keys};
use clap::Args;
use tunnel::RelayChoice;

use crate::config::{ConfigFile, DEFAULT_S3_ADDR, RelayConfig, StorageConfig};
use crate::credentials;

#[derive(Args)]
pub struct StorageArgs {
    /// A storage backend, repeatable: fs:PATH, s3://BUCKET?endpoint=URL&region=R or
    /// rclone:REMOTE:PATH. Several backends mirror each other. Default: <data-dir>/store.
    #[arg(long = "backend", value_name = "URI")]
    pub backends: Vec<BackendSpec>,
    /// Short for --backend rclone:REMOTE:PATH, for a remote in your rclone.conf.
    #[arg(long = "rclone-remote", value_name = "REMOTE:PATH")]
    pub rclone_remotes: Vec<String>,
    /// The rclone.conf to use (default: rclone's own).
    #[arg(long, env = "HAVEN_RELAY_RCLONE_CONFIG")]
    pub rclone_config: Option<PathBuf>,
    /// The rclone binary (default: rclone on PATH).
    #[arg(long, env = "HAVEN_RELAY_RCLONE_BIN")]
    pub rclone_bin: Option<PathBuf>,
    /// When a write to several backends is acknowledged: `all` (every healthy one, the
    /// default) or `quorum:N` (at least N).
    #[arg(long)]
    pub ack: Option<AckPolicy>,
    /// Seconds one attempt of a remote backend operation may take (default 30).
    #[arg(long)]
    pub backend_timeout: Option<u64>,
    /// Adopt backends that belong to another relay (one whose data dir is gone for good) and
    /// rebuild the catalog from them.
    #[arg(long)]
    pub take_over: bool,
    /// Bytes per second the background scrub may read to check every copy on the mirrors
    /// (default 8 MiB/s; 0 turns it off).
    #[arg(long, env = "HAVEN_RELAY_SCRUB_RATE")]
    pub scrub_rate: Option<u64>,
    /// A relay.json whose settings apply where no flag or variable is given.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl StorageArgs {
    /// Flags first, then relay.json, then the defaults. S3 keys come only from the
    /// environment and relay.json.
    pub fn resolve(&self, file: &ConfigFile) -> anyhow::Result<StorageConfig> {
        let mut backends = self.backends.clone();
        for remote in &self.rclone_remotes {
            backends.push(format!("rclone:{remote}").parse()?);
        }
        if backends.is_empty() {
            for uri in file.backends.iter().flatten() {
                backends.push(uri.parse().context("backends in the config file")?);
            }
        }
        let mut connect = ConnectOptions::default();
        if let Some(bin) = self.rclone_bin.clone().or(file.rclone_bin.clone()) {
            connect.rclone_binary = bin;
        }
        connect.rclone_config = self.rclone_config.clone().or(file.rclone_config.clone());
        connect.named_keys = file.s3_credentials.clone().unwrap_or_default();
        connect.env_keys = match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(access_key_id), Ok(secret_access_key)) => Some(S3Keys {
                access_key_id,
                secret_access_key,
            }),
            _ => None,
        };
        if let Some(secs) = self.backend_timeout.or(file.backend_timeout_secs) {
            connect.timeout = Duration::from_secs(secs.max(1));
        }
        let mut mirror = MirrorOptions::default();
        match (&self.ack, &file.ack) {
            (Some(ack), _) => mirror.ack = *ack,
            (None, Some(text)) => {
                mirror.ack = text
                    .parse::<backends::mirror::AckPolicy>()
                    .context("ack in the config file")?
            }
            (None, None) => {}
        }
        mirror.take_over = self.take_over;
        if let Some(secs) = file.repair_interval_secs {
            mirror.repair_interval = Duration::from_secs(secs.max(1));
        }
        if let Some(rate) = self.scrub_rate.or(file.scrub_rate) {
            mirror.scrub_rate = rate;
        }
        if let Some(hours) = file.scrub_interval_hours {
            mirror.scrub_interval = Duration::from_secs(hours.max(1) * 3600);
        }
        Ok(StorageConfig {
            backends,
            connect,
            mirror,
        })
    }

    pub fn file(&self) -> anyhow::Result<ConfigFile> {
        match &self.config {
            Some(path) => ConfigFile::load(path),
            None => Ok(ConfigFile::default()),
        }
    }
}

#[derive(Args)]
pub struct TunnelArgs {
    /// iroh relay servers: `default` (n0's, works behind NAT), `disabled` (direct addresses
    /// only), or the URL of a self-hosted iroh relay.
    #[arg(long, env = "HAVEN_RELAY_IROH_RELAY")]
    pub iroh_relay: Option<RelayChoice>,
    /// UDP address for the tunnel (default: all interfaces, any port).
    #[arg(long, env = "HAVEN_RELAY_IROH_ADDR")]
    pub iroh_addr: Option<SocketAddr>,
    /// PEM certificate(s) to trust for a self-hosted iroh relay with a private CA.
    #[arg(long, env = "HAVEN_RELAY_IROH_RELAY_CA")]
    pub iroh_relay_ca: Option<PathBuf>,
}

impl TunnelArgs {
    /// Flags first, then the config file's values, then the defaults.
    pub fn options(&self, file: &ConfigFile) -> anyhow::Result<tunnel::EndpointOptions> {
        let relay = match (&self.iroh_relay, &file.iroh_relay) {
            (Some(choice), _) => choice.clone(),
            (None, Some(text)) => text.parse().context("iroh_relay in the config file")?,
            (None, None) => RelayChoice::Default,
        };
        let relay_ca = match self.iroh_relay_ca.as_ref().or(file.iroh_relay_ca.as_ref()) {
            Some(path) => tunnel::endpoint::load_ca(path)?,
            None => Vec::new(),
        };
        Ok(tunnel::EndpointOptions {
            relay,
            bind: self.iroh_addr.or(file.iroh_addr),
            bind_also: None,
            relay_ca,
        })
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// The circle link from the app (`haven-relay://circle#…`); remembered for later runs.
    /// Empty means none (so a container can pass an unset variable).
    #[arg(long, env = "HAVEN_RELAY_LINK")]
    pub link: Option<String>,
    /// Serve the S3 API over plain HTTP (SigV4 required).
    #[arg(long)]
    s3: bool,
    /// Address of the HTTP S3 endpoint (implies --s3; --s3 alone means 127.0.0.1:8333).
    #[arg(long, env = "HAVEN_RELAY_S3_ADDR")]
    s3_addr: Option<SocketAddr>,
    /// Port of the HTTP S3 endpoint on 127.0.0.1 (implies --s3; wins over --s3-addr and
    /// HAVEN_RELAY_S3_ADDR).
    #[arg(long)]
    s3_port: Option<u16>,
    /// Serve /health, /ready and /metrics (Prometheus) on this address (default: off). Keep
    /// it on loopback or a private network.
    #[arg(long, env = "HAVEN_RELAY_OPS_ADDR")]
    ops_addr: Option<SocketAddr>,
    /// Serve the S3 endpoint over HTTPS with this certificate chain (PEM, with --tls-key);
    /// re-read when the file changes, so a renewal needs no restart.
    #[arg(long, env = "HAVEN_RELAY_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "HAVEN_RELAY_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// A host name clients reach this relay by (repeatable; `localhost` and IP addresses
    /// always work): path-style on it, virtual-hosted style on `<bucket>.<name>`. Requests
    /// to other dotted names are refused, since their bucket could be misread.
    #[arg(long = "s3-domain", env = "HAVEN_RELAY_S3_DOMAINS", value_delimiter = ',')]
    s3_domains: Vec<String>,
    /// Unfinished multipart uploads older than this many days are aborted (default 7).
    #[arg(long, env = "HAVEN_RELAY_INCOMPLETE_UPLOAD_DAYS", value_parser = clap::value_parser!(u64).range(1..))]
    pub incomplete_upload_days: Option<u64>,
    /// Largest object accepted, in bytes (default 5 GiB).
    #[arg(long, env = "HAVEN_RELAY_MAX_OBJECT_SIZE")]
    pub max_object_size: Option<u64>,
    /// Storage quota for the whole relay: bytes, or with a unit such as 500M, 2G, 1T (powers of
    /// 1024; 2GB is 2,000,000,000). Writes past it get 403 QuotaExceeded (default: none).
    #[arg(long, env = "HAVEN_RELAY_MAX_STORAGE", value_name = "SIZE")]
    pub max_storage: Option<crate::byte_size::ByteSize>,
    /// A storage quota for one bucket, as NAME=SIZE (repeatable; SIZE as for --max-storage).
    /// Writes past it get 403 QuotaExceeded; other buckets are not held by it.
    #[arg(
        long = "bucket-quota",
        env = "HAVEN_RELAY_BUCKET_QUOTAS",
        value_delimiter = ',',
        value_name = "NAME=SIZE"
    )]
    pub bucket_quotas: Vec<String>,
    /// How long objects live in buckets that have no lifecycle rules of their own: days, such
    /// as 30d or 2w (default: for good). Expired objects vanish at once and their bytes are
    /// deleted within the hour; like S3 rules, expiry is kept to the day.
    #[arg(long, env = "HAVEN_RELAY_TTL", value_name = "DAYS")]
    pub ttl: Option<crate::lifetime::Lifetime>,
    /// Connection-only relay: store nothing; S3 requests are refused with NotImplemented.
    /// `--no-storage=false` turns off a relay.json `no_storage: true`.
    #[arg(long, env = "HAVEN_RELAY_NO_STORAGE", num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_storage: Option<bool>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub tunnel: TunnelArgs,
    #[command(flatten)]
    pub mailbox: crate::mail::MailboxArgs,
    #[command(flatten)]
    pub switchboard: crate::pipe::SwitchboardArgs,
    #[command(flatten)]
    pub limits: crate::limit_args::LimitArgs,
}

/// `NAME=SIZE`, as `--bucket-quota` takes it.
fn parse_bucket_quota(pair: &str) -> anyhow::Result<(String, u64)> {
    let (name, size) = pair
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--bucket-quota {pair:?}: write NAME=SIZE, such as photos=10G"))?;
    let size: crate::byte_size::ByteSize = size.parse().with_context(|| format!("--bucket-quota {pair:?}"))?;
    let name = name.trim();
    anyhow::ensure!(!name.is_empty(), "--bucket-quota {pair:?}: the bucket name is missing");
    Ok((name.to_owned(), size.0))
}

/// The HTTP endpoint's keys, shared by `run` and `credentials` so the two never disagree.
#[derive(Args)]
pub struct KeyArgs {
    /// Access key for the HTTP S3 endpoint (default: the stored one).
    #[arg(long, env = "HAVEN_RELAY_ACCESS_KEY", hide_env_values = true)]
    pub access_key: Option<String>,
    /// Secret key for the HTTP S3 endpoint (default: the stored one).
    #[arg(long, env = "HAVEN_RELAY_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
}

impl KeyArgs {
    pub fn resolve(&self, data_dir: &Path) -> anyhow::Result<credentials::Credentials> {
        credentials::resolve(data_dir, self.access_key.clone(), self.secret_key.clone())
    }
}

/// Everything `run` is told, resolved with one precedence: flag > environment > relay.json >
/// default (clap gives a flag precedence over its variable). No side effects: `config show`
/// uses it too. The tunnel's options are resolved here; whether there is a tunnel depends on
/// the circle, which `run` decides.
pub fn resolve_run(data_dir: Option<PathBuf>, args: &RunArgs) -> anyhow::Result<(RelayConfig, ConfigFile)> {
    let file = args.storage.file()?;
    let mut config = RelayConfig::new(crate::config::data_dir(data_dir, &file));
    config.storage = args.storage.resolve(&file)?;
    let s3_addr = args
        .s3_port
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .or(args.s3_addr)
        .or(file.s3_addr);
    if args.s3 || s3_addr.is_some() {
        config.s3_addr = Some(s3_addr.unwrap_or_else(|| DEFAULT_S3_ADDR.parse().expect("valid default")));
    }
    config.tls = match (
        args.tls_cert.clone().or(file.tls_cert.clone()),
        args.tls_key.clone().or(file.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some(gateway::TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate and its key: --tls-cert and --tls-key"),
    };
    anyhow::ensure!(
        config.tls.is_none() || config.s3_addr.is_some(),
        "--tls-cert and --tls-key are for the S3 endpoint: add --s3 or --s3-addr"
    );
    config.ops_addr = args.ops_addr.or(file.ops_addr);
    config.no_storage = args.no_storage.or(file.no_storage).unwrap_or(false);
    if let Some(days) = args.incomplete_upload_days.or(file.incomplete_upload_days) {
        anyhow::ensure!(days >= 1, "incomplete_upload_days must be at least 1");
        config.incomplete_upload_max_age = Duration::from_secs(days * 24 * 3600);
    }
    if let Some(max) = args.max_object_size.or(file.max_object_size) {
        anyhow::ensure!(max >= 1, "max_object_size must be at least 1 byte");
        config.max_object_size = max;
    }
    config.max_storage = args.max_storage.or(file.max_storage).map(|b| b.0);
    anyhow::ensure!(config.max_storage != Some(0), "max_storage must be more than 0");
    config.ttl = args.ttl.or(file.ttl);
    config.bucket_quotas = if args.bucket_quotas.is_empty() {
        file.bucket_quotas
            .iter()
            .flatten()
            .map(|(name, size)| (name.clone(), size.0))
            .collect()
    } else {
        args.bucket_quotas
            .iter()
            .map(|pair| parse_bucket_quota(pair))
            .collect::<anyhow::Result<_>>()?
    };
    for (name, size) in &config.bucket_quotas {
        anyhow::ensure!(*size > 0, "the quota of bucket {name:?} must be more than 0");
    }
    config.mailbox = args.mailbox.resolve(file.mailbox.as_ref())?;
    config.switchboard = args.switchboard.resolve(file.switchboard.as_ref())?;
    config.limits = args.limits.resolve(file.limits.as_ref())?;
    config.s3_domains = if args.s3_domains.is_empty() {
        file.s3_domains.clone().unwrap_or_default()
    } else {
        args.s3_domains.clone()
    };
    for domain in &config.s3_domains {
        anyhow::ensure!(
            crate::config::valid_domain(domain),
            "--s3-domain {domain:?} is not a host name (letters, digits, '-' and dots, no port)"
        );
    }
    config.tunnel = Some(args.tunnel.options(&file)?);
    Ok((config, file))
}
