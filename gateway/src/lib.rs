//! The S3 API of haven-relay.
//!
//! [`s3s`] owns the protocol — SigV4, XML, aws-chunked bodies, routing — and calls our thin
//! [`Gateway`], which translates each operation into calls on a [`backends::Store`] and back.
//! One file per family of operations (`bucket`, `put`, `get`, `list`, `copy`, `delete`,
//! `multipart`, `cors`, `lifecycle`), one place that maps storage errors to S3 errors (`error`), and one
//! server loop ([`server`]) that every transport shares.

mod access;
mod attributes;
mod body;
mod bucket;
pub mod chunked;
mod completed;
mod connections;
mod convert;
mod copy;
mod cors;
mod delete;
mod error;
mod get;
pub mod host;
pub mod lifecycle;
mod list;
pub mod metrics;
mod multipart;
mod post_form;
mod put;
pub mod quota;
mod rate;
mod request_id;
mod request_log;
mod s3;
pub mod server;
mod tls;

use std::sync::Arc;

use backends::Store;
use s3s::auth::{S3Auth, SecretKey};
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;

use crate::host::RelayHosts;

pub use connections::ConnectionLimits;
pub use server::{Frontend, serve_http};
pub use tls::{Tls, TlsError, TlsFiles};

/// Limits and identity of one gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Bodies larger than this are refused with `EntityTooLarge`.
    pub max_object_size: u64,
    /// POST-object (browser form) uploads are buffered by s3s, so they get a smaller cap.
    pub max_post_object_size: u64,
    pub access_key: String,
    pub secret_key: String,
    /// The relay's own host names besides `localhost` (`--s3-domain`): path-style on each,
    /// virtual-hosted style on `<bucket>.<name>`. Other names are refused (see [`host`]).
    pub s3_domains: Vec<String>,
    /// Requests per second one client may make (see [`rate`]); `None`: no limit.
    pub requests_per_second: Option<std::num::NonZeroU32>,
    /// Where requests are counted for `/metrics`, if anywhere.
    pub metrics: Option<Arc<metrics::S3Metrics>>,
    /// The relay-wide storage quota (`--max-storage`), if any.
    pub quota: Option<Arc<quota::StorageQuota>>,
    /// How long a client has to send a request's headers, counted from the end of the
    /// previous answer: it also closes idle keep-alive connections and tunnel streams, which
    /// would otherwise hold a connection's stream allowance for good.
    pub header_timeout: std::time::Duration,
}

impl GatewayConfig {
    pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
    pub const DEFAULT_MAX_POST_OBJECT_SIZE: u64 = 64 * 1024 * 1024;
}

/// Our `s3s::S3` implementation: the store plus the limits.
pub struct Gateway {
    store: Arc<dyn Store>,
    /// The same store, for what lifecycle rules say of an object (`x-amz-expiration`).
    lifecycle: Arc<lifecycle::Expiring>,
    max_object_size: u64,
    quota: Option<Arc<quota::StorageQuota>>,
    /// Answers a repeated CompleteMultipartUpload.
    completed: Arc<completed::CompletedUploads>,
}

/// Builds the HTTP frontend (s3s service plus CORS) over `store`, with SigV4 required. The
/// store is the one lifecycle rules apply to, shared by every frontend of a relay.
pub fn frontend(store: Arc<lifecycle::Expiring>, config: &GatewayConfig) -> Frontend {
    let hosts = RelayHosts::new(config.s3_domains.clone());
    let mut builder = builder(store.clone(), config, &hosts);
    builder.set_auth(OneKey {
        access_key: config.access_key.clone(),
        secret_key: config.secret_key.as_str().into(),
    });
    // One set of buckets: strangers are counted at the frontend, the key holder in the hook.
    let rate = config.requests_per_second.map(|r| Arc::new(rate::RequestRate::new(r)));
    builder.set_access(rate::RateByKey {
        rate: rate.clone(),
        metrics: config.metrics.clone(),
    });
    Frontend::new(builder.build(), store, Trust::SigV4, hosts, config, rate)
}

/// Builds the frontend for a transport that has already authenticated its peer (the iroh
/// tunnel admits circle members only): the same S3 service, without SigV4. Signatures that
/// clients add anyway are ignored rather than checked against keys they do not have. (s3s
/// consults an access check only when auth is set, so there is none to relax here.)
pub fn trusted_frontend(store: Arc<lifecycle::Expiring>, config: &GatewayConfig) -> Frontend {
    let hosts = RelayHosts::new(config.s3_domains.iter().cloned().chain([host::TUNNEL_HOST.to_owned()]));
    let builder = builder(store.clone(), config, &hosts);
    let rate = config.requests_per_second.map(|r| Arc::new(rate::RequestRate::new(r)));
    Frontend::new(builder.build(), store, Trust::Transport, hosts, config, rate)
}

fn builder(store: Arc<lifecycle::Expiring>, config: &GatewayConfig, hosts: &RelayHosts) -> S3ServiceBuilder {
    let gateway = Gateway {
        store: store.clone(),
        lifecycle: store,
        max_object_size: config.max_object_size,
        quota: config.quota.clone(),
        completed: Default::default(),
    };
    let mut builder = S3ServiceBuilder::new(gateway);
    let mut s3s_config = S3Config::default();
    s3s_config.post_object_max_file_size = config.max_post_object_size;
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(s3s_config))));
    builder.set_host(hosts.clone());
    builder
}

/// Who vouches for a request: its SigV4 signature, or the transport it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    SigV4,
    Transport,
}

/// SigV4's key pair: s3s's `SimpleAuth` answers an unknown access key with `NotSignedUp`;
/// S3 clients expect `InvalidAccessKeyId`, and say so to their users.
struct OneKey {
    access_key: String,
    secret_key: SecretKey,
}

#[async_trait::async_trait]
impl S3Auth for OneKey {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The access key you provided does not exist in this relay's records"
            ))
        }
    }
}
