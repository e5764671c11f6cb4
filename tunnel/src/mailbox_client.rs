//! The mailbox, as an app embeds it: post sealed messages to members through the relay, and
//! receive the ones waiting for this node.

use bytes::{Bytes, BytesMut};
use iroh::endpoint::{Connection, RecvStream, SendStream};
use iroh::{Endpoint, EndpointAddr};
use mailbox::Post;
use mailbox::frame::{self, Delivery, MessageId, PostStatus};

use crate::TunnelError;
use crate::dial::{Dialer, stream_error};

use mailbox::frame::MAX_PAYLOAD;

pub struct MailboxClient {
    dialer: Dialer,
}

impl MailboxClient {
    /// Dials the relay's mailbox, so that a wrong address or a refusal shows up at once.
    pub async fn connect(endpoint: Endpoint, relay: EndpointAddr) -> Result<Self, TunnelError> {
        let client = Self {
            dialer: Dialer::new(endpoint, relay, crate::MAILBOX_ALPN),
        };
        client.dialer.connection().await?;
        Ok(client)
    }

    /// The endpoint this client dials from; close it before exiting so the relay sees a clean
    /// goodbye.
    pub fn endpoint(&self) -> &Endpoint {
        &self.dialer.endpoint
    }

    /// Posts one message and waits for the relay's answer (`Stored` means durable). Posts
    /// may run concurrently; each has its own stream.
    ///
    /// If the connection dies under it (the relay restarted), the post is sent once more on
    /// a new one: the message id makes that safe, the relay answers `duplicate` if the first
    /// attempt was stored after all.
    pub async fn post(&self, post: &Post) -> Result<PostStatus, TunnelError> {
        let wire = post.encode();
        let conn = self.dialer.connection().await?;
        match exchange(&conn, &wire).await {
            Err(e) if refused(&conn) => Err(stream_error(&conn, e)),
            Err(_) if conn.close_reason().is_some() => {
                self.dialer.forget(&conn).await;
                let conn = self.dialer.connection().await?;
                exchange(&conn, &wire).await.map_err(|e| stream_error(&conn, e))
            }
            other => other,
        }
    }

    /// Opens this node's inbox. A newer inbox of the same node (another device with the same
    /// identity, a reconnect) supersedes it.
    pub async fn inbox(&self) -> Result<InboxStream, TunnelError> {
        let conn = self.dialer.connection().await?;
        let (mut send, recv) = self.dialer.open_bi().await?;
        send.write_all(&frame::inbox_opening())
            .await
            .map_err(|e| TunnelError::Mailbox(e.to_string()))?;
        Ok(InboxStream {
            _endpoint: self.dialer.endpoint.clone(),
            conn,
            send,
            recv,
            buf: BytesMut::new(),
            acks: BytesMut::new(),
        })
    }
}

/// Whether the relay closed `conn` because this node is not a member.
fn refused(conn: &Connection) -> bool {
    matches!(stream_error(conn, ""), TunnelError::Refused(_))
}

/// One post on its own stream of `conn`, and the relay's answer.
async fn exchange(conn: &Connection, wire: &[u8]) -> Result<PostStatus, TunnelError> {
    let stream_err = |e: &dyn std::fmt::Display| TunnelError::Mailbox(e.to_string());
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| stream_error(conn, e))?;
    // The relay may answer (and stop reading) before the whole post is sent, for example
    // when it stores nothing: its answer counts, not the failed write.
    let sent = send.write_all(wire).await;
    if sent.is_ok() {
        send.finish().map_err(|e| stream_err(&e))?;
    }
    let mut status = [0u8; 1];
    match recv.read_exact(&mut status).await {
        Ok(()) => PostStatus::from_byte(status[0])
            .ok_or_else(|| TunnelError::Mailbox(format!("unknown post status {}", status[0]))),
        Err(e) => Err(sent.err().map_or_else(|| stream_err(&e), |w| stream_err(&w))),
    }
}

/// Messages pushed by the relay. Each comes again (here or on a later inbox) until
/// [`InboxStream::ack`] has been called for it.
pub struct InboxStream {
    /// Keeps the endpoint (and so the connection) alive as long as the inbox, even when the
    /// client it came from is dropped.
    _endpoint: Endpoint,
    /// To tell a refusal from a lost connection.
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    buf: BytesMut,
    acks: BytesMut,
}

impl InboxStream {
    /// The next message or notice; `None` when the relay ended the stream.
    pub async fn next(&mut self) -> Result<Option<Delivery>, TunnelError> {
        loop {
            match Delivery::decode(&mut self.buf, MAX_PAYLOAD) {
                Ok(Some(d)) => return Ok(Some(d)),
                Ok(None) => {}
                Err(e) => return Err(TunnelError::Mailbox(e.to_string())),
            }
            match self.recv.read_chunk(256 * 1024).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err(TunnelError::Mailbox("the relay ended the inbox mid-message".into())),
                Err(e) if refused(&self.conn) => return Err(stream_error(&self.conn, e)),
                Err(e) => return Err(TunnelError::Mailbox(e.to_string())),
            }
        }
    }

    /// Ends the inbox once the relay has recorded every acknowledgement sent: without this a
    /// process that exits right after [`InboxStream::ack`] may lose the acknowledgement in
    /// flight (the message then simply comes again). Messages still arriving are dropped
    /// unacknowledged; they come again next time.
    pub async fn close(mut self) -> Result<(), TunnelError> {
        self.send.finish().map_err(|e| TunnelError::Mailbox(e.to_string()))?;
        let drained = async { while let Ok(Some(_)) = self.recv.read_chunk(256 * 1024).await {} };
        tokio::time::timeout(std::time::Duration::from_secs(120), drained)
            .await
            .map_err(|_| TunnelError::Mailbox("the relay did not confirm the acknowledgements".into()))
    }

    /// Tells the relay this message is safely here: it is never delivered to this node again.
    pub async fn ack(&mut self, id: MessageId) -> Result<(), TunnelError> {
        frame::encode_ack(id, &mut self.acks);
        let acks: Bytes = self.acks.split().freeze();
        self.send
            .write_all(&acks)
            .await
            .map_err(|e| TunnelError::Mailbox(e.to_string()))
    }
}
