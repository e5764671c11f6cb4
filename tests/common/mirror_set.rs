//! A relay on a mirror set tuned for tests: short timeouts, a fast repair loop, and waits for
//! repair to finish.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backends::spec::BackendSpec;
use haven_relay::RelayConfig;

use super::TestRelay;
use super::stand_ins::{self, blob_files, stand_in_keys};

/// Short timeouts and a fast repair loop, so faults show up within a test's patience.
pub fn mirrored(config: &mut RelayConfig, backends: Vec<BackendSpec>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    config.storage.backends = backends;
    config.storage.connect.timeout = Duration::from_secs(2);
    config.storage.connect.retries = 1;
    config.storage.connect.rclone_binary = stand_ins::rclone_binary();
    config.storage.mirror.repair_interval = Duration::from_millis(200);
    for name in ["b", "c"] {
        config.storage.connect.named_keys.insert(name.into(), stand_in_keys());
    }
}

/// Waits until the relay reports every mirror up with nothing left to repair.
pub async fn converged(relay: &TestRelay) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = relay.relay.mirror_status().unwrap();
        if status.iter().all(|m| m.up && m.pending_repairs == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "repair did not converge: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until each directory holds exactly the same blob files, byte for byte.
pub async fn identical(dirs: &[std::path::PathBuf], expected_blobs: usize) -> BTreeMap<String, Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all: Vec<_> = dirs.iter().map(|d| blob_files(d)).collect();
        if all.iter().all(|m| m == &all[0]) && all[0].len() == expected_blobs {
            return all.into_iter().next().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "mirrors differ: {:?}",
            all.iter().map(|m| m.len()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
