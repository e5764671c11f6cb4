//! `run`'s limits on what clients may take of the relay: connections on the HTTP port, how
//! long headers may take, requests per second per client, and over the tunnel connections
//! per member and streams per connection.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;
use gateway::ConnectionLimits;
use serde::Deserialize;

#[derive(Args)]
pub struct LimitArgs {
    /// HTTP connections open at once (default 4096, and never closer than 256 to the open-file
    /// limit). Past it, a new connection replaces the one idle longest.
    #[arg(long, env = "HAVEN_RELAY_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open (default 20).
    #[arg(long, env = "HAVEN_RELAY_HEADER_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: Option<u64>,
    /// Requests per second one client may make, with bursts of as many: the relay's access
    /// key over HTTP, a member over the tunnel. Over it: 503 SlowDown (default: no limit; 0
    /// also means none).
    #[arg(long, env = "HAVEN_RELAY_REQUESTS_PER_SECOND")]
    pub requests_per_second: Option<u32>,
    /// Tunnel connections one member may hold at once (default 16); a new one past it closes
    /// that member's oldest.
    #[arg(long, env = "HAVEN_RELAY_MAX_CONNECTIONS_PER_MEMBER", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_connections_per_member: Option<u64>,
    /// Requests (streams) one tunnel connection may have in flight at once (default 1024);
    /// more wait for one to finish.
    #[arg(long, env = "HAVEN_RELAY_MAX_STREAMS_PER_CONNECTION", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams_per_connection: Option<u32>,
}

/// `relay.json`'s `limits` object; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct LimitsFile {
    pub max_connections: Option<u64>,
    pub header_timeout_secs: Option<u64>,
    pub requests_per_second: Option<u32>,
    pub max_connections_per_member: Option<u64>,
    pub max_streams_per_connection: Option<u32>,
}

/// What the limits resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connections: ConnectionLimits,
    pub requests_per_second: Option<NonZeroU32>,
    pub connections_per_member: usize,
    pub streams_per_connection: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: ConnectionLimits::default(),
            requests_per_second: None,
            connections_per_member: tunnel::server::DEFAULT_CONNECTIONS_PER_MEMBER,
            streams_per_connection: tunnel::endpoint::DEFAULT_MAX_STREAMS,
        }
    }
}

impl LimitArgs {
    pub fn resolve(&self, file: Option<&LimitsFile>) -> anyhow::Result<Limits> {
        let defaults = ConnectionLimits::default();
        let max_connections = self.max_connections.or(file.and_then(|f| f.max_connections));
        let max_connections = match max_connections {
            None => defaults.max_connections,
            Some(n) => {
                anyhow::ensure!(
                    (1..=1_000_000).contains(&n),
                    "limits.max_connections must be between 1 and 1000000"
                );
                n as usize
            }
        };
        let header_timeout = match self.header_timeout_secs.or(file.and_then(|f| f.header_timeout_secs)) {
            None => defaults.header_timeout,
            Some(secs) => {
                anyhow::ensure!(
                    (1..=3600).contains(&secs),
                    "limits.header_timeout_secs must be between 1 and 3600"
                );
                Duration::from_secs(secs)
            }
        };
        let requests_per_second = self
            .requests_per_second
            .or(file.and_then(|f| f.requests_per_second))
            .and_then(NonZeroU32::new);
        let per_member = self
            .max_connections_per_member
            .or(file.and_then(|f| f.max_connections_per_member));
        anyhow::ensure!(
            per_member.is_none_or(|n| (1..=10_000).contains(&n)),
            "limits.max_connections_per_member must be between 1 and 10000"
        );
        let streams = self
            .max_streams_per_connection
            .or(file.and_then(|f| f.max_streams_per_connection));
        anyhow::ensure!(
            streams.is_none_or(|n| (1..=100_000).contains(&n)),
            "limits.max_streams_per_connection must be between 1 and 100000"
        );
        let defaults = Limits::default();
        Ok(Limits {
            connections: ConnectionLimits {
                max_connections,
                header_timeout,
            },
            requests_per_second,
            connections_per_member: per_member.map_or(defaults.connections_per_member, |n| n as usize),
            streams_per_connection: streams.unwrap_or(defaults.streams_per_connection),
        })
    }
}
