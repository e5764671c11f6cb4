//! The S3 API over the iroh tunnel: real iroh endpoints on 127.0.0.1 with relays disabled,
//! aws-sdk-s3 plugged into the library client, membership enforced by node id.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::CompletedMultipartUpload;
use common::{TestRelay, blob};
use tunnel::{EndpointOptions, RelayChoice, SecretKey, TunnelClient};

use common::tunnel::{loopback, relay_for, relay_link, sdk, tunnel_client};

#[tokio::test]
async fn sdk_round_trip_with_a_64_mib_multipart_upload() {
    let member = SecretKey::generate();
    let r = relay_for(&[member.public()]).await;
    let s3 = sdk(tunnel_client(&member, &r).await.unwrap());
    s3.create_bucket().bucket("circle").send().await.unwrap();

    let part_size = 16 * 1024 * 1024;
    let whole = blob(4 * part_size, 21);
    let parts: Vec<Vec<u8>> = whole.chunks(part_size).map(<[u8]>::to_vec).collect();
    let (id, parts) = common::upload_parts(&s3, "circle", "big", &parts).await;
    let done = s3
        .complete_multipart_upload()
        .bucket("circle")
        .key("big")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .unwrap();
    assert!(done.e_tag().unwrap().ends_with("-4\""), "{:?}", done.e_tag());

    let range = s3
        .get_object()
        .bucket("circle")
        .key("big")
        .range("bytes=20000000-20000099")
        .send()
        .await
        .unwrap();
    assert_eq!(
        range.body.collect().await.unwrap().to_vec(),
        &whole[20_000_000..20_000_100]
    );
    let full = s3.get_object().bucket("circle").key("big").send().await.unwrap();
    assert!(
        full.body.collect().await.unwrap().to_vec() == whole,
        "64 MiB body intact"
    );

    // The same store is behind the SigV4 HTTP listener: one service, two transports.
    let listed = r.client.list_objects_v2().bucket("circle").send().await.unwrap();
    assert_eq!(listed.contents().len(), 1);
    assert_eq!(listed.contents()[0].size(), Some(whole.len() as i64));

    s3.delete_object().bucket("circle").key("big").send().await.unwrap();
    let listed = s3.list_objects_v2().bucket("circle").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0));
}

#[tokio::test]
async fn a_node_outside_the_circle_is_refused_and_changes_nothing() {
    let member = SecretKey::generate();
    let outsider = SecretKey::generate();
    let r = relay_for(&[member.public()]).await;
    // Said at once, when connecting, not as every later request failing.
    let err = tunnel_client(&outsider, &r).await.unwrap_err();
    assert!(matches!(err, tunnel::TunnelError::Refused(_)), "{err}");
    let buckets = r.client.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty(), "nothing was created");
}

#[tokio::test]
async fn a_member_removed_while_connected_loses_access() {
    let member = SecretKey::generate();
    let r = relay_for(&[member.public()]).await;
    let s3 = sdk(tunnel_client(&member, &r).await.unwrap());
    s3.create_bucket().bucket("before").send().await.unwrap();

    tunnel::members::save(r.dir.path(), &Default::default()).unwrap();
    let mut refused = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s3.list_buckets().send().await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "still served 4 s after removal");
    assert!(s3.create_bucket().bucket("after").send().await.is_err());
    assert_eq!(common::bucket_names(&r.client).await, ["before"]);
}

#[tokio::test]
async fn a_hundred_concurrent_requests_over_one_connection() {
    let member = SecretKey::generate();
    let r = relay_for(&[member.public()]).await;
    let s3 = sdk(tunnel_client(&member, &r).await.unwrap());
    s3.create_bucket().bucket("busy").send().await.unwrap();
    let puts = (0..100).map(|i| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("busy")
                .key(format!("k{i:03}"))
                .body(ByteStream::from(blob(10_000, i)))
                .send()
                .await
        }
    });
    for result in futures::future::join_all(puts).await {
        result.unwrap();
    }
    let gets = (0..100).map(|i| {
        let s3 = s3.clone();
        async move {
            let got = s3
                .get_object()
                .bucket("busy")
                .key(format!("k{i:03}"))
                .send()
                .await
                .unwrap();
            (i, got.body.collect().await.unwrap().to_vec())
        }
    });
    for (i, body) in futures::future::join_all(gets).await {
        assert_eq!(body, blob(10_000, i));
    }
}

#[tokio::test]
async fn a_restarted_relay_is_reconnected_transparently() {
    let member = SecretKey::generate();
    let r = relay_for(&[member.public()]).await;
    let client = tunnel_client(&member, &r).await.unwrap();
    let s3 = sdk(client.clone());
    s3.create_bucket().bucket("durable").send().await.unwrap();
    s3.put_object()
        .bucket("durable")
        .key("k")
        .body(ByteStream::from_static(b"sealed"))
        .send()
        .await
        .unwrap();
    let before = relay_link(&r);
    let r = r.restart().await;
    assert_eq!(relay_link(&r), before, "same node id and address after a restart");
    let got = s3.get_object().bucket("durable").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"sealed");
}

#[tokio::test]
async fn traffic_forced_through_a_local_iroh_relay_server() {
    use iroh_relay::server::{CertConfig, RelayConfig, Server, ServerConfig, TlsConfig};
    let localhost = std::net::Ipv4Addr::LOCALHOST;
    let (certs, server_config) = iroh_relay::server::testing::self_signed_tls_certs_and_config();
    let mut relay_config = RelayConfig::new((localhost, 0));
    relay_config.tls = Some(TlsConfig::new((localhost, 0), CertConfig::Manual { server_config }));
    let mut config = ServerConfig::default();
    config.relay = Some(relay_config);
    let relay_server = Server::spawn(config).await.unwrap();
    let url: iroh::RelayUrl = format!("https://{}", relay_server.https_addr().unwrap())
        .parse()
        .unwrap();

    let member = SecretKey::generate();
    let dir = tempfile::tempdir().unwrap();
    tunnel::members::save(dir.path(), &[member.public()].into_iter().collect()).unwrap();
    let mut relay_config = common::config(&dir);
    relay_config.tunnel = Some(EndpointOptions {
        relay: RelayChoice::Custom(url.clone()),
        bind: loopback(),
        bind_also: None,
        relay_ca: certs.clone(),
    });
    let r = TestRelay::on(dir, relay_config).await;
    let relay_endpoint = r.relay.tunnel_endpoint().unwrap();
    tokio::time::timeout(Duration::from_secs(20), relay_endpoint.online())
        .await
        .expect("the relay reached its home iroh relay");

    // The member has no IP transport at all: every packet must go through the iroh relay.
    let member_endpoint = iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .secret_key(member)
        .relay_mode(iroh::RelayMode::custom([url.clone()]))
        .ca_tls_config(iroh::tls::CaTlsConfig::default().with_extra_roots(certs))
        .clear_ip_transports()
        .bind()
        .await
        .unwrap();
    let via_relay_only = iroh::EndpointAddr::from_parts(relay_endpoint.id(), [iroh::TransportAddr::Relay(url)]);
    let client = TunnelClient::connect(member_endpoint, via_relay_only).await.unwrap();
    let s3 = sdk(Arc::new(client));
    s3.create_bucket().bucket("relayed").send().await.unwrap();
    let body = blob(1 << 20, 33);
    s3.put_object()
        .bucket("relayed")
        .key("k")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let got = s3.get_object().bucket("relayed").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), body);
}

#[tokio::test]
async fn a_member_added_while_running_gets_in_without_a_restart() {
    let newcomer = SecretKey::generate();
    let r = relay_for(&[]).await;
    if let Ok(client) = tunnel_client(&newcomer, &r).await {
        assert!(sdk(client).list_buckets().send().await.is_err(), "not a member yet");
    }
    tunnel::members::save(r.dir.path(), &[newcomer.public()].into_iter().collect()).unwrap();
    let mut admitted = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(client) = tunnel_client(&newcomer, &r).await
            && sdk(client).list_buckets().send().await.is_ok()
        {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "the running relay picked up the new member");
}

/// A raw QUIC connection to the relay's S3 protocol as `key`, from an endpoint of its own
/// (returned too: the connection lives only as long as it).
async fn raw_connection(key: &SecretKey, r: &TestRelay) -> (iroh::Endpoint, iroh::endpoint::Connection) {
    let endpoint = tunnel::endpoint::bind(key.clone(), &common::tunnel::direct_only(), Vec::new())
        .await
        .unwrap();
    let conn = endpoint
        .connect(relay_link(r).endpoint_addr(), tunnel::ALPN)
        .await
        .unwrap();
    (endpoint, conn)
}

#[tokio::test]
async fn a_member_over_its_connection_allowance_loses_its_oldest() {
    let member = SecretKey::generate();
    let r = common::tunnel::relay_for_with(&[member.public()], |c| c.limits.connections_per_member = 2).await;
    let (_a, first) = raw_connection(&member, &r).await;
    let (_b, second) = raw_connection(&member, &r).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(first.close_reason().is_none() && second.close_reason().is_none());
    let (_c, third) = raw_connection(&member, &r).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), first.closed())
        .await
        .expect("the oldest connection is closed");
    match closed {
        iroh::endpoint::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                iroh::endpoint::VarInt::from_u32(tunnel::server::TOO_MANY_CONNECTIONS)
            )
        }
        other => panic!("closed for another reason: {other}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(second.close_reason().is_none() && third.close_reason().is_none());
    // The newest still serves requests.
    let s3 = sdk(tunnel_client(&member, &r).await.unwrap());
    s3.create_bucket().bucket("still-works").send().await.unwrap();
}

#[tokio::test]
async fn streams_past_the_per_connection_limit_wait_for_a_free_one() {
    let member = SecretKey::generate();
    let r = common::tunnel::relay_for_with(&[member.public()], |c| c.limits.streams_per_connection = 2).await;
    let (_endpoint, conn) = raw_connection(&member, &r).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        // Half a request: the stream stays busy.
        send.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        open.push((send, recv));
    }
    let third = tokio::time::timeout(Duration::from_millis(700), conn.open_bi()).await;
    assert!(third.is_err(), "a third stream opened past the limit of 2: {third:?}");
    let (mut send, mut recv) = open.remove(0);
    send.reset(0u32.into()).unwrap();
    recv.stop(0u32.into()).unwrap();
    let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(5), conn.open_bi())
        .await
        .expect("a stream frees up once one closes")
        .unwrap();
    send.write_all(b"GET / HTTP/1.1\r\nHost: haven-relay.tunnel\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // `Connection: close`: the relay ends the stream after its answer.
    let answer = recv.read_to_end(64 * 1024).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// `connect` opens a stream only for a connection that sends something, and the relay closes
/// streams left idle after an answer: so pooled and keep-alive connections cannot hold a
/// connection's stream allowance, and a new request gets through.
#[tokio::test]
async fn idle_connections_through_connect_do_not_hold_the_stream_allowance() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let member = SecretKey::generate();
    let r = common::tunnel::relay_for_with(&[member.public()], |c| {
        c.limits.streams_per_connection = 2;
        c.limits.connections.header_timeout = Duration::from_secs(1);
    })
    .await;
    let local = common::tunnel::forwarder(&member, &r).await;
    let s3 = common::client(&format!("http://{local}"), "member", "any-secret");
    // Two connections that never send.
    let _silent: Vec<_> = futures::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(local)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // Two that ask once and then sit in keep-alive.
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(local).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        tcp.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        kept.push(tcp);
    }
    let started = std::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        s3.create_bucket().bucket("gets-through").send(),
    )
    .await
    .expect("a request behind idle connections hung")
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
