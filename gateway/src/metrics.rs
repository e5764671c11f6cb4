//! What the S3 side counts for `/metrics`: requests by operation and status, bytes, latency,
//! requests refused for going too fast, and the HTTP port's connections.
//!
//! Labels come from bounded sets (see [`crate::request_log::Operation::label`]): no bucket,
//! key, node id or address, and nothing a client can use to create new time series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    transport: &'static str,
    operation: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// The S3 side's metrics, shared by every frontend of one relay.
#[derive(Debug)]
pub struct S3Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<TransportLabel, Histogram>,
    bytes_in: Family<TransportLabel, Counter>,
    bytes_out: Family<TransportLabel, Counter>,
    slowed: Family<TransportLabel, Counter>,
    pub(crate) connections_open: Gauge,
    pub(crate) connections_evicted: Counter,
    pub(crate) connections_refused: Counter,
    pub(crate) expired_objects: Counter,
    pub(crate) expired_uploads: Counter,
}

impl S3Metrics {
    /// Creates the metrics and registers them in `registry` (prefixed `haven_relay_`).
    pub fn register(registry: &mut Registry) -> std::sync::Arc<Self> {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new([0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0])),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            slowed: Family::default(),
            connections_open: Gauge::default(),
            connections_evicted: Counter::default(),
            connections_refused: Counter::default(),
            expired_objects: Counter::default(),
            expired_uploads: Counter::default(),
        };
        registry.register(
            "s3_expired_objects",
            "Objects deleted by lifecycle rules or the relay-wide lifetime (--ttl)",
            metrics.expired_objects.clone(),
        );
        registry.register(
            "s3_expired_uploads",
            "Unfinished multipart uploads aborted by lifecycle rules",
            metrics.expired_uploads.clone(),
        );
        registry.register(
            "s3_requests",
            "S3 requests by transport, operation and status",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "s3_request_duration",
            "Time to answer an S3 request (until the response starts)",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register_with_unit(
            "s3_received",
            "Bytes in S3 request bodies, as announced",
            Unit::Bytes,
            metrics.bytes_in.clone(),
        );
        registry.register_with_unit(
            "s3_sent",
            "Bytes in S3 response bodies, as announced",
            Unit::Bytes,
            metrics.bytes_out.clone(),
        );
        registry.register(
            "s3_slowed_down",
            "Requests refused with SlowDown: the client was over its request rate",
            metrics.slowed.clone(),
        );
        registry.register(
            "http_connections_open",
            "Connections open on the HTTP port",
            metrics.connections_open.clone(),
        );
        registry.register(
            "http_connections_evicted",
            "Idle HTTP connections closed to make room under the connection cap",
            metrics.connections_evicted.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections refused because every connection was busy",
            metrics.connections_refused.clone(),
        );
        std::sync::Arc::new(metrics)
    }

    /// A request refused with SlowDown where the frontend does not see it (s3s's access hook).
    pub(crate) fn slowed(&self, transport: &'static str) {
        self.slowed.get_or_create(&TransportLabel { transport }).inc();
    }

    pub(crate) fn record(&self, request: Recorded) {
        let transport = TransportLabel {
            transport: request.transport,
        };
        if request.slowed {
            self.slowed.get_or_create(&transport).inc();
        }
        self.requests
            .get_or_create(&RequestLabels {
                transport: request.transport,
                operation: request.operation,
                status: request.status,
            })
            .inc();
        self.duration.get_or_create(&transport).observe(request.seconds);
        self.bytes_in.get_or_create(&transport).inc_by(request.bytes_in);
        self.bytes_out.get_or_create(&transport).inc_by(request.bytes_out);
    }
}

/// One answered request.
pub(crate) struct Recorded {
    pub transport: &'static str,
    pub operation: String,
    pub status: u16,
    pub seconds: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub slowed: bool,
}
