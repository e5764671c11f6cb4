//! `haven-relay`: the command line. Each subcommand is one plain async function.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use haven_relay::config::{ConfigFile, DEFAULT_S3_ADDR, default_data_dir};
use haven_relay::{Relay, RelayConfig, credentials};

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
}

#[derive(Args)]
struct RunArgs {
    /// Serve the S3 API over plain HTTP.
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,s3s=off".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(cli.data_dir, args).await,
        Command::Credentials => print_credentials(cli.data_dir),
    }
}

async fn run(data_dir: Option<PathBuf>, args: RunArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let mut config = RelayConfig::new(data_dir.or(file.data_dir).unwrap_or_else(default_data_dir));
    let s3_addr = args
        .s3_addr
        .or(args.s3_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))))
        .or(file.s3_addr);
    if !(args.s3 || s3_addr.is_some()) {
        anyhow::bail!(
            "no transport selected: pass --s3 to serve the S3 API over HTTP (the iroh tunnel is not built yet)"
        );
    }
    config.s3_addr = s3_addr.unwrap_or_else(|| DEFAULT_S3_ADDR.parse().expect("valid default"));
    if let Some(max) = args.max_object_size.or(file.max_object_size) {
        config.max_object_size = max;
    }
    let creds = credentials::resolve(&config.data_dir, args.access_key, args.secret_key)?;
    let relay = Relay::start(&config, &creds).await?;
    println!("haven-relay {} is running", env!("CARGO_PKG_VERSION"));
    println!("  data:         {}", config.store_dir().display());
    println!(
        "  S3 endpoint:  {} (path-style, SigV4, region us-east-1)",
        relay.endpoint()
    );
    println!(
        "  credentials:  haven-relay credentials --data-dir {}",
        config.data_dir.display()
    );
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    tracing::info!("stopping: finishing in-flight requests");
    relay.shutdown().await;
    Ok(())
}

fn print_credentials(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let data_dir = data_dir.unwrap_or_else(default_data_dir);
    let creds = credentials::load_or_create(&data_dir).context("loading credentials")?;
    println!("access key: {}", creds.access_key);
    println!("secret key: {}", creds.secret_key);
    Ok(())
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
