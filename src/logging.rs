//! Where log lines go and what they hold: stderr, text for people or JSON for collectors, at
//! the level `RUST_LOG` sets on top of defaults that keep other crates quiet.

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the process's log subscriber. Colour only for a person at a terminal: not into
/// files or the journal, and never with NO_COLOR set (https://no-color.org).
pub fn init(format: LogFormat) {
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter(std::env::var("RUST_LOG").ok().as_deref()));
    match format {
        LogFormat::Text => logs.with_ansi(colour).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// What is logged: `RUST_LOG` on top of defaults that keep other crates' logs out unless named.
/// s3s logs request bodies it cannot parse (DeleteObjects key names) at ERROR, so it stays off
/// even at `RUST_LOG=info`; `RUST_LOG=s3s=debug` turns it on for debugging. Offline, iroh
/// warns every few seconds that it cannot publish the node's address.
fn filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    const DEFAULTS: &str = "info,s3s=off,iroh=warn,iroh::address_lookup::pkarr=error,noq=warn,noq_proto=warn";
    let directives = match rust_log {
        Some(user) if !user.trim().is_empty() => format!("{DEFAULTS},{user}"),
        _ => DEFAULTS.to_owned(),
    };
    tracing_subscriber::EnvFilter::builder().parse_lossy(directives)
}
