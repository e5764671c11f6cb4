//! `haven-relay`: the command line. Each subcommand is one plain async function.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use backends::mirror::{AckPolicy, MirrorOptions};
use backends::spec::{BackendSpec, ConnectOptions, S3Keys};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use haven_relay::config::{ConfigFile, DEFAULT_S3_ADDR, StorageConfig, default_data_dir};
use haven_relay::{Relay, RelayConfig, circle, credentials};
use tunnel::link::{CircleLink, RelayLink};
use tunnel::{EndpointId, RelayChoice};

/// Prints a line to stdout. A reader that went away (`haven-relay link | head -1`) is no
/// reason to panic, which `println!` does; what it did not read is simply not printed.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "haven-relay",
    version,
    about = "An always-on S3 relay for a private circle of friends"
)]
struct Cli {
    /// Where the relay keeps its store, credentials and identity.
    #[arg(long, global = true, env = "HAVEN_RELAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the relay.
    Run(Box<RunArgs>),
    /// Print the access key and secret the HTTP S3 endpoint uses (with the same flags,
    /// environment and relay.json as `run`).
    Credentials(CredentialsArgs),
    /// Print this data dir's node id (what a circle adds as a member).
    Id,
    /// Print the link (and QR code) an app scans to add this relay.
    Link,
    /// Show the configuration `run` would use and where each value comes from, or write a
    /// commented relay.json to start from.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Exit 0 if a relay is running on this data dir (from the heartbeat it writes every
    /// 5 s; no port or network needed), 1 otherwise. For Docker's HEALTHCHECK and monitoring.
    Health,
    /// Show or change who may reach this relay through the tunnel.
    Members {
        #[command(subcommand)]
        action: MembersAction,
    },
    /// Forward a local TCP port to a relay over the tunnel, for standard S3 tools.
    Connect(ConnectArgs),
    /// Round-trip a small blob through every configured backend and report on each.
    Doctor(DoctorArgs),
    /// Leave a sealed message at a relay for members who may be offline. The exit status
    /// is the relay's answer: 0 stored, 10 + the status code otherwise (see docs).
    Send(SendArgs),
    /// Receive the messages a relay holds for this node, acknowledging each once written.
    Inbox(InboxArgs),
    /// Join stdin and stdout to another member through the relay's switchboard.
    Pipe(PipeArgs),
}

#[derive(Args)]
struct PipeArgs {
    /// The relay's link (`haven-relay://relay#…`).
    relay_link: String,
    /// Call this member: send stdin until its end, print what comes back.
    #[arg(long, conflicts_with = "accept", required_unless_present = "accept")]
    to: Option<EndpointId>,
    /// Wait for one member to call, join it to stdin/stdout, exit when the pipe closes.
    #[arg(long)]
    accept: bool,
    #[command(flatten)]
    tunnel: TunnelArgs,
}

#[derive(Args)]
struct SendArgs {
    /// The relay's link (`haven-relay://relay#…`).
    relay_link: String,
    /// A recipient's node id (repeatable: the message is stored once for all of them).
    #[arg(long = "to", required = true)]
    to: Vec<EndpointId>,
    /// The message: a file, or `-` (the default) for stdin.
    #[arg(default_value = "-")]
    file: PathBuf,
    /// Days the relay keeps it if undelivered (default: the relay's, 30).
    #[arg(long, default_value_t = 0)]
    lifetime_days: u16,
    /// The message id (32 hex digits), to retry a send without it arriving twice
    /// (default: a random one, printed).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    tunnel: TunnelArgs,
}

#[derive(Args)]
struct InboxArgs {
    /// The relay's link (`haven-relay://relay#…`).
    relay_link: String,
    /// Write each message to DIR/<message id> (default: stdout, one after the other).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep receiving new messages instead of stopping once the queue is empty.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    tunnel: TunnelArgs,
}

#[derive(Args)]
struct StorageArgs {
    /// A storage backend, repeatable: fs:PATH, s3://BUCKET?endpoint=URL&region=R or
    /// rclone:REMOTE:PATH. Several backends mirror each other. Default: <data-dir>/store.
    #[arg(long = "backend", value_name = "URI")]
    backends: Vec<BackendSpec>,
    /// Short for --backend rclone:REMOTE:PATH, for a remote in your rclone.conf.
    #[arg(long = "rclone-remote", value_name = "REMOTE:PATH")]
    rclone_remotes: Vec<String>,
    /// The rclone.conf to use (default: rclone's own).
    #[arg(long, env = "HAVEN_RELAY_RCLONE_CONFIG")]
    rclone_config: Option<PathBuf>,
    /// The rclone binary (default: rclone on PATH).
    #[arg(long, env = "HAVEN_RELAY_RCLONE_BIN")]
    rclone_bin: Option<PathBuf>,
    /// When a write to several backends is acknowledged: `all` (every healthy one) or
    /// `quorum:N` (at least N).
    #[arg(long)]
    ack: Option<AckPolicy>,
    /// Seconds one attempt of a remote backend operation may take.
    #[arg(long)]
    backend_timeout: Option<u64>,
    /// Adopt backends that belong to another relay (one whose data dir is gone for good) and
    /// rebuild the catalog from them.
    #[arg(long)]
    take_over: bool,
    /// Bytes per second the background scrub may read to check every copy on the mirrors
    /// (default 8 MiB/s; 0 turns it off).
    #[arg(long, env = "HAVEN_RELAY_SCRUB_RATE")]
    scrub_rate: Option<u64>,
    /// A relay.json whose settings apply where no flag or variable is given.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl StorageArgs {
    /// Flags first, then relay.json, then the defaults. S3 keys come only from the
    /// environment and relay.json.
    fn resolve(&self, file: &ConfigFile) -> anyhow::Result<StorageConfig> {
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
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!(e))
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

    fn file(&self) -> anyhow::Result<ConfigFile> {
        match &self.config {
            Some(path) => ConfigFile::load(path),
            None => Ok(ConfigFile::default()),
        }
    }
}

#[derive(Args)]
struct DoctorArgs {
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration for these `run` flags (secrets not shown), each
    /// value with its source: flag, environment, relay.json or default.
    Show(Box<RunArgs>),
    /// Write a relay.json with every setting commented out at its default.
    Init {
        /// Where to write it (`-` for stdout).
        #[arg(default_value = "relay.json")]
        path: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum MembersAction {
    List,
    Add { node_id: EndpointId },
    Remove { node_id: EndpointId },
}

#[derive(Args)]
struct TunnelArgs {
    /// iroh relay servers: `default` (n0's, works behind NAT), `disabled` (direct addresses
    /// only), or the URL of a self-hosted iroh relay.
    #[arg(long, env = "HAVEN_RELAY_IROH_RELAY")]
    iroh_relay: Option<RelayChoice>,
    /// UDP address for the tunnel (default: all interfaces, any port).
    #[arg(long, env = "HAVEN_RELAY_IROH_ADDR")]
    iroh_addr: Option<SocketAddr>,
    /// PEM certificate(s) to trust for a self-hosted iroh relay with a private CA.
    #[arg(long, env = "HAVEN_RELAY_IROH_RELAY_CA")]
    iroh_relay_ca: Option<PathBuf>,
}

impl TunnelArgs {
    /// Flags first, then the config file's values, then the defaults.
    fn options(&self, file: &ConfigFile) -> anyhow::Result<tunnel::EndpointOptions> {
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
            relay_ca,
        })
    }
}

#[derive(Args)]
struct RunArgs {
    /// The circle link from the app (`haven-relay://circle#…`); remembered for later runs.
    #[arg(long)]
    link: Option<String>,
    /// Serve the S3 API over plain HTTP (SigV4 required).
    #[arg(long)]
    s3: bool,
    /// Address of the HTTP S3 endpoint (implies --s3).
    #[arg(long, env = "HAVEN_RELAY_S3_ADDR")]
    s3_addr: Option<SocketAddr>,
    /// Port of the HTTP S3 endpoint on 127.0.0.1 (implies --s3).
    #[arg(long, conflicts_with = "s3_addr")]
    s3_port: Option<u16>,
    #[command(flatten)]
    keys: KeyArgs,
    /// A host name clients reach this relay by (repeatable; `localhost` and IP addresses
    /// always work): path-style on it, virtual-hosted style on `<bucket>.<name>`. Requests
    /// to other dotted names are refused, since their bucket could be misread.
    #[arg(long = "s3-domain", env = "HAVEN_RELAY_S3_DOMAINS", value_delimiter = ',')]
    s3_domains: Vec<String>,
    /// Unfinished multipart uploads older than this many days are aborted (default 7).
    #[arg(long, env = "HAVEN_RELAY_INCOMPLETE_UPLOAD_DAYS", value_parser = clap::value_parser!(u64).range(1..))]
    incomplete_upload_days: Option<u64>,
    /// Largest object accepted, in bytes.
    #[arg(long, env = "HAVEN_RELAY_MAX_OBJECT_SIZE")]
    max_object_size: Option<u64>,
    /// Connection-only relay: store nothing; S3 requests are refused with NotImplemented.
    /// `--no-storage=false` turns off a relay.json `no_storage: true`.
    #[arg(long, env = "HAVEN_RELAY_NO_STORAGE", num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    no_storage: Option<bool>,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    tunnel: TunnelArgs,
    #[command(flatten)]
    mailbox: haven_relay::mail::MailboxArgs,
    #[command(flatten)]
    switchboard: haven_relay::pipe::SwitchboardArgs,
}

/// The HTTP endpoint's keys, shared by `run` and `credentials` so the two never disagree.
#[derive(Args)]
struct KeyArgs {
    /// Access key for the HTTP S3 endpoint (default: the stored one).
    #[arg(long, env = "HAVEN_RELAY_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// Secret key for the HTTP S3 endpoint (default: the stored one).
    #[arg(long, env = "HAVEN_RELAY_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
}

impl KeyArgs {
    fn resolve(&self, data_dir: &Path) -> anyhow::Result<credentials::Credentials> {
        credentials::resolve(data_dir, self.access_key.clone(), self.secret_key.clone())
    }
}

#[derive(Args)]
struct CredentialsArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// The relay.json `run` uses (for its data_dir).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ConnectArgs {
    /// The relay's link (`haven-relay://relay#…`), as `haven-relay link` prints it.
    relay_link: String,
    /// Local address to listen on; point S3 clients at http://THIS.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    #[command(flatten)]
    tunnel: TunnelArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,s3s=off,iroh=warn,noq=warn,noq_proto=warn".into()),
        )
        .init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `run`, `doctor` and `credentials` read relay.json, whose data_dir counts only when
    // neither --data-dir nor HAVEN_RELAY_DATA_DIR says otherwise.
    let data_dir_arg = cli.data_dir;
    let data_dir = data_dir_arg.clone().unwrap_or_else(default_data_dir);
    match cli.command {
        Command::Run(args) => run(data_dir_arg, *args).await,
        Command::Credentials(args) => print_credentials(data_dir_arg, &args),
        Command::Id => {
            say!("{}", tunnel::identity::load_or_create(&data_dir)?.public());
            Ok(())
        }
        Command::Link => print_link(&data_dir),
        Command::Config { action } => {
            let show = matches
                .subcommand_matches("config")
                .and_then(|m| m.subcommand_matches("show"));
            match (action, show) {
                (ConfigAction::Show(args), Some(show)) => show_config(data_dir_arg, &args, show),
                (ConfigAction::Init { path, force }, _) => init_config(&path, force),
                (ConfigAction::Show(_), None) => unreachable!("clap parsed `config show`"),
            }
        }
        Command::Health => match haven_relay::health::check(&data_dir) {
            Ok(age) => {
                say!("healthy: the relay's last heartbeat is {age} s old");
                Ok(())
            }
            Err(why) => {
                eprintln!("unhealthy: {why}");
                std::process::exit(1)
            }
        },
        Command::Members { action } => members(&data_dir, action),
        Command::Connect(args) => connect(data_dir, args).await,
        Command::Doctor(args) => doctor(data_dir_arg, args).await,
        Command::Send(args) => send(data_dir, args).await,
        Command::Pipe(args) => {
            let link: RelayLink = args.relay_link.parse().context("relay link")?;
            let options = args.tunnel.options(&ConfigFile::default())?;
            let outcome = match args.to {
                Some(to) => haven_relay::pipe::call(&data_dir, &link, &options, to)
                    .await
                    .map(|sent| format!("{sent} bytes sent, and the far side received everything")),
                None => haven_relay::pipe::accept(&data_dir, &link, &options)
                    .await
                    .map(|caller| format!("the pipe from {caller} closed")),
            };
            // Exit here: a read of a stdin that never ends would otherwise hold the runtime
            // (and the process) open after the pipe has closed.
            let code = match outcome {
                Ok(done) => {
                    eprintln!("{done}");
                    0
                }
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    1
                }
            };
            std::process::exit(code)
        }
        Command::Inbox(args) => {
            let link: RelayLink = args.relay_link.parse().context("relay link")?;
            let options = args.tunnel.options(&ConfigFile::default())?;
            let n = haven_relay::mail::inbox(&data_dir, &link, &options, args.out.as_deref(), args.follow).await?;
            eprintln!("{n} message(s) received");
            Ok(())
        }
    }
}

async fn send(data_dir: PathBuf, args: SendArgs) -> anyhow::Result<()> {
    let link: RelayLink = args.relay_link.parse().context("relay link")?;
    let options = args.tunnel.options(&ConfigFile::default())?;
    let payload = if args.file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?
    };
    let id = match &args.id {
        Some(hex) => mailbox::MessageId::from_hex(hex).context("--id must be 32 hex digits")?,
        None => mailbox::MessageId::random(),
    };
    // First, so that a send whose answer never comes can be retried with `--id`.
    say!("{}", id.to_hex());
    let status = haven_relay::mail::send(
        &data_dir,
        &link,
        &options,
        &args.to,
        payload.into(),
        id,
        args.lifetime_days,
    )
    .await?;
    eprintln!("relay: {status}");
    if !status.is_accepted() {
        std::process::exit(10 + status as i32);
    }
    Ok(())
}

async fn doctor(data_dir: Option<PathBuf>, args: DoctorArgs) -> anyhow::Result<()> {
    let file = args.storage.file()?;
    let mut config = RelayConfig::new(haven_relay::config::data_dir(data_dir, &file));
    config.storage = args.storage.resolve(&file)?;
    if config.storage.backends.is_empty() {
        // The embedded store, seen as a blob directory would only confuse: check the disk.
        let dir = config.store_dir();
        let probe = dir.join(".doctor");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&probe, b"ok"))
            .with_context(|| format!("writing to {}", dir.display()))?;
        std::fs::remove_file(&probe)?;
        say!(
            "embedded store at {}: writable (no --backend configured)",
            dir.display()
        );
        return Ok(());
    }
    let reports = haven_relay::storage::doctor(&config).await?;
    let mut failed = 0;
    for r in &reports {
        say!("{}", r.label);
        match &r.round_trip {
            Ok(took) => say!(
                "  reachable:        yes (round trip {:.1} ms)",
                took.as_secs_f64() * 1000.0
            ),
            Err(why) => {
                failed += 1;
                say!("  reachable:        NO: {why}");
            }
        }
        match r.stored {
            Some((objects, bytes)) => say!("  stored:           {objects} blobs, {bytes} bytes"),
            None => say!("  stored:           unknown"),
        }
        match r.pending_repairs {
            Some(n) => say!("  pending repairs:  {n}"),
            None => say!("  pending repairs:  unknown"),
        }
    }
    match backends::mirror::ScrubProgress::load(&config.data_dir.join("catalog")) {
        Some(p) => match p.round_finished {
            Some(_) => say!(
                "scrub: {} round(s) done; the last checked {} copies ({} bytes), {} bad and repaired",
                p.rounds_completed,
                p.copies_checked,
                p.bytes_checked,
                p.bad_copies
            ),
            None => say!(
                "scrub: round {} under way, {} copies ({} bytes) checked so far, {} bad",
                p.rounds_completed + 1,
                p.copies_checked,
                p.bytes_checked,
                p.bad_copies
            ),
        },
        None => say!("scrub: no round recorded yet"),
    }
    if let Ok(version) = backends::rclone::version(&backends::rclone::RcloneOptions {
        binary: config.storage.connect.rclone_binary.clone(),
        config: None,
        remote: String::new(),
    })
    .await
        && config
            .storage
            .backends
            .iter()
            .any(|b| matches!(b, BackendSpec::Rclone { .. }))
    {
        say!("rclone: {version}");
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} backends failed the round trip",
        reports.len()
    );
    Ok(())
}

/// Everything `run` is told, resolved with one precedence: flag > environment > relay.json >
/// default (clap gives a flag precedence over its variable). No side effects: `config show`
/// uses it too. The tunnel's options are resolved here; whether there is a tunnel depends on
/// the circle, which `run` decides.
fn resolve_run(data_dir: Option<PathBuf>, args: &RunArgs) -> anyhow::Result<(RelayConfig, ConfigFile)> {
    let file = args.storage.file()?;
    let mut config = RelayConfig::new(haven_relay::config::data_dir(data_dir, &file));
    config.storage = args.storage.resolve(&file)?;
    let s3_addr = args
        .s3_addr
        .or(args.s3_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))))
        .or(file.s3_addr);
    if args.s3 || s3_addr.is_some() {
        config.s3_addr = Some(s3_addr.unwrap_or_else(|| DEFAULT_S3_ADDR.parse().expect("valid default")));
    }
    config.no_storage = args.no_storage.or(file.no_storage).unwrap_or(false);
    if let Some(days) = args.incomplete_upload_days.or(file.incomplete_upload_days) {
        anyhow::ensure!(days >= 1, "incomplete_upload_days must be at least 1");
        config.incomplete_upload_max_age = Duration::from_secs(days * 24 * 3600);
    }
    if let Some(max) = args.max_object_size.or(file.max_object_size) {
        config.max_object_size = max;
    }
    config.mailbox = args.mailbox.resolve(file.mailbox.as_ref())?;
    config.switchboard = args.switchboard.resolve(file.switchboard.as_ref())?;
    config.s3_domains = if args.s3_domains.is_empty() {
        file.s3_domains.clone().unwrap_or_default()
    } else {
        args.s3_domains.clone()
    };
    for domain in &config.s3_domains {
        anyhow::ensure!(
            haven_relay::config::valid_domain(domain),
            "--s3-domain {domain:?} is not a host name (letters, digits, '-' and dots, no port)"
        );
    }
    config.tunnel = Some(args.tunnel.options(&file)?);
    Ok((config, file))
}

async fn run(data_dir: Option<PathBuf>, args: RunArgs) -> anyhow::Result<()> {
    let (mut config, _) = resolve_run(data_dir, &args)?;
    if let Some(link) = &args.link {
        let link: CircleLink = link.parse().context("--link")?;
        circle::join(&config.data_dir, &link)?;
    }
    let circle = circle::load(&config.data_dir)?;
    if circle.is_none() {
        config.tunnel = None;
    }
    if config.s3_addr.is_none() && config.tunnel.is_none() {
        anyhow::bail!(
            "nothing to serve: pass --link with the circle link from the app (once; it is remembered), \
             and/or --s3 for the plain-HTTP S3 endpoint"
        );
    }
    let creds = args.keys.resolve(&config.data_dir)?;
    let relay = Relay::start(&config, &creds).await?;
    say!("haven-relay {} is running", env!("CARGO_PKG_VERSION"));
    if config.no_storage {
        say!("  data:         none (--no-storage: S3 requests and mailbox posts are refused)");
    } else if config.storage.backends.is_empty() {
        say!("  data:         {}", config.store_dir().display());
    } else {
        for backend in &config.storage.backends {
            say!("  backend:      {backend}");
        }
    }
    if let Some(endpoint) = relay.endpoint() {
        say!("  S3 endpoint:  {endpoint} (SigV4, region us-east-1)");
        let names: Vec<&str> = ["localhost"]
            .into_iter()
            .chain(config.s3_domains.iter().map(String::as_str))
            .collect();
        say!(
            "  host names:   IP addresses, {} (path-style; <bucket>.NAME virtual-hosted); add others with --s3-domain",
            names.join(", ")
        );
        say!(
            "  credentials:  haven-relay credentials --data-dir {}",
            config.data_dir.display()
        );
    }
    if let (Some(endpoint), Some(circle)) = (relay.tunnel_endpoint(), &circle) {
        if config.tunnel.as_ref().is_some_and(|t| t.relay != RelayChoice::Disabled) {
            // The link should name the home relay; give it a moment to be chosen.
            let _ = tokio::time::timeout(Duration::from_secs(10), endpoint.online()).await;
        }
        let link = tunnel::endpoint::relay_link(endpoint, circle.circle);
        circle::save_relay_link(&config.data_dir, &link)?;
        say!("  node id:      {}", endpoint.id());
        say!(
            "  circle:       {} ({} members)",
            circle.circle,
            tunnel::members::load(&config.data_dir)?.len()
        );
        say!("  relay link:   {link}");
        say!("{}", qr(&link.to_string()));
        say!("Scan the code (or paste the relay link) in the app to add this relay.");
    }
    say!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    tracing::info!("stopping: finishing in-flight requests");
    relay.shutdown().await;
    Ok(())
}

fn show_config(data_dir: Option<PathBuf>, args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let (config, file) = resolve_run(data_dir, args)?;
    let creds = args.keys.resolve(&config.data_dir)?;
    let rows = haven_relay::config_report::rows(matches, &config, &file, &creds);
    say!("{}", haven_relay::config_report::render(&rows).trim_end());
    Ok(())
}

fn init_config(path: &Path, force: bool) -> anyhow::Result<()> {
    let example = haven_relay::config_report::EXAMPLE;
    if path == Path::new("-") {
        say!("{}", example.trim_end());
        return Ok(());
    }
    anyhow::ensure!(
        force || !path.exists(),
        "{} exists; pass --force to replace it",
        path.display()
    );
    std::fs::write(path, example).with_context(|| format!("writing {}", path.display()))?;
    say!(
        "wrote {}; uncomment what you change, then: haven-relay run --config {}",
        path.display(),
        path.display()
    );
    Ok(())
}

fn print_credentials(data_dir: Option<PathBuf>, args: &CredentialsArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let data_dir = haven_relay::config::data_dir(data_dir, &file);
    let creds = args.keys.resolve(&data_dir).context("loading credentials")?;
    say!("access key: {}", creds.access_key);
    say!("secret key: {}", creds.secret_key);
    Ok(())
}

fn print_link(data_dir: &Path) -> anyhow::Result<()> {
    let link = match circle::load_relay_link(data_dir)? {
        Some(link) => link,
        None => {
            let circle = circle::load(data_dir)?.context(
                "this relay has not joined a circle yet: run `haven-relay run --link \"haven-relay://circle#…\"` first",
            )?;
            RelayLink {
                circle: circle.circle,
                relay: tunnel::identity::load_or_create(data_dir)?.public(),
                relay_url: None,
                direct_addrs: Vec::new(),
            }
        }
    };
    say!("node id:    {}", link.relay);
    say!("relay link: {link}");
    say!("{}", qr(&link.to_string()));
    Ok(())
}

fn members(data_dir: &Path, action: MembersAction) -> anyhow::Result<()> {
    let mut all = tunnel::members::load(data_dir)?;
    match action {
        MembersAction::List => {
            for member in &all {
                say!("{member}");
            }
            return Ok(());
        }
        MembersAction::Add { node_id } => {
            if !all.insert(node_id) {
                say!("{node_id} is already a member");
                return Ok(());
            }
        }
        MembersAction::Remove { node_id } => {
            anyhow::ensure!(all.remove(&node_id), "{node_id} is not a member");
        }
    }
    tunnel::members::save(data_dir, &all)?;
    say!(
        "{} members; a running relay picks the change up within a second",
        all.len()
    );
    Ok(())
}

async fn connect(data_dir: PathBuf, args: ConnectArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let link: RelayLink = args.relay_link.parse().context("relay link")?;
    let secret = tunnel::identity::load_or_create(&data_dir)?;
    let options = args.tunnel.options(&ConfigFile::default())?;
    let endpoint = tunnel::endpoint::bind(secret, &options, Vec::new()).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let client = tunnel::TunnelClient::connect(endpoint, link.endpoint_addr()).await?;
    say!(
        "connected to relay {} in {} ms",
        link.relay,
        started.elapsed().as_millis()
    );
    say!("  as node id:   {}", client.endpoint().id());
    say!(
        "  S3 endpoint:  http://{} (any credentials, path-style)",
        listener.local_addr()?
    );
    say!("Press Ctrl-C to stop.");
    tunnel::forward::forward(listener, Arc::new(client), shutdown_signal()).await;
    Ok(())
}

/// A QR code drawn with Unicode half blocks, two modules per character cell.
fn qr(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
        Err(_) => String::from("(the link is too long for a QR code)"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
