//! `haven-relay connect`: a local TCP port whose connections are forwarded over the tunnel,
//! so aws-cli, rclone or restic reach the relay with `--endpoint-url http://127.0.0.1:PORT`.

use std::future::Future;
use std::sync::Arc;

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

async fn pipe(mut tcp: TcpStream, client: &TunnelClient) -> Result<(), crate::TunnelError> {
    // Without it, small request/response exchanges stall on delayed ACKs (~40 ms each).
    tcp.set_nodelay(true)?;
    let mut stream = client.open_stream().await?;
    match tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut stream, COPY_BUFFER, COPY_BUFFER).await {
        Ok(_) => Ok(()),
        // The client hanging up mid-response is normal for HTTP clients.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
