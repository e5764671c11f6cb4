//! One QUIC connection to the relay per protocol, dialled on first use and again when it
//! breaks (relay restarted, path changed); every request gets its own bi-stream on it.

use std::time::Duration;

use iroh::endpoint::{Connection, RecvStream, SendStream};
use iroh::{Endpoint, EndpointAddr};
use tokio::sync::Mutex;

use crate::TunnelError;
use crate::server::NOT_A_MEMBER;

/// How long one dial may take before the request fails instead of hanging.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) struct Dialer {
    pub endpoint: Endpoint,
    pub relay: EndpointAddr,
    alpn: &'static [u8],
    conn: Mutex<Option<Connection>>,
}

impl Dialer {
    pub fn new(endpoint: Endpoint, relay: EndpointAddr, alpn: &'static [u8]) -> Self {
        Self {
            endpoint,
            relay,
            alpn,
            conn: Mutex::new(None),
        }
    }

    /// Opens a new stream, re-dialling once if the current connection is gone.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), TunnelError> {
        let conn = self.connection().await?;
        match conn.open_bi().await {
            Ok(pair) => Ok(pair),
            Err(_) => {
                self.forget(&conn).await;
                let conn = self.connection().await?;
                conn.open_bi().await.map_err(|e| stream_error(&conn, e))
            }
        }
    }

    /// The live connection, dialling if there is none or it has closed.
    pub async fn connection(&self) -> Result<Connection, TunnelError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(conn.clone());
        }
        let relay = self.relay.id.fmt_short().to_string();
        let dial = self.endpoint.connect(self.relay.clone(), self.alpn);
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

    pub async fn forget(&self, broken: &Connection) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| c.stable_id() == broken.stable_id()) {
            *slot = None;
        }
    }
}

/// A refusal by the relay reads as such, not as a generic stream error.
pub(crate) fn stream_error(conn: &Connection, e: impl std::fmt::Display) -> TunnelError {
    match conn.close_reason() {
        Some(iroh::endpoint::ConnectionError::ApplicationClosed(close))
            if close.error_code == iroh::endpoint::VarInt::from_u32(NOT_A_MEMBER) =>
        {
            TunnelError::Refused(String::from_utf8_lossy(&close.reason).into_owned())
        }
        _ => TunnelError::Stream(e.to_string()),
    }
}
