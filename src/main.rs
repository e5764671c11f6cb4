//! `haven-relay`: the command line. Each subcommand is one plain async function.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use haven_relay::config::{ConfigFile, DEFAULT_S3_ADDR, default_data_dir};
use haven_relay::{Relay, RelayConfig, circle, credentials};
use tunnel::link::{CircleLink, RelayLink};
use tunnel::{EndpointId, RelayChoice};

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
    Run(RunArgs),
    /// Print the access key and secret of the HTTP S3 endpoint.
    Credentials,
    /// Print this data dir's node id (what a circle adds as a member).
    Id,
    /// Print the link (and QR code) an app scans to add this relay.
    Link,
    /// Show or change who may reach this relay through the tunnel.
    Members {
        #[command(subcommand)]
        action: MembersAction,
    },
    /// Forward a local TCP port to a relay over the tunnel, for standard S3 tools.
    Connect(ConnectArgs),
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
    /// Access key for the HTTP S3 endpoint (default: the stored one).
    #[arg(long, env = "HAVEN_RELAY_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// Secret key for the HTTP S3 endpoint (default: the stored one).
    #[arg(long, env = "HAVEN_RELAY_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Largest object accepted, in bytes.
    #[arg(long, env = "HAVEN_RELAY_MAX_OBJECT_SIZE")]
    max_object_size: Option<u64>,
    /// A relay.json whose settings apply where no flag or variable is given.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Connection-only relay: store nothing; S3 requests are refused with NotImplemented.
    #[arg(long)]
    no_storage: bool,
    #[command(flatten)]
    tunnel: TunnelArgs,
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
    let cli = Cli::parse();
    let data_dir = cli.data_dir.unwrap_or_else(default_data_dir);
    match cli.command {
        Command::Run(args) => run(data_dir, args).await,
        Command::Credentials => print_credentials(&data_dir),
        Command::Id => {
            println!("{}", tunnel::identity::load_or_create(&data_dir)?.public());
            Ok(())
        }
        Command::Link => print_link(&data_dir),
        Command::Members { action } => members(&data_dir, action),
        Command::Connect(args) => connect(data_dir, args).await,
    }
}

async fn run(data_dir: PathBuf, args: RunArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let mut config = RelayConfig::new(file.data_dir.clone().unwrap_or(data_dir));
    let s3_addr = args
        .s3_addr
        .or(args.s3_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))))
        .or(file.s3_addr);
    if args.s3 || s3_addr.is_some() {
        config.s3_addr = Some(s3_addr.unwrap_or_else(|| DEFAULT_S3_ADDR.parse().expect("valid default")));
    }
    if let Some(link) = &args.link {
        let link: CircleLink = link.parse().context("--link")?;
        circle::join(&config.data_dir, &link)?;
    }
    let circle = circle::load(&config.data_dir)?;
    if circle.is_some() {
        config.tunnel = Some(args.tunnel.options(&file)?);
    }
    if config.s3_addr.is_none() && config.tunnel.is_none() {
        anyhow::bail!(
            "nothing to serve: pass --link with the circle link from the app (once; it is remembered), \
             and/or --s3 for the plain-HTTP S3 endpoint"
        );
    }
    config.no_storage = args.no_storage || file.no_storage.unwrap_or(false);
    if let Some(max) = args.max_object_size.or(file.max_object_size) {
        config.max_object_size = max;
    }
    let creds = credentials::resolve(&config.data_dir, args.access_key, args.secret_key)?;
    let relay = Relay::start(&config, &creds).await?;
    println!("haven-relay {} is running", env!("CARGO_PKG_VERSION"));
    if config.no_storage {
        println!("  data:         none (--no-storage: S3 requests are refused)");
    } else {
        println!("  data:         {}", config.store_dir().display());
    }
    if let Some(endpoint) = relay.endpoint() {
        println!("  S3 endpoint:  {endpoint} (path-style, SigV4, region us-east-1)");
        println!(
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
        println!("  node id:      {}", endpoint.id());
        println!(
            "  circle:       {} ({} members)",
            circle.circle,
            tunnel::members::load(&config.data_dir)?.len()
        );
        println!("  relay link:   {link}");
        println!("{}", qr(&link.to_string()));
        println!("Scan the code (or paste the relay link) in the app to add this relay.");
    }
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    tracing::info!("stopping: finishing in-flight requests");
    relay.shutdown().await;
    Ok(())
}

fn print_credentials(data_dir: &Path) -> anyhow::Result<()> {
    let creds = credentials::load_or_create(data_dir).context("loading credentials")?;
    println!("access key: {}", creds.access_key);
    println!("secret key: {}", creds.secret_key);
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
    println!("node id:    {}", link.relay);
    println!("relay link: {link}");
    println!("{}", qr(&link.to_string()));
    Ok(())
}

fn members(data_dir: &Path, action: MembersAction) -> anyhow::Result<()> {
    let mut all = tunnel::members::load(data_dir)?;
    match action {
        MembersAction::List => {
            for member in &all {
                println!("{member}");
            }
            return Ok(());
        }
        MembersAction::Add { node_id } => {
            if !all.insert(node_id) {
                println!("{node_id} is already a member");
                return Ok(());
            }
        }
        MembersAction::Remove { node_id } => {
            anyhow::ensure!(all.remove(&node_id), "{node_id} is not a member");
        }
    }
    tunnel::members::save(data_dir, &all)?;
    println!(
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
    println!(
        "connected to relay {} in {} ms",
        link.relay,
        started.elapsed().as_millis()
    );
    println!("  as node id:   {}", client.endpoint().id());
    println!(
        "  S3 endpoint:  http://{} (any credentials, path-style)",
        listener.local_addr()?
    );
    println!("Press Ctrl-C to stop.");
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
