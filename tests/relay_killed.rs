//! A relay process killed with -9 and started again: clients that were connected to it
//! notice by themselves and work again within seconds, with nothing to restart on their side.

mod binary;

use std::time::{Duration, Instant};

use binary::{circle_link, tunnel_relay};
use bytes::Bytes;
use http_body_util::Empty;
use iroh::SecretKey;
use tunnel::TunnelClient;
use tunnel::endpoint::{EndpointOptions, RelayChoice};
use tunnel::switch::{CallStatus, SwitchClient};
use tunnel::{Endpoint, TunnelError};

/// The target is 3 s; this allows for a loaded machine while still failing the
/// 9 s of the old 8 s idle timeout.
const RECOVERY_BOUND: Duration = Duration::from_secs(6);

async fn loopback_endpoint(key: SecretKey) -> Endpoint {
    let options = EndpointOptions {
        relay: RelayChoice::Disabled,
        bind: Some("127.0.0.1:0".parse().unwrap()),
        bind_also: None,
        relay_ca: Vec::new(),
    };
    tunnel::endpoint::bind(key, &options, Vec::new()).await.unwrap()
}

async fn list_buckets(client: &TunnelClient) -> Result<http::StatusCode, String> {
    let request = http::Request::get("http://relay/").body(Empty::<Bytes>::new()).unwrap();
    let attempt = tokio::time::timeout(Duration::from_secs(10), client.send(request));
    match attempt.await {
        Ok(Ok(response)) => Ok(response.status()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_client_works_again_within_seconds_of_a_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let member = SecretKey::generate();
    let circle = circle_link(9, &[&member.public().to_string()]);
    let (mut relay, link) = tunnel_relay(dir.path(), Some(&circle));
    let link: tunnel::link::RelayLink = link.parse().unwrap();
    let endpoint = loopback_endpoint(member).await;
    let client = TunnelClient::connect(endpoint, link.endpoint_addr()).await.unwrap();
    assert_eq!(list_buckets(&client).await, Ok(http::StatusCode::OK));

    relay.kill().unwrap();
    relay.wait().unwrap();
    let (mut relay, again) = tunnel_relay(dir.path(), None);
    assert_eq!(
        again.parse::<tunnel::link::RelayLink>().unwrap(),
        link,
        "same id and address"
    );
    let restarted = Instant::now();
    // What an S3 client does: a request that fails is tried again.
    let mut failures = Vec::new();
    loop {
        match list_buckets(&client).await {
            Ok(status) => {
                assert_eq!(status, http::StatusCode::OK);
                break;
            }
            Err(e) => failures.push(e),
        }
        assert!(
            restarted.elapsed() < RECOVERY_BOUND,
            "still failing {:?} after the restart: {failures:?}",
            restarted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = restarted.elapsed();
    eprintln!("recovered {took:?} after the restart, {} failed tries", failures.len());
    assert!(took < RECOVERY_BOUND, "recovered only after {took:?}");
    relay.kill().unwrap();
    relay.wait().unwrap();
}

/// A member waiting for calls keeps its place on the switchboard across the relay's crash:
/// its `next_call` dials again by itself, and a caller reaches it once the relay is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_is_reachable_again_after_a_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
    let circle = circle_link(10, &[&alice.public().to_string(), &bob.public().to_string()]);
    let (mut relay, link) = tunnel_relay(dir.path(), Some(&circle));
    let link: tunnel::link::RelayLink = link.parse().unwrap();
    let a = SwitchClient::connect(loopback_endpoint(alice).await, link.endpoint_addr())
        .await
        .unwrap();
    let b = SwitchClient::connect(loopback_endpoint(bob.clone()).await, link.endpoint_addr())
        .await
        .unwrap();
    // Bob answers every call with one byte, across whatever happens to the relay.
    let answering = tokio::spawn(async move {
        loop {
            let mut pipe = b.next_call().await?.accept().await?;
            pipe.send
                .write_all(b"!")
                .await
                .map_err(|e| TunnelError::Stream(e.to_string()))?;
            let _ = pipe.send.finish();
            let _ = pipe.send.stopped().await;
        }
        #[allow(unreachable_code)]
        Ok::<(), TunnelError>(())
    });
    let reach_bob = || async {
        let mut pipe = a.call(bob.public()).await?;
        let _ = pipe.send.finish();
        let read = pipe.recv.read_to_end(16);
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .map_err(|_| TunnelError::Stream("no answer".into()))?
            .map_err(|e| TunnelError::Stream(e.to_string()))
    };
    assert_eq!(reach_bob().await.unwrap(), b"!");

    relay.kill().unwrap();
    relay.wait().unwrap();
    let (mut relay, _) = tunnel_relay(dir.path(), None);
    let restarted = Instant::now();
    let mut failures = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reach_bob()).await {
            Ok(Ok(got)) => {
                assert_eq!(got, b"!");
                break;
            }
            Ok(Err(TunnelError::CallFailed(CallStatus::Offline))) => failures.push("offline".to_owned()),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("timed out".into()),
        }
        assert!(
            restarted.elapsed() < RECOVERY_BOUND,
            "bob still unreachable {:?} after the restart: {failures:?}",
            restarted.elapsed()
        );
        assert!(!answering.is_finished(), "bob gave up: {:?}", answering.await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "bob reached {:?} after the restart, {} failed tries",
        restarted.elapsed(),
        failures.len()
    );
    relay.kill().unwrap();
    relay.wait().unwrap();
}
