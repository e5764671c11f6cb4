//! Wiring for the `haven-relay` binary: configuration, credentials, and starting the relay.
//! The S3 protocol lives in `gateway`, storage in `backends`; nothing here knows either's insides.

pub mod byte_size;
pub mod circle;
pub mod config;
pub mod config_report;
pub mod credentials;
pub mod data_dir_lock;
pub mod doctor;
pub mod fd_limit;
pub mod health;
mod jsonc;
pub mod lifetime;
pub mod limit_args;
pub mod logging;
pub mod mail;
pub mod ops;
pub mod pipe;
pub mod private_files;
pub mod run_args;
pub mod storage;
mod tunnel_port;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::RelayConfig;
pub use credentials::Credentials;

/// How long in-flight requests may run after a shutdown request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running relay.
pub struct Relay {
    http: Option<HttpListener>,
    tunnel: Option<tunnel::TunnelServer>,
    mirrors: Option<Arc<backends::mirror::MirrorStore>>,
    /// Aborts unfinished multipart uploads past their age; `None` without storage.
    upload_expiry: Option<JoinHandle<()>>,
    /// `None` without storage.
    mailbox: Option<Arc<mailbox::Mailbox>>,
    /// Keeps the storage quota's count of staged parts true; `None` without a quota.
    quota_refresh: Option<JoinHandle<()>>,
    mailbox_sweep: Option<JoinHandle<()>>,
    /// The store the S3 API serves, where lifecycle rules and `--ttl` apply.
    lifecycle: Arc<gateway::lifecycle::Expiring>,
    /// Deletes the bytes of expired objects; `None` without storage.
    lifecycle_sweep: Option<JoinHandle<()>>,
    /// Tells `haven-relay health` this relay is alive.
    heartbeat: JoinHandle<()>,
    data_dir: std::path::PathBuf,
    /// The ops listener's address and task, when `--ops-addr` is set.
    ops: Option<(SocketAddr, JoinHandle<()>)>,
    /// Released when the relay is dropped, after everything else has stopped.
    _lock: data_dir_lock::DataDirLock,
}

struct HttpListener {
    addr: SocketAddr,
    tls: bool,
    stop: oneshot::Sender<()>,
    /// Resolves to whether every request finished within the grace period.
    server: JoinHandle<bool>,
}

impl Relay {
    /// Opens the store and starts the transports `config` asks for.
    pub async fn start(config: &RelayConfig, credentials: &Credentials) -> anyhow::Result<Relay> {
        anyhow::ensure!(
            config.s3_addr.is_some() || config.tunnel.is_some(),
            "no transport selected: pass --link (the circle link from the app) and/or --s3"
        );
        let lock = data_dir_lock::lock(&config.data_dir).await?;
        private_files::close_data_dir(&config.data_dir)
            .with_context(|| format!("making {} private", config.data_dir.display()))?;
        let storage::OpenedStore { store, mirrors, local } = storage::open(config).await?;
        let quota = storage_quota(config, local.as_ref(), mirrors.as_ref());
        let quota_refresh = quota.as_ref().map(|q| q.spawn_refresher(store.clone()));
        let (ops, s3_metrics) = match config.ops_addr {
            Some(_) => {
                let (ops, metrics) = ops::Ops::new();
                (Some(ops), Some(metrics))
            }
            None => (None, None),
        };
        let upload_expiry = (!config.no_storage).then(|| {
            backends::upload_expiry::spawn(
                store.clone(),
                config.incomplete_upload_max_age,
                config.incomplete_upload_check,
            )
        });
        let mailbox = if config.no_storage {
            None
        } else {
            let opened = mailbox::Mailbox::open(store.clone(), config.mailbox.clone(), config.clock.clone())
                .await
                .context("opening the mailbox")?;
            Some(opened)
        };
        let mailbox_sweep = mailbox.as_ref().map(|m| m.spawn_sweeper(config.mailbox_sweep));
        // The S3 API sees every bucket but the mailbox's, and no object past its lifetime.
        let store = Arc::new(gateway::lifecycle::Expiring::new(
            Arc::new(mailbox::hidden::WithoutMailbox(store)),
            config.clock.clone(),
            config.ttl.map(|t| t.0),
        ));
        let lifecycle_sweep = (!config.no_storage)
            .then(|| gateway::lifecycle::sweep::spawn(&store, config.expiry_sweep, s3_metrics.clone()));
        let gateway_config = gateway::GatewayConfig {
            max_object_size: config.max_object_size,
            max_post_object_size: config
                .max_object_size
                .min(gateway::GatewayConfig::DEFAULT_MAX_POST_OBJECT_SIZE),
            access_key: credentials.access_key.clone(),
            secret_key: credentials.secret_key.clone(),
            s3_domains: config.s3_domains.clone(),
            requests_per_second: config.limits.requests_per_second,
            metrics: s3_metrics,
            quota: quota.clone(),
            header_timeout: config.limits.connections.header_timeout,
        };
        let http = match config.s3_addr {
            Some(addr) => Some(
                start_http(
                    addr,
                    gateway::frontend(store.clone(), &gateway_config),
                    config.limits.connections,
                    config.tls.as_ref(),
                )
                .await?,
            ),
            None => None,
        };
        let tunnel = match &config.tunnel {
            Some(settings) => Some(
                start_tunnel(
                    &config.data_dir,
                    settings,
                    gateway::trusted_frontend(store.clone(), &gateway_config),
                    mailbox.clone(),
                    config.switchboard,
                    config.limits,
                )
                .await?,
            ),
            None => None,
        };
        let store_for_relay = store.clone();
        let ops = match (ops, config.ops_addr) {
            (Some(ops), Some(addr)) => {
                let sources = ops::Sources {
                    local,
                    mirrors: mirrors.clone(),
                    mailbox: mailbox.clone(),
                    tunnel: tunnel.as_ref().map(|t| t.stats()),
                };
                Some(ops.serve(addr, sources).await?)
            }
            _ => None,
        };
        Ok(Relay {
            http,
            tunnel,
            mirrors,
            upload_expiry,
            mailbox,
            quota_refresh,
            mailbox_sweep,
            lifecycle: store_for_relay,
            lifecycle_sweep,
            heartbeat: health::spawn(&config.data_dir),
            data_dir: config.data_dir.clone(),
            ops,
            _lock: lock,
        })
    }

    /// Where the ops listener (`/health`, `/ready`, `/metrics`) listens, if it runs.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|(addr, _)| *addr)
    }

    /// Where the plain-HTTP S3 endpoint listens (the real port when 0 was asked for).
    pub fn s3_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.addr)
    }

    /// The HTTP endpoint URL, for S3 clients: `https://` when TLS is on.
    pub fn endpoint(&self) -> Option<String> {
        let http = self.http.as_ref()?;
        let scheme = if http.tls { "https" } else { "http" };
        Some(format!("{scheme}://{}", http.addr))
    }

    /// The tunnel's iroh endpoint, when the tunnel runs.
    pub fn tunnel_endpoint(&self) -> Option<&tunnel::Endpoint> {
        self.tunnel.as_ref().map(|t| t.endpoint())
    }

    /// The mailbox, unless the relay stores nothing.
    pub fn mailbox(&self) -> Option<&Arc<mailbox::Mailbox>> {
        self.mailbox.as_ref()
    }

    /// The store the S3 API serves (lifecycle rules applied): tests sweep it by hand.
    pub fn lifecycle(&self) -> &Arc<gateway::lifecycle::Expiring> {
        &self.lifecycle
    }

    /// Each mirror's state, when the relay runs a mirror set.
    pub fn mirror_status(&self) -> Option<Vec<backends::mirror::MirrorStatus>> {
        self.mirrors.as_ref().map(|m| m.status())
    }

    /// Stops accepting, lets in-flight requests finish (bounded by [`SHUTDOWN_GRACE`]).
    /// `false` if some were cut off when the grace period ended.
    pub async fn shutdown(self) -> bool {
        let mut finished = true;
        if let Some(expiry) = self.upload_expiry {
            expiry.abort();
        }
        if let Some(sweep) = self.mailbox_sweep {
            sweep.abort();
        }
        if let Some(sweep) = self.lifecycle_sweep {
            sweep.abort();
        }
        if let Some(http) = self.http {
            let _ = http.stop.send(());
            finished &= http.server.await.unwrap_or(false);
        }
        if let Some(tunnel) = self.tunnel {
            finished &= tunnel.shutdown(SHUTDOWN_GRACE).await;
        }
        // Delivered messages' payloads still being deleted; what is left, the next start does.
        if let Some(mailbox) = self.mailbox {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, mailbox.settled()).await;
        }
        self.heartbeat.abort();
        if let Some(refresh) = self.quota_refresh {
            refresh.abort();
        }
        if let Some((_, ops)) = self.ops {
            ops.abort();
        }
        health::mark_stopped(&self.data_dir);
        finished
    }
}

/// Connections the kernel may hold for the S3 endpoint before the relay accepts them. tokio's
/// default (1024) overflowed when an SDK opened 1,500 connections at once on a busy machine:
/// the dropped SYNs came back after the client's 3 s connect timeout. The kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux).
const ACCEPT_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted relay gets its port back at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// The storage quota, counting what the store holds (the embedded store's index or the mirror
/// set's catalog); none without `--max-storage` or without storage.
fn storage_quota(
    config: &RelayConfig,
    local: Option<&Arc<backends::fs::FsStore>>,
    mirrors: Option<&Arc<backends::mirror::MirrorStore>>,
) -> Option<Arc<gateway::quota::StorageQuota>> {
    if config.max_storage.is_none() && config.bucket_quotas.is_empty() {
        return None;
    }
    let (stored, in_bucket): (gateway::quota::StoredBytes, gateway::quota::BucketBytes) = match (local, mirrors) {
        (Some(local), _) => {
            let (local, again) = (local.clone(), local.clone());
            (
                Arc::new(move || local.usage().1),
                Arc::new(move |bucket: &str| again.bucket_bytes(bucket)),
            )
        }
        (None, Some(mirrors)) => {
            let (mirrors, again) = (mirrors.clone(), mirrors.clone());
            (
                Arc::new(move || mirrors.usage().1),
                Arc::new(move |bucket: &str| again.bucket_bytes(bucket)),
            )
        }
        (None, None) => return None,
    };
    Some(gateway::quota::StorageQuota::new(
        config.max_storage,
        stored,
        config.bucket_quotas.clone(),
        in_bucket,
    ))
}

async fn start_http(
    addr: SocketAddr,
    frontend: gateway::Frontend,
    mut limits: gateway::ConnectionLimits,
    tls_files: Option<&gateway::TlsFiles>,
) -> anyhow::Result<HttpListener> {
    let tls = tls_files.cloned().map(gateway::Tls::load).transpose()?;
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            "the S3 endpoint on {addr} is plain HTTP: object bodies are sealed, but anyone on the \
             path sees bucket and key names, SigV4 request headers and presigned URLs (which can \
             be replayed until they expire). Pass --tls-cert and --tls-key (PEM) to serve HTTPS"
        );
    }
    let open_files = fd_limit::raise();
    let cap = fd_limit::connection_cap(limits.max_connections, open_files);
    if cap < limits.max_connections {
        tracing::info!(
            open_files = open_files.unwrap_or_default(),
            max_connections = cap,
            "fewer HTTP connections than configured: the open-file limit leaves room for no more"
        );
    }
    limits.max_connections = cap;
    let listener = listen(addr).with_context(|| format!("binding the S3 endpoint to {addr}"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(gateway::serve_http(
        listener,
        frontend,
        limits,
        tls.clone(),
        async move {
            let _ = stopped.await;
        },
        SHUTDOWN_GRACE,
    ));
    Ok(HttpListener {
        addr,
        tls: tls.is_some(),
        stop,
        server,
    })
}

async fn start_tunnel(
    data_dir: &Path,
    settings: &tunnel::EndpointOptions,
    frontend: gateway::Frontend,
    mailbox: Option<Arc<mailbox::Mailbox>>,
    switchboard: tunnel::SwitchLimits,
    limits: limit_args::Limits,
) -> anyhow::Result<tunnel::TunnelServer> {
    let secret = tunnel::identity::load_or_create(data_dir)?;
    let alpns = tunnel::alpns;
    let remembered = tunnel_port::choose(data_dir, settings);
    let streams = limits.streams_per_connection;
    let endpoint = match tunnel::endpoint::bind_limited(secret.clone(), &remembered, alpns(), streams).await {
        // A remembered port may be taken now; any port beats not starting.
        Err(_) if &remembered != settings => tunnel::endpoint::bind_limited(secret, settings, alpns(), streams).await?,
        other => other?,
    };
    tunnel_port::remember(data_dir, &endpoint);
    let members = tunnel::members::Members::new(tunnel::members::load(data_dir)?);
    Ok(tunnel::TunnelServer::start(
        endpoint,
        frontend,
        mailbox,
        members,
        Some(data_dir.to_path_buf()),
        switchboard,
        limits.connections_per_member,
    ))
}
