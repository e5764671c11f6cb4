//! The relay side of the mailbox protocol: one QUIC bi-stream per post, one for the inbox.
//!
//! The connection's peer is already admitted (see [`crate::server`]); it is the sender of
//! its posts and the owner of its inbox, so neither carries an id the peer could forge.

use std::sync::Arc;

use bytes::BytesMut;
use futures::StreamExt;
use iroh::EndpointId;
use iroh::endpoint::{Connection, RecvStream, SendStream};
use mailbox::frame::{self, Delivery, PostStatus};
use mailbox::{Mailbox, Post};

use crate::members::Members;

/// Acknowledgements being recorded at once, per inbox.
const ACKS_IN_FLIGHT: usize = 32;

/// How long a post may pause before the relay gives up on it.
const POST_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

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
    // A member may have only so many posts in flight: each holds up to a message in memory.
    let Some(_permit) = mailbox.begin_post(&peer) else {
        let _ = recv.stop(0u32.into());
        return PostStatus::RateLimited;
    };
    let post = match read_post(recv, mailbox.limits().max_message_bytes).await {
        Ok(post) => post,
        Err(status) => {
            let _ = recv.stop(0u32.into());
            return status;
        }
    };
    let is_member = |id: &[u8; 32]| EndpointId::from_bytes(id).is_ok_and(|id| members.contains(&id));
    mailbox.post(&peer, post, is_member).await
}

/// Reads one post: the header, then (once its length is known to be within the limit) the
/// payload, then the end of the stream. A sender that goes quiet for [`POST_IDLE`] is
/// dropped, so a stalled stream holds nothing for long.
async fn read_post(recv: &mut RecvStream, max_payload: u64) -> Result<Post, PostStatus> {
    async fn exactly(recv: &mut RecvStream, buf: &mut [u8]) -> Result<(), PostStatus> {
        match tokio::time::timeout(POST_IDLE, recv.read_exact(buf)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(PostStatus::Malformed),
        }
    }
    let mut head = vec![0u8; frame::POST_HEAD];
    exactly(recv, &mut head).await?;
    let recipients = head[frame::POST_HEAD - 1] as usize;
    let mut rest = vec![0u8; 32 * recipients + 4];
    exactly(recv, &mut rest).await?;
    let len = u32::from_be_bytes(rest[rest.len() - 4..].try_into().expect("4 bytes")) as u64;
    if len > max_payload {
        return Err(PostStatus::TooLarge);
    }
    head.extend_from_slice(&rest);
    let start = head.len();
    head.resize(start + len as usize, 0);
    exactly(recv, &mut head[start..]).await?;
    match tokio::time::timeout(POST_IDLE, recv.read_chunk(1)).await {
        Ok(Ok(None)) => {}
        _ => return Err(PostStatus::Malformed), // bytes after the post, or no end
    }
    match Post::decode(&head, max_payload) {
        Ok(Some(post)) => Ok(post),
        Err(frame::FrameError::TooLarge { .. }) => Err(PostStatus::TooLarge),
        _ => Err(PostStatus::Malformed),
    }
}

/// Pushes the member's messages on `send` while reading its acknowledgements from `recv`.
async fn inbox(
    peer: [u8; 32],
    mut send: SendStream,
    mut recv: RecvStream,
    mailbox: Arc<Mailbox>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mailbox::Deliveries {
        mut messages,
        mut inbox,
    } = mailbox::deliveries(mailbox.clone(), peer);
    let mut watch = inbox.clone();
    let client_done = {
        let acks = async {
            // Acknowledgements are recorded concurrently (each is a durable write), a bounded
            // number at a time; their order does not matter. One that cannot be recorded
            // (a full disk) leaves the message to be delivered again after a restart, and
            // the inbox goes on.
            let mut buf = BytesMut::new();
            let mut waiting = std::collections::VecDeque::new();
            let mut recording = futures::stream::FuturesUnordered::new();
            let mut open = true;
            while open || !waiting.is_empty() || !recording.is_empty() {
                while recording.len() < ACKS_IN_FLIGHT
                    && let Some(id) = waiting.pop_front()
                {
                    recording.push(mailbox.ack(&peer, id));
                }
                tokio::select! {
                    chunk = recv.read_chunk(64 * 1024), if open && waiting.len() < 4 * ACKS_IN_FLIGHT => match chunk? {
                        Some(chunk) => {
                            buf.extend_from_slice(&chunk);
                            while let Some(id) = frame::decode_ack(&mut buf)? {
                                waiting.push_back(id);
                            }
                        }
                        None => open = false,
                    },
                    Some(done) = recording.next(), if !recording.is_empty() => {
                        if let Err(e) = done {
                            tracing::warn!(error = %e, "recording an acknowledgement failed");
                        }
                    }
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        };
        let pushes = async {
            let mut out = BytesMut::new();
            loop {
                let delivery = tokio::select! {
                    d = messages.recv() => d.unwrap_or(Delivery::Superseded),
                    () = inbox.until_superseded() => Delivery::Superseded,
                };
                let last = matches!(delivery, Delivery::Superseded);
                delivery.encode(&mut out);
                // Whatever else is ready goes in the same write.
                while !last && out.len() < 256 * 1024 {
                    match messages.try_recv() {
                        Ok(more) => more.encode(&mut out),
                        Err(_) => break,
                    }
                }
                let chunk = out.split().freeze();
                if last {
                    // Best effort: a member that stopped reading is not waited for.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), send.write_all(&chunk)).await;
                    let _ = send.finish();
                    return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
                }
                tokio::select! {
                    written = send.write_all(&chunk) => written?,
                    // A member stuck not reading does not pin this inbox once a newer one opens.
                    () = watch.until_superseded() => {
                        let _ = send.reset(0u32.into());
                        return Ok(());
                    }
                }
            }
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
