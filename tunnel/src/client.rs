//! The client side, as a library: HTTP requests to the relay over the tunnel, no TCP port.
//!
//! One QUIC connection is shared by every request; each request (or each forwarded TCP
//! connection) gets its own bi-stream, so requests run in parallel without head-of-line
//! blocking. When the connection breaks (relay restarted, path changed) the next stream
//! dials again by itself.

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use iroh::endpoint::{RecvStream, SendStream};
use iroh::{Endpoint, EndpointAddr};
use tokio::io::Join;

use crate::TunnelError;
use crate::dial::Dialer;

/// A bidirectional byte stream to the relay's HTTP server.
pub type TunnelStream = Join<RecvStream, SendStream>;

pub struct TunnelClient {
    dialer: Dialer,
}

impl std::fmt::Debug for TunnelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelClient")
            .field("relay", &self.dialer.relay.id)
            .finish_non_exhaustive()
    }
}

impl TunnelClient {
    /// Dials the relay and makes one cheap request, so that a wrong address or a node the
    /// relay does not admit shows up at once ([`TunnelError::Refused`]), not as every later
    /// request failing. (The relay admits by node id right after the handshake, which itself
    /// succeeds for anyone.)
    pub async fn connect(endpoint: Endpoint, relay: EndpointAddr) -> Result<Self, TunnelError> {
        let client = Self {
            dialer: Dialer::new(endpoint, relay, crate::ALPN),
        };
        // A ListBuckets: answered by any relay (a HEAD of the service root is a 501 there).
        let probe = Request::get("/")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("a valid request");
        let conn = client.dialer.connection().await?;
        match client.send(probe).await {
            // Any answer at all means the relay serves this node.
            Ok(_) => Ok(client),
            Err(e) => Err(match conn.close_reason() {
                Some(_) => crate::dial::stream_error(&conn, &e),
                None => e,
            }),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.dialer.endpoint
    }

    /// Opens a new stream, re-dialling once if the current connection is gone.
    pub async fn open_stream(&self) -> Result<TunnelStream, TunnelError> {
        let (send, recv) = self.dialer.open_bi().await?;
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
