//! `haven-relay connect`: a local TCP port whose connections are forwarded over the tunnel,
//! so aws-cli, rclone or restic reach the relay with `--endpoint-url http://127.0.0.1:PORT`.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::client::TunnelClient;

/// Per-direction copy buffer. tokio's default (8 KiB) turns every body into many small QUIC
/// writes; larger buffers cut the per-write overhead on bulk transfers.
const COPY_BUFFER: usize = 128 * 1024;

/// Forwards every connection accepted on `listener` to its own tunnel stream until
/// `shutdown` resolves.
pub async fn forward(listener: TcpListener, client: Arc<TunnelClient>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = pipe(tcp, &client).await {
                tracing::warn!(error = %e, "forwarding a connection failed");
            }
        });
    }
}

async fn pipe(tcp: TcpStream, client: &TunnelClient) -> Result<(), crate::TunnelError> {
    // Without it, small request/response exchanges stall on delayed ACKs (~40 ms each).
    tcp.set_nodelay(true)?;
    // A stream only once the client sends something: HTTP clients keep pools of connections
    // they may never use, and each stream counts against the relay's allowance for this
    // connection (`--max-streams-per-connection`).
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Ok(());
    }
    let (mut from_relay, mut to_relay) = client.open_stream().await?.into_inner();
    let (tcp_read, mut tcp_write) = tcp.into_split();
    let (sent, answered) = {
        let up = async {
            let copied = tokio::io::copy_buf(&mut BufReader::with_capacity(COPY_BUFFER, tcp_read), &mut to_relay).await;
            let _ = to_relay.finish();
            copied
        };
        let down = async {
            let copied = tokio::io::copy_buf(
                &mut BufReader::with_capacity(COPY_BUFFER, &mut from_relay),
                &mut tcp_write,
            )
            .await;
            let _ = tcp_write.shutdown().await;
            copied
        };
        tokio::pin!(up, down);
        let mut sent = None;
        loop {
            tokio::select! {
                copied = &mut up, if sent.is_none() => sent = Some(copied),
                copied = &mut down => break (sent, copied),
            }
        }
    };
    // The relay ended its side (an answer with `Connection: close`, or a keep-alive stream
    // idle past its header timeout): the exchange is over. Resetting our side frees the
    // stream's place in the connection's allowance at once; a client that never closes its
    // idle connection would otherwise hold it for good.
    if sent.is_none() {
        let _ = to_relay.reset(0u32.into());
    }
    for copied in [answered].into_iter().chain(sent) {
        match copied {
            Ok(_) => {}
            // The client hanging up mid-response is normal for HTTP clients.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
