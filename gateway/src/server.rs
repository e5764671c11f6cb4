//! The one server loop: every transport hands HTTP requests to a [`Frontend`].
//!
//! The frontend answers CORS preflights, passes everything else to the s3s service and adds
//! CORS response headers. Logging happens here, once, and never names keys, bodies,
//! credentials or client addresses above debug level.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backends::Store;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use s3s::Body;
use s3s::service::S3Service;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::Trust;
use crate::chunked;
use crate::cors::{CorsPolicy, Preflight};
use crate::host::RelayHosts;

/// Cap on hyper's per-connection read buffer. Body chunks are slices of it, so this (times
/// the store's channel depth) bounds the memory of every upload; hyper's default (~400 KiB)
/// let 16 concurrent 32 MiB uploads push the relay past 64 MiB RSS.
const READ_BUFFER_MAX: usize = 128 * 1024;

/// What every transport serves: the S3 API plus CORS.
#[derive(Clone)]
pub struct Frontend {
    s3: S3Service,
    cors: CorsPolicy,
    trust: Trust,
    hosts: RelayHosts,
}

impl Frontend {
    pub(crate) fn new(s3: S3Service, store: Arc<dyn Store>, trust: Trust, hosts: RelayHosts) -> Self {
        Self {
            s3,
            cors: CorsPolicy::new(store),
            trust,
            hosts,
        }
    }

    /// Serves HTTP/1.1 (keep-alive) on one byte stream: a TCP connection or a QUIC stream.
    pub fn serve_connection<I>(&self, io: I) -> impl GracefulConnection<Error = hyper::Error> + Send + 'static
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let frontend = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let frontend = frontend.clone();
            async move { Ok::<_, std::convert::Infallible>(frontend.handle(req).await) }
        });
        hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .max_buf_size(READ_BUFFER_MAX)
            .serve_connection(TokioIo::new(io), service)
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let mut req = req.map(Body::from);
        if self.trust == Trust::Transport {
            strip_signature(&mut req);
            req.extensions_mut().insert(crate::body::TrustedTransport);
            req = chunked::decode_trusted(req);
        }
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let op = crate::request_log::Operation::of(&method, &path, req.uri().query());
        let bytes_in = content_length(req.headers());
        let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
        let response = if let Err(e) = self.hosts.check(host) {
            error_response(StatusCode::BAD_REQUEST, &e)
        } else if method == Method::OPTIONS {
            match self.cors.preflight(&path, req.headers()).await {
                Preflight::Allowed(headers) => {
                    let mut res = Response::new(Body::empty());
                    *res.headers_mut() = headers;
                    res
                }
                Preflight::Denied => {
                    let mut res =
                        Response::new(Body::from("CORSResponse: This CORS request is not allowed.".to_owned()));
                    *res.status_mut() = StatusCode::FORBIDDEN;
                    res
                }
            }
        } else {
            let cors = if req.headers().contains_key("origin") {
                self.cors.response_headers(&path, &method, req.headers()).await
            } else {
                None
            };
            let mut res = match self.s3.call(req).await {
                Ok(res) => res,
                Err(_) => {
                    let mut res = Response::new(Body::empty());
                    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    res
                }
            };
            if let Some(headers) = cors {
                res.headers_mut().extend(headers);
            }
            res
        };
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let bytes_out = content_length(response.headers());
        // One line per request, with no key, bucket, address or node id: what was done to
        // what kind of resource, how it went, how big and how long.
        if response.status().is_server_error() {
            tracing::warn!(op = %op, status, bytes_in, bytes_out, elapsed_ms, "request failed");
        } else {
            tracing::info!(op = %op, status, bytes_in, bytes_out, elapsed_ms, "request");
        }
        tracing::debug!(%method, %path, status, "request target");
        response
    }
}

/// Serves `frontend` over plain HTTP/1.1 until `shutdown` resolves, then stops accepting and
/// gives in-flight requests up to `grace` to finish; `false` if some did not.
pub async fn serve_http(
    listener: TcpListener,
    frontend: Frontend,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tracing::debug!(%peer, "connection");
        let _ = stream.set_nodelay(true);
        let conn = frontend.serve_connection(stream);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let finished = tokio::time::timeout(grace, graceful.shutdown()).await.is_ok();
    if !finished {
        tracing::warn!("in-flight requests did not finish within the grace period");
    }
    finished
}

/// An S3 error document for a request refused before s3s sees it.
/// The body size a message announces, if it announces one (aws-chunked uploads announce the
/// payload's own size separately).
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get("x-amz-decoded-content-length")
        .or_else(|| headers.get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn error_response(status: StatusCode, e: &s3s::S3Error) -> Response<Body> {
    let message = e.message().unwrap_or_default();
    let escaped = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{escaped}</Message></Error>",
        e.code().as_str()
    );
    let mut res = Response::new(Body::from(xml));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    res
}

/// Removes SigV4 and SigV2 header and query-string auth from a request whose peer the
/// transport has already authenticated, so that s3s treats it as admitted instead of checking
/// a signature made with keys the relay does not know.
fn strip_signature(req: &mut Request<Body>) {
    req.headers_mut().remove(http::header::AUTHORIZATION);
    let Some(query) = req.uri().query() else {
        return;
    };
    if !query.split('&').any(is_presign_param) {
        return;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_presign_param(p)).collect();
    let path = req.uri().path();
    let path_and_query = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// Query parameters of SigV4 and SigV2 presigned URLs (and the session token either may
/// carry); nothing else, so that ordinary parameters such as `x-id` are kept.
fn is_presign_param(param: &str) -> bool {
    const PRESIGN: [&str; 10] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
    ];
    let name = param.split('=').next().unwrap_or_default();
    PRESIGN.iter().any(|p| p.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(uri: &str) -> String {
        let mut req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        strip_signature(&mut req);
        req.uri().to_string()
    }

    #[test]
    fn presign_parameters_of_both_versions_go_and_others_stay() {
        assert_eq!(
            stripped("/b/k?AWSAccessKeyId=AKIA&Signature=abc%3D&Expires=1700000000"),
            "/b/k"
        );
        assert_eq!(
            stripped("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00&partNumber=2&uploadId=u"),
            "/b/k?partNumber=2&uploadId=u"
        );
        assert_eq!(stripped("/b/k?x-id=GetObject"), "/b/k?x-id=GetObject");
        // Non-ASCII parameter names never panic.
        assert_eq!(stripped("/bkt/a?X-Amz%C3%A9=1"), "/bkt/a?X-Amz%C3%A9=1");
    }
}
