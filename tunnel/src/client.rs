//! The client side, as a library: HTTP requests to the relay over the tunnel, no TCP port.
//!
//! One QUIC connection is shared by every request; each request (or each forwarded TCP
//! connection) gets its own bi-stream, so requests run in parallel without head-of-line
//! blocking. When the connection breaks (relay restarted, path changed) the next stream
//! dials again by itself.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use iroh::endpoint::{Connection, RecvStream, SendStream};
use iroh::{Endpoint, EndpointAddr};
use tokio::io::Join;
use tokio::sync::Mutex;

use crate::TunnelError;
use crate::server::NOT_A_MEMBER;

/// A bidirectional byte stream to the relay's HTTP server.
pub type TunnelStream = Join<RecvStream, SendStream>;

/// How long one dial may take before the request fails instead of hanging.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);

pub struct TunnelClient {
    endpoint: Endpoint,
    relay: EndpointAddr,
    conn: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for TunnelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelClient")
            .field("relay", &self.relay.id)
            .finish_non_exhaustive()
    }
}

impl TunnelClient {
    /// Dials the relay once, so that a wrong address or a refusal shows up immediately.
    pub async fn connect(endpoint: Endpoint, relay: EndpointAddr) -> Result<Self, TunnelError> {
        let client = Self {
            endpoint,
            relay,
            conn: Mutex::new(None),
        };
        client.connection().await?;
        Ok(client)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a new stream, re-dialling once if the current connection is gone.
    pub async fn open_stream(&self) -> Result<TunnelStream, TunnelError> {
        let conn = self.connection().await?;
        let (send, recv) = match conn.open_bi().await {
            Ok(pair) => pair,
            Err(_) => {
                self.forget(&conn).await;
                let conn = self.connection().await?;
                conn.open_bi().await.map_err(|e| stream_error(&conn, e))?
            }
        };
        Ok(tokio::io::join(recv, send))
    }

    /// Sends one HTTP request on its own stream and returns the response as it streams in.
    pub async fn send<B>(&self, request: Request<B>) -> Result<Response<Incoming>, TunnelError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request = origin_form(request);
        let stream = self.open_stream().await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "tunnel request stream ended with an error");
            }
        });
        Ok(sender.send_request(request).await?)
    }

    /// The live connection, dialling if there is none or it has closed.
    async fn connection(&self) -> Result<Connection, TunnelError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(conn.clone());
        }
        let relay = self.relay.id.fmt_short().to_string();
        let dial = self.endpoint.connect(self.relay.clone(), crate::ALPN);
        let conn = tokio::time::timeout(DIAL_TIMEOUT, dial)
            .await
            .map_err(|_| TunnelError::Connect {
                relay: relay.clone(),
                reason: "timed out".into(),
            })?
            .map_err(|e| TunnelError::Connect {
                relay,
                reason: e.to_string(),
            })?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn forget(&self, broken: &Connection) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| c.stable_id() == broken.stable_id()) {
            *slot = None;
        }
    }
}

/// A refusal by the relay reads as such, not as a generic stream error.
fn stream_error(conn: &Connection, e: impl std::fmt::Display) -> TunnelError {
    match conn.close_reason() {
        Some(iroh::endpoint::ConnectionError::ApplicationClosed(close))
            if close.error_code == iroh::endpoint::VarInt::from_u32(NOT_A_MEMBER) =>
        {
            TunnelError::Refused(String::from_utf8_lossy(&close.reason).into_owned())
        }
        _ => TunnelError::Stream(e.to_string()),
    }
}

/// HTTP/1.1 to an origin server wants `/path?query` as the target and the authority in Host.
fn origin_form<B>(mut request: Request<B>) -> Request<B> {
    if let Some(authority) = request.uri().authority().cloned() {
        if !request.headers().contains_key(http::header::HOST)
            && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(http::header::HOST, host);
        }
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = target.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}
