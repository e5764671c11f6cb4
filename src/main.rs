//! `haven-relay`: the command line. Each subcommand is one plain async function.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use haven_relay::config::{ConfigFile, default_data_dir};
use haven_relay::logging::LogFormat;
use haven_relay::run_args::{KeyArgs, RunArgs, TunnelArgs, resolve_run};
use haven_relay::{Relay, circle};
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

mod circle_commands;

#[derive(Parser)]
#[command(
    name = "haven-relay",
    version,
    about = "An always-on S3 relay for a private circle of friends"
)]
struct Cli {
    /// The data dir (default ~/.haven-relay): the relay's store, credentials and identity;
    /// for `connect`, `send`, `inbox` and `pipe`, this node's identity.
    #[arg(long, global = true, env = "HAVEN_RELAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log lines as text, or as one JSON object per line for a log collector. The level comes
    /// from RUST_LOG (default info).
    #[arg(long, global = true, env = "HAVEN_RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
        action: circle_commands::MembersAction,
    },
    /// Make a circle link without the app, for members that use the relay through
    /// `connect` only (restic, rclone, the aws CLI).
    Circle {
        #[command(subcommand)]
        action: circle_commands::CircleAction,
    },
    /// Forward a local TCP port to a relay over the tunnel, for standard S3 tools.
    Connect(ConnectArgs),
    /// Round-trip a small blob through every configured backend, and show the limits `run`
    /// with the same flags would apply.
    Doctor(Box<RunArgs>),
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

/// An empty `HAVEN_RELAY_*` variable counts as unset, for every setting: a container or
/// compose file passes `${VAR}` whether or not it was given a value.
fn without_empty_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| match arg.get_env() {
            Some(name) if std::env::var_os(name).is_some_and(|v| v.is_empty()) => arg.env(None),
            _ => arg,
        })
        .mut_subcommands(without_empty_env)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    haven_relay::private_files::restrict_new_files();
    let matches = without_empty_env(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    haven_relay::logging::init(cli.log_format);
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
        Command::Link => circle_commands::print_link(&data_dir),
        Command::Circle { action } => circle_commands::circle(action),
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
        Command::Members { action } => circle_commands::members(&data_dir, action),
        Command::Connect(args) => connect(data_dir, args).await,
        Command::Doctor(args) => doctor(data_dir_arg, &args).await,
        Command::Send(args) => send(data_dir.clone(), args)
            .await
            .map_err(|e| explain_refusal(e, &data_dir)),
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
                    eprintln!("Error: {:#}", explain_refusal(e, &data_dir));
                    1
                }
            };
            std::process::exit(code)
        }
        Command::Inbox(args) => {
            let link: RelayLink = args.relay_link.parse().context("relay link")?;
            let options = args.tunnel.options(&ConfigFile::default())?;
            let n = haven_relay::mail::inbox(&data_dir, &link, &options, args.out.as_deref(), args.follow)
                .await
                .map_err(|e| explain_refusal(e, &data_dir))?;
            eprintln!("{n} message(s) received");
            Ok(())
        }
    }
}

async fn send(data_dir: PathBuf, args: SendArgs) -> anyhow::Result<()> {
    let link: RelayLink = args.relay_link.parse().context("relay link")?;
    let options = args.tunnel.options(&ConfigFile::default())?;
    // Never more than a message can be: `send /dev/zero` must not fill the memory.
    let most = mailbox::frame::MAX_PAYLOAD;
    let mut payload = Vec::new();
    let read = if args.file == Path::new("-") {
        std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin(), most + 1), &mut payload)
            .context("reading stdin")
    } else {
        std::fs::File::open(&args.file)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, most + 1), &mut payload))
            .with_context(|| format!("reading {}", args.file.display()))
    };
    read?;
    anyhow::ensure!(
        payload.len() as u64 <= most,
        "the message is larger than any relay takes ({} MiB); put big files in S3 and send a pointer",
        most >> 20
    );
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

async fn doctor(data_dir: Option<PathBuf>, args: &RunArgs) -> anyhow::Result<()> {
    let (config, _) = resolve_run(data_dir, args)?;
    let report = haven_relay::doctor::check(&config).await?;
    say!("{}", report.text.trim_end());
    anyhow::ensure!(
        report.failed == 0,
        "{} of {} backends failed the round trip",
        report.failed,
        report.backends
    );
    Ok(())
}

async fn run(data_dir: Option<PathBuf>, args: RunArgs) -> anyhow::Result<()> {
    let (mut config, _) = resolve_run(data_dir, &args)?;
    let mut joined = None;
    if let Some(link) = args.link.as_deref().filter(|l| !l.trim().is_empty()) {
        let link: CircleLink = link.parse().context("--link")?;
        joined = Some(circle::join(&config.data_dir, &link)?);
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
    let started = match args.keys.resolve(&config.data_dir) {
        Ok(creds) => Relay::start(&config, &creds).await,
        Err(e) => Err(e),
    };
    let relay = match started {
        Ok(relay) => relay,
        Err(e) => {
            // A `run --link` that fails has not joined the circle.
            if let Some(joined) = joined {
                joined.undo();
            }
            return Err(e);
        }
    };
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
    if let Some(ops) = relay.ops_addr() {
        say!("  ops:          http://{ops} (/health, /ready, /metrics)");
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
            "  circle:       {} ({})",
            circle.circle,
            circle_commands::members_count(tunnel::members::load(&config.data_dir)?.len())
        );
        say!("  relay link:   {link}");
        say!("{}", circle_commands::qr(&link.to_string()));
        say!("Scan the code (or paste the relay link) in the app to add this relay.");
    }
    say!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    anyhow::ensure!(
        relay.shutdown().await,
        "requests still in flight after {} s were cut off",
        haven_relay::SHUTDOWN_GRACE.as_secs()
    );
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
    // Private from the start: it invites S3 keys (`s3_credentials`).
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, example.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
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

async fn connect(data_dir: PathBuf, args: ConnectArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let link: RelayLink = args.relay_link.parse().context("relay link")?;
    let secret = tunnel::identity::load_or_create(&data_dir)?;
    let options = args.tunnel.options(&ConfigFile::default())?;
    let endpoint = tunnel::endpoint::bind(secret, &options, Vec::new()).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let closer = endpoint.clone();
    let client = match tunnel::TunnelClient::connect(endpoint, link.endpoint_addr()).await {
        Ok(client) => client,
        Err(e) => {
            // Closed, not dropped: iroh logs an ERROR for an endpoint simply dropped.
            closer.close().await;
            return Err(explain_refusal(e.into(), &data_dir));
        }
    };
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
    let endpoint = client.endpoint().clone();
    tunnel::forward::forward(listener, Arc::new(client), shutdown_signal()).await;
    // Closed, not dropped: the relay hears the goodbye, and iroh logs no error.
    endpoint.close().await;
    Ok(())
}

/// A QR code drawn with Unicode half blocks, two modules per character cell.
/// A refusal by the relay, said so that whoever runs the relay can act on it: this node's id
/// and the command that admits it. Other errors pass unchanged.
fn explain_refusal(e: anyhow::Error, data_dir: &Path) -> anyhow::Error {
    let refused = e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<tunnel::TunnelError>(),
            Some(tunnel::TunnelError::Refused(_))
        )
    });
    match tunnel::identity::load_or_create(data_dir) {
        Ok(secret) if refused => {
            let id = secret.public();
            anyhow::anyhow!(
                "the relay refused this node: it is not a member of the relay's circle.\n  \
                 this node's id:  {id}\n  to admit it, on the relay: haven-relay members add {id}\n  \
                 (or add the node to the circle in the app)"
            )
        }
        _ => e,
    }
}

/// Waits for Ctrl-C or SIGTERM. From then on a second one exits at once, without waiting for
/// requests in flight (and says so).
async fn shutdown_signal() {
    first_signal().await;
    eprintln!("stopping: finishing requests in flight (press Ctrl-C again to stop at once)");
    tokio::spawn(async {
        first_signal().await;
        eprintln!("stopped at once");
        std::process::exit(130);
    });
}

async fn first_signal() {
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
