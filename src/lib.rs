//! Wiring for the `haven-relay` binary: configuration, credentials, and starting the relay.
//! The S3 protocol lives in `gateway`, storage in `backends`; nothing here knows either's insides.

pub mod config;
pub mod credentials;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backends::fs::FsStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::RelayConfig;
pub use credentials::Credentials;

/// How long in-flight requests may run after a shutdown request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running relay.
pub struct Relay {
    /// Where the plain-HTTP S3 endpoint listens (the real port when 0 was asked for).
    pub s3_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl Relay {
    /// Opens the store and starts serving the S3 API over HTTP.
    pub async fn start(config: &RelayConfig, credentials: &Credentials) -> anyhow::Result<Relay> {
        let store_dir = config.store_dir();
        let store = FsStore::open(&store_dir)
            .await
            .with_context(|| format!("opening store at {}", store_dir.display()))?;
        let gateway_config = gateway::GatewayConfig {
            max_object_size: config.max_object_size,
            max_post_object_size: config
                .max_object_size
                .min(gateway::GatewayConfig::DEFAULT_MAX_POST_OBJECT_SIZE),
            access_key: credentials.access_key.clone(),
            secret_key: credentials.secret_key.clone(),
        };
        let frontend = gateway::frontend(Arc::new(store), &gateway_config);
        let listener = tokio::net::TcpListener::bind(config.s3_addr)
            .await
            .with_context(|| format!("binding the S3 endpoint to {}", config.s3_addr))?;
        let s3_addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(gateway::serve_http(
            listener,
            frontend,
            async move {
                let _ = stopped.await;
            },
            SHUTDOWN_GRACE,
        ));
        Ok(Relay {
            s3_addr,
            stop: Some(stop),
            server,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3_addr)
    }

    /// Stops accepting, lets in-flight requests finish (bounded by [`SHUTDOWN_GRACE`]).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}
