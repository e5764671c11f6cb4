//! The relay side of the mailbox protocol: one QUIC bi-stream per post, one for the inbox.
//!
//! The connection's peer is already admitted (see [`crate::server`]); it is the sender of
//! its posts and the owner of its inbox, so neither carries an id the peer could forge.

use std::sync::Arc;

use bytes::BytesMut;
use iroh::EndpointId;
use iroh::endpoint::{Connection, RecvStream, SendStream};
use mailbox::frame::{self, Delivery, PostStatus};
use mailbox::{Mailbox, Post};

use crate::members::Members;

/// The largest post stream: the kind byte, the fixed header, 255 recipients, the length.
const POST_OVERHEAD: usize = 1 + 21 + 32 * frame::MAX_RECIPIENTS + 4;

/// Serves a member's mailbox streams until the connection ends. `mailbox` is `None` on a
/// relay that stores nothing (`--no-storage`): every stream is answered `NoStorage`.
pub(crate) async fn serve(conn: Connection, mailbox: Option<Arc<Mailbox>>, members: Members) {
    let peer = *conn.remote_id().as_bytes();
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "mailbox connection ended");
                return;
            }
        };
        let (mailbox, members) = (mailbox.clone(), members.clone());
        tokio::spawn(async move {
            if let Err(e) = stream(peer, send, recv, mailbox, members).await {
                tracing::debug!(error = %e, "mailbox stream ended with an error");
            }
        });
    }
}

async fn stream(
    peer: [u8; 32],
    mut send: SendStream,
    mut recv: RecvStream,
    mailbox: Option<Arc<Mailbox>>,
    members: Members,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut kind = [0u8; 1];
    recv.read_exact(&mut kind).await?;
    match kind[0] {
        frame::STREAM_POST => {
            let status = post(peer, &mut recv, mailbox, &members).await;
            send.write_all(&[status as u8]).await?;
            send.finish()?;
            let _ = send.stopped().await;
        }
        frame::STREAM_INBOX => {
            let mut version = [0u8; 1];
            recv.read_exact(&mut version).await?;
            let Some(mailbox) = mailbox.filter(|_| version[0] == frame::VERSION) else {
                let status = if version[0] == frame::VERSION {
                    PostStatus::NoStorage
                } else {
                    PostStatus::Malformed
                };
                let mut out = BytesMut::new();
                Delivery::Refused(status).encode(&mut out);
                send.write_all(&out).await?;
                send.finish()?;
                let _ = send.stopped().await;
                return Ok(());
            };
            inbox(peer, send, recv, mailbox).await?;
        }
        other => {
            tracing::debug!(kind = other, "unknown mailbox stream kind");
            send.write_all(&[PostStatus::Malformed as u8]).await?;
            send.finish()?;
        }
    }
    Ok(())
}

async fn post(peer: [u8; 32], recv: &mut RecvStream, mailbox: Option<Arc<Mailbox>>, members: &Members) -> PostStatus {
    let Some(mailbox) = mailbox else {
        // Nothing is read, so nothing can be stored.
        let _ = recv.stop(0u32.into());
        return PostStatus::NoStorage;
    };
    let max_payload = mailbox.limits().max_message_bytes;
    let bytes = match recv.read_to_end(POST_OVERHEAD + max_payload as usize).await {
        Ok(bytes) => bytes,
        Err(iroh::endpoint::ReadToEndError::TooLong) => return PostStatus::TooLarge,
        Err(_) => return PostStatus::Malformed,
    };
    let post = match Post::decode(&bytes, max_payload) {
        Ok(Some(post)) => post,
        Ok(None) => return PostStatus::Malformed, // the stream ended inside the post
        Err(frame::FrameError::TooLarge { .. }) => return PostStatus::TooLarge,
        Err(_) => return PostStatus::Malformed,
    };
    let is_member = |id: &[u8; 32]| EndpointId::from_bytes(id).is_ok_and(|id| members.contains(&id));
    mailbox.post(&peer, post, is_member).await
}

/// Pushes the member's messages on `send` while reading its acknowledgements from `recv`.
async fn inbox(
    peer: [u8; 32],
    mut send: SendStream,
    mut recv: RecvStream,
    mailbox: Arc<Mailbox>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut deliveries = mailbox::deliveries(mailbox.clone(), peer);
    let client_done = {
        let acks = async {
            let mut buf = BytesMut::new();
            while let Some(chunk) = recv.read_chunk(64 * 1024).await? {
                buf.extend_from_slice(&chunk);
                while let Some(id) = frame::decode_ack(&mut buf)? {
                    mailbox.ack(&peer, id).await?;
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        };
        let pushes = async {
            let mut out = BytesMut::new();
            while let Some(delivery) = deliveries.recv().await {
                let last = matches!(delivery, Delivery::Superseded);
                delivery.encode(&mut out);
                // Whatever else is ready goes in the same write.
                while !last && out.len() < 256 * 1024 {
                    match deliveries.try_recv() {
                        Ok(more) => more.encode(&mut out),
                        Err(_) => break,
                    }
                }
                send.write_all(&out.split()).await?;
                if last {
                    send.finish()?;
                    return Ok(());
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        };
        // Either side ending ends the inbox; unacknowledged messages wait for the next one.
        tokio::select! {
            r = acks => Some(r),
            r = pushes => { r?; None }
        }
    };
    if let Some(acked) = client_done {
        acked?;
        // The member finished its side: every acknowledgement before it is recorded. Ending
        // ours tells it so.
        send.finish()?;
        let _ = send.stopped().await;
    }
    Ok(())
}
