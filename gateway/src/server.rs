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
use hyper_util::server::graceful::GracefulShutdown;
use s3s::Body;
use s3s::service::S3Service;
use tokio::net::TcpListener;

use crate::cors::{CorsPolicy, Preflight};

/// Cap on hyper's per-connection read buffer. Body chunks are slices of it, so this (times
/// the store's channel depth) bounds the memory of every upload; hyper's default (~400 KiB)
/// let 16 concurrent 32 MiB uploads push the relay past 64 MiB RSS.
const READ_BUFFER_MAX: usize = 128 * 1024;

/// What every transport serves: the S3 API plus CORS.
#[derive(Clone)]
pub struct Frontend {
    s3: S3Service,
    cors: CorsPolicy,
}

impl Frontend {
    pub(crate) fn new(s3: S3Service, store: Arc<dyn Store>) -> Self {
        Self {
            s3,
            cors: CorsPolicy::new(store),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let response = if method == Method::OPTIONS {
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
            let mut res = match self.s3.call(req.map(Body::from)).await {
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
        let status = response.status();
        if status.is_server_error() {
            tracing::warn!(%method, status = status.as_u16(), "request failed");
        } else {
            tracing::debug!(%method, %path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
        }
        response
    }
}

/// Serves `frontend` over plain HTTP/1.1 until `shutdown` resolves, then stops accepting and
/// gives in-flight requests up to `grace` to finish.
pub async fn serve_http(
    listener: TcpListener,
    frontend: Frontend,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
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
        let frontend = frontend.clone();
        let service = hyper::service::service_fn(move |req| {
            let frontend = frontend.clone();
            async move { Ok::<_, std::convert::Infallible>(frontend.handle(req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .max_buf_size(READ_BUFFER_MAX)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within the grace period");
    }
}
