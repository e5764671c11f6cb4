//! A relay with the iroh tunnel on loopback, and members' clients for it: the library client,
//! aws-sdk-s3 on top of it, and the `connect` forwarder on a local port.

use std::net::SocketAddr;
use std::sync::Arc;

use tunnel::link::CircleId;
use tunnel::{EndpointId, EndpointOptions, RelayChoice, SecretKey, TunnelClient};

use super::TestRelay;

pub fn loopback() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

/// A relay serving HTTP and the tunnel, whose circle is `members`.
pub async fn relay_for(members: &[EndpointId]) -> TestRelay {
    relay_for_with(members, |_| {}).await
}

/// The same, with its configuration changed by `tweak` first.
pub async fn relay_for_with(members: &[EndpointId], tweak: impl FnOnce(&mut haven_relay::RelayConfig)) -> TestRelay {
    let dir = tempfile::tempdir().unwrap();
    tunnel::members::save(dir.path(), &members.iter().copied().collect()).unwrap();
    let mut config = super::config(&dir);
    config.tunnel = Some(direct_only());
    tweak(&mut config);
    TestRelay::on(dir, config).await
}

pub fn relay_link(r: &TestRelay) -> tunnel::link::RelayLink {
    tunnel::endpoint::relay_link(r.relay.tunnel_endpoint().unwrap(), CircleId([9; 16]))
}

/// No iroh relay: direct loopback addresses only.
pub fn direct_only() -> EndpointOptions {
    EndpointOptions {
        relay: RelayChoice::Disabled,
        bind: loopback(),
        bind_also: None,
        relay_ca: Vec::new(),
    }
}

pub async fn tunnel_client(key: &SecretKey, r: &TestRelay) -> Result<Arc<TunnelClient>, tunnel::TunnelError> {
    let endpoint = tunnel::endpoint::bind(key.clone(), &direct_only(), Vec::new()).await?;
    Ok(Arc::new(
        TunnelClient::connect(endpoint, relay_link(r).endpoint_addr()).await?,
    ))
}

/// aws-sdk-s3 sending over the tunnel, with throwaway credentials (members need none).
pub fn sdk(client: Arc<TunnelClient>) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .http_client(tunnel::aws::TunnelHttpClient::new(client))
        .endpoint_url("http://haven-relay.tunnel")
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "member",
            "no-secret-needed",
            None,
            None,
            "test",
        ))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// What `haven-relay connect` runs: a local port forwarded over the tunnel as `member`.
pub async fn forwarder(key: &SecretKey, r: &TestRelay) -> SocketAddr {
    let client = tunnel_client(key, r).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tunnel::forward::forward(listener, client, std::future::pending()));
    addr
}
