//! `haven-relay pipe`: stdin and stdout joined to another member through the relay's
//! switchboard, as the data dir's node (the identity `connect` uses).

use std::path::Path;

use std::num::NonZeroU32;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunnel::link::RelayLink;
use tunnel::switch::{Pipe, SwitchClient};
use tunnel::{EndpointId, EndpointOptions, SwitchLimits};

use crate::config::SwitchboardFile;

/// `run`'s switchboard limits. Flags (and their variables) win over relay.json's `switchboard`.
#[derive(Args, Debug, Default)]
pub struct SwitchboardArgs {
    /// Pipes one member may have open at once, called or accepted (default 16).
    #[arg(long, env = "HAVEN_RELAY_SWITCH_PIPES_PER_MEMBER")]
    pub switch_pipes_per_member: Option<usize>,
    /// Bytes per second one member may send through all its pipes together, datagrams
    /// included (default: no limit; 0 also means none).
    #[arg(long, env = "HAVEN_RELAY_SWITCH_BYTES_PER_SECOND")]
    pub switch_bytes_per_second: Option<u32>,
}

impl SwitchboardArgs {
    pub fn resolve(&self, file: Option<&SwitchboardFile>) -> anyhow::Result<SwitchLimits> {
        let defaults = SwitchLimits::default();
        let pipes_per_member = self
            .switch_pipes_per_member
            .or(file.and_then(|f| f.pipes_per_member))
            .unwrap_or(defaults.pipes_per_member);
        anyhow::ensure!(pipes_per_member >= 1, "switch pipes_per_member must be at least 1");
        let bytes_per_second = self
            .switch_bytes_per_second
            .or(file.and_then(|f| f.bytes_per_second))
            .and_then(NonZeroU32::new);
        Ok(SwitchLimits {
            pipes_per_member,
            bytes_per_second,
        })
    }
}

/// The switchboard client of the data dir's node: one that takes calls (`reachable`), or one
/// that only places them and so leaves another process of the same node reachable.
async fn client(
    data_dir: &Path,
    link: &RelayLink,
    options: &EndpointOptions,
    reachable: bool,
) -> anyhow::Result<SwitchClient> {
    let secret = tunnel::identity::load_or_create(data_dir)?;
    let endpoint = tunnel::endpoint::bind(secret, options, Vec::new()).await?;
    let addr = link.endpoint_addr();
    let connected = if reachable {
        SwitchClient::connect(endpoint.clone(), addr).await
    } else {
        SwitchClient::caller(endpoint.clone(), addr).await
    };
    if connected.is_err() {
        // Closed, not dropped: iroh logs an ERROR for an endpoint simply dropped.
        endpoint.close().await;
    }
    Ok(connected?)
}

/// `pipe --to`: sends stdin until its end, half-closes, and prints what comes back until the
/// far side closes. `Ok` only once the far side has ended cleanly, which `--accept` does only
/// after it has written everything it received: every byte was delivered.
pub async fn call(data_dir: &Path, link: &RelayLink, options: &EndpointOptions, to: EndpointId) -> anyhow::Result<u64> {
    let client = client(data_dir, link, options, false).await?;
    let sent = async {
        let mut pipe = client.call(to).await.context("opening the pipe")?;
        join(&mut pipe, true).await
    }
    .await;
    client.endpoint().close().await;
    sent
}

/// `pipe --accept`: serves one caller, and returns when the pipe closes.
pub async fn accept(data_dir: &Path, link: &RelayLink, options: &EndpointOptions) -> anyhow::Result<EndpointId> {
    let client = client(data_dir, link, options, true).await?;
    eprintln!("waiting for a call as {}", client.endpoint().id());
    let served = async {
        let call = client.next_call().await?;
        let caller = call.caller;
        let mut pipe = call.accept().await?;
        join(&mut pipe, false).await.map(|_| caller)
    }
    .await;
    client.endpoint().close().await;
    served
}

/// Copies stdin into the pipe and the pipe to stdout.
///
/// The caller finishes its side when stdin ends and waits for the far side's end. The callee
/// finishes its side only once the caller's has ended and everything received is written
/// out (whether or not its own stdin has ended): so the caller's "far side ended" means
/// "everything arrived".
async fn join(pipe: &mut Pipe, caller: bool) -> anyhow::Result<u64> {
    let Pipe { send, recv, .. } = pipe;
    let sent = {
        let upload = async {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            loop {
                let n = stdin.read(&mut buf).await.context("reading stdin")?;
                if n == 0 {
                    break;
                }
                send.write_all(&buf[..n]).await.context("sending into the pipe")?;
                sent += n as u64;
            }
            if caller {
                send.finish().context("closing the pipe")?;
            }
            anyhow::Ok(sent)
        };
        let download = async {
            let mut stdout = tokio::io::stdout();
            while let Some(chunk) = recv.read_chunk(64 * 1024).await.context("the pipe broke")? {
                stdout.write_all(&chunk).await.context("writing stdout")?;
            }
            stdout.flush().await.context("writing stdout")?;
            anyhow::Ok(())
        };
        if caller {
            let (sent, received) = tokio::join!(upload, download);
            received?;
            return sent;
        }
        // Both pinned and polled by reference: a direction still running is never dropped
        // half way through a chunk (an earlier version lost the last bytes so).
        tokio::pin!(upload, download);
        tokio::select! {
            received = &mut download => { received?; 0 }
            sent = &mut upload => {
                let sent = sent?;
                download.await?;
                sent
            }
        }
    };
    send.finish().context("closing the pipe")?;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), send.stopped()).await;
    Ok(sent)
}
