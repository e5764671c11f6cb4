//! The ops listener (`--ops-addr`, off by default): `/health`, `/ready` and `/metrics` for
//! monitoring, on an address of its own so it can stay on loopback or a private network
//! while the S3 port faces the world.
//!
//! Metrics are in the OpenMetrics text format (prometheus-client). Their labels never carry a
//! bucket, key, node id or address: only transports, operations, statuses and mirror labels
//! as the operator wrote them in `--backend` (credentials stripped).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the relay's parts report at scrape time.
#[derive(Clone, Default)]
pub struct Sources {
    pub local: Option<Arc<backends::fs::FsStore>>,
    pub mirrors: Option<Arc<backends::mirror::MirrorStore>>,
    pub mailbox: Option<Arc<mailbox::Mailbox>>,
    pub tunnel: Option<Arc<tunnel::TunnelStats>>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sources")
    }
}

/// The registry with every metric, and the relay's parts read at each scrape.
pub struct Ops {
    registry: Registry,
    sources: Sources,
}

impl Ops {
    /// A registry with the S3 metrics in it; `sources` are added once the relay has started.
    pub fn new() -> (Self, Arc<gateway::metrics::S3Metrics>) {
        let mut registry = Registry::with_prefix("haven_relay");
        let s3 = gateway::metrics::S3Metrics::register(&mut registry);
        (
            Self {
                registry,
                sources: Sources::default(),
            },
            s3,
        )
    }

    /// Serves the ops endpoints on `addr` until aborted.
    pub async fn serve(mut self, addr: SocketAddr, sources: Sources) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
        self.registry.register_collector(Box::new(sources.clone()));
        self.sources = sources;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the ops listener to {addr}"))?;
        let bound = listener.local_addr()?;
        let ops = Arc::new(self);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let ops = ops.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let ops = ops.clone();
                        async move { Ok::<_, std::convert::Infallible>(ops.answer(&req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(std::time::Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok((bound, task))
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method().as_str(), req.uri().path()) {
            ("GET" | "HEAD", "/health") => plain(StatusCode::OK, "ok\n".into()),
            ("GET" | "HEAD", "/ready") => match self.sources.not_ready() {
                None => plain(StatusCode::OK, "ready\n".into()),
                Some(why) => plain(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
            },
            ("GET" | "HEAD", "/metrics") => {
                let mut text = String::new();
                if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
                    return plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n".into());
                }
                let mut res = Response::new(Full::new(Bytes::from(text)));
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                );
                res
            }
            _ => plain(StatusCode::NOT_FOUND, "not found: /health, /ready or /metrics\n".into()),
        }
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res
}

impl Sources {
    /// Why the relay cannot serve, if it cannot: a mirror down, or the store's folder gone.
    fn not_ready(&self) -> Option<String> {
        if let Some(local) = &self.local
            && !local.root().is_dir()
        {
            return Some("the store's folder is gone".into());
        }
        let down: Vec<String> = self
            .mirrors
            .as_ref()
            .map(|m| m.status().into_iter().filter(|s| !s.up).map(|s| s.label).collect())
            .unwrap_or_default();
        (!down.is_empty()).then(|| format!("backend down: {}", down.join(", ")))
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabel {
    mirror: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: &'static str,
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        if let Some(local) = &self.local {
            let (objects, bytes) = local.usage();
            gauge(
                &mut encoder,
                "store_objects",
                "Objects held (mailbox messages included)",
                None,
                objects,
            )?;
            gauge(
                &mut encoder,
                "store_size",
                "Bytes of objects held",
                Some(&Unit::Bytes),
                bytes,
            )?;
        }
        if let Some(mirrors) = &self.mirrors {
            let status = mirrors.status();
            let per_mirror =
                |name: &str, help: &str, unit: Option<&Unit>, f: &dyn Fn(&backends::mirror::MirrorStatus) -> u64| {
                    let rows: Vec<(MirrorLabel, u64)> = status
                        .iter()
                        .map(|s| {
                            (
                                MirrorLabel {
                                    mirror: s.label.clone(),
                                },
                                f(s),
                            )
                        })
                        .collect();
                    (name.to_owned(), help.to_owned(), unit.cloned(), rows)
                };
            for (name, help, unit, rows) in [
                per_mirror("mirror_up", "1 if the backend answers", None, &|s| u64::from(s.up)),
                per_mirror("mirror_objects", "Objects the backend holds", None, &|s| s.objects),
                per_mirror("mirror_size", "Bytes the backend holds", Some(&Unit::Bytes), &|s| {
                    s.bytes
                }),
                per_mirror(
                    "mirror_pending_repairs",
                    "Objects the backend is missing, waiting for repair",
                    None,
                    &|s| s.pending_repairs,
                ),
                per_mirror(
                    "mirror_copies_found_missing",
                    "Copies found gone from the backend since start",
                    None,
                    &|s| s.copies_found_missing,
                ),
            ] {
                let metric =
                    encoder.encode_descriptor(&name, &help, unit.as_ref(), ConstGauge::new(0i64).metric_type())?;
                let mut metric = metric;
                for (label, value) in rows {
                    ConstGauge::new(value as i64).encode(metric.encode_family(&label)?)?;
                }
            }
        }
        if let Some(mailbox) = &self.mailbox {
            let stats = mailbox.stats();
            gauge(
                &mut encoder,
                "mailbox_messages",
                "Messages waiting for delivery",
                None,
                stats.messages as u64,
            )?;
            gauge(
                &mut encoder,
                "mailbox_size",
                "Bytes of messages waiting",
                Some(&Unit::Bytes),
                stats.bytes,
            )?;
        }
        if let Some(tunnel) = &self.tunnel {
            let services = tunnel.per_service();
            let mut open = encoder.encode_descriptor(
                "tunnel_connections_open",
                "Member connections open, by protocol",
                None,
                ConstGauge::new(0i64).metric_type(),
            )?;
            for (service, _, now) in services {
                ConstGauge::new(now as i64).encode(open.encode_family(&ServiceLabel { service })?)?;
            }
            let mut accepted = encoder.encode_descriptor(
                "tunnel_connections",
                "Member connections accepted since start, by protocol",
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (service, total, _) in services {
                ConstCounter::new(total).encode(accepted.encode_family(&ServiceLabel { service })?)?;
            }
            let refused = ConstCounter::new(tunnel.refused());
            refused.encode(encoder.encode_descriptor(
                "tunnel_refused",
                "Connections refused: the node is not a member",
                None,
                refused.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, value: u64) -> fmt::Result {
    let gauge = ConstGauge::new(value as i64);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}
