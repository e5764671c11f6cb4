//! A second process with its own iroh endpoint: the physical limit the relay's paths are
//! measured against. It takes bi-streams dialled to it directly (ALPN
//! `haven-relay-bench/peer/1`) and, given a relay link, pipes through the relay's switchboard,
//! and serves both the same way: the stream's first byte says sink (read to the end, answer
//! the byte count) or echo (send back every byte until the end).
//!
//! The bench binary starts itself again with `--peer` to become it ([`run_if_peer`]).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iroh::endpoint::{RecvStream, SendStream};
use iroh::{Endpoint, EndpointAddr, SecretKey, TransportAddr};
use tunnel::endpoint::{EndpointOptions, RelayChoice};
use tunnel::switch::SwitchClient;

use super::process::Proc;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub const PEER_ALPN: &[u8] = b"haven-relay-bench/peer/1";
const SINK: u8 = b's';
const ECHO: u8 = b'e';
const SECRET_ENV: &str = "HAVEN_RELAY_BENCH_PEER_SECRET";

pub fn loopback_options() -> EndpointOptions {
    EndpointOptions {
        relay: RelayChoice::Disabled,
        bind: Some("127.0.0.1:0".parse().expect("an address")),
        bind_also: None,
        relay_ca: Vec::new(),
    }
}

/// The peer process, and the address to dial it directly.
pub struct Peer {
    proc: Proc,
    pub addr: EndpointAddr,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

/// Starts this bench binary again as the peer, with `secret` as its identity; with a relay
/// link it also keeps a switchboard connection open and accepts every call.
pub fn spawn_peer(secret: &SecretKey, relay_link: Option<&str>) -> Result<Peer, Error> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--peer")
        .args(relay_link)
        .env(
            SECRET_ENV,
            hex_simd::encode_to_string(secret.to_bytes(), hex_simd::AsciiCase::Lower),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn()?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let proc = Proc(child);
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    let socket: SocketAddr = line
        .trim()
        .strip_prefix("peer: ")
        .ok_or_else(|| format!("the peer said {line:?}"))?
        .parse()?;
    Ok(Peer {
        proc,
        addr: EndpointAddr::from_parts(secret.public(), [TransportAddr::Ip(socket)]),
    })
}

/// When this process is the peer: serves until killed, and never returns.
pub fn run_if_peer() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--peer") {
        return;
    }
    let relay_link = args.next();
    let result = tokio::runtime::Runtime::new()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(serve(relay_link)));
    if let Err(e) = result {
        eprintln!("bench peer: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

async fn serve(relay_link: Option<String>) -> Result<(), Error> {
    let hex = std::env::var(SECRET_ENV)?;
    let bytes: [u8; 32] = hex_simd::decode_to_vec(hex.as_bytes())?
        .try_into()
        .map_err(|_| "secret is not 32 bytes")?;
    let secret = SecretKey::from_bytes(&bytes);
    let endpoint = tunnel::endpoint::bind(secret.clone(), &loopback_options(), vec![PEER_ALPN.to_vec()]).await?;
    if let Some(link) = relay_link {
        let link: tunnel::link::RelayLink = link.parse()?;
        // A separate endpoint for the switchboard: a client's settings, not a server's.
        let client_endpoint = tunnel::endpoint::bind(secret, &loopback_options(), Vec::new()).await?;
        let switch = SwitchClient::connect(client_endpoint, link.endpoint_addr()).await?;
        tokio::spawn(async move {
            while let Ok(call) = switch.next_call().await {
                tokio::spawn(async move {
                    if let Ok(pipe) = call.accept().await {
                        let mut pipe = pipe;
                        let _ = serve_stream(&mut pipe.send, &mut pipe.recv).await;
                    }
                });
            }
        });
    }
    let socket = endpoint.bound_sockets().into_iter().next().ok_or("no bound socket")?;
    println!("peer: {socket}");
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let (mut send, mut recv) = (send, recv);
                    serve_stream(&mut send, &mut recv).await
                });
            }
        });
    }
    Ok(())
}

async fn serve_stream(send: &mut SendStream, recv: &mut RecvStream) -> Result<(), Error> {
    let mut mode = [0u8; 1];
    recv.read_exact(&mut mode).await?;
    let mut count = 0u64;
    while let Some(chunk) = recv.read_chunk(1 << 20).await? {
        count += chunk.len() as u64;
        if mode[0] == ECHO {
            send.write_all(&chunk).await?;
        }
    }
    if mode[0] == SINK {
        send.write_all(&count.to_be_bytes()).await?;
    }
    send.finish()?;
    let _ = send.stopped().await;
    Ok(())
}

/// A stream to the peer, dialled directly (no relay in between).
pub async fn direct_stream(endpoint: &Endpoint, peer: &EndpointAddr) -> Result<(SendStream, RecvStream), Error> {
    let conn = endpoint.connect(peer.clone(), PEER_ALPN).await?;
    Ok(conn.open_bi().await?)
}

/// Sends `bytes` bytes for the peer to count; the time until it has counted them all.
pub async fn bulk(send: &mut SendStream, recv: &mut RecvStream, bytes: usize) -> Result<Duration, Error> {
    let chunk = bytes::Bytes::from(vec![0x5a; 1 << 20]);
    let started = Instant::now();
    send.write_all(&[SINK]).await?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        send.write_chunk(chunk.slice(..n)).await?;
        left -= n;
    }
    send.finish()?;
    let mut count = [0u8; 8];
    recv.read_exact(&mut count).await?;
    let took = started.elapsed();
    if u64::from_be_bytes(count) != bytes as u64 {
        return Err(format!("the peer counted {} of {bytes} bytes", u64::from_be_bytes(count)).into());
    }
    Ok(took)
}

/// Round trips of a `size`-byte message, one at a time, `n` of them.
pub async fn round_trips(
    send: &mut SendStream,
    recv: &mut RecvStream,
    size: usize,
    n: usize,
) -> Result<Vec<Duration>, Error> {
    send.write_all(&[ECHO]).await?;
    let message = vec![0x42; size];
    let mut back = vec![0; size];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        send.write_all(&message).await?;
        recv.read_exact(&mut back).await?;
        times.push(started.elapsed());
    }
    send.finish()?;
    Ok(times)
}
