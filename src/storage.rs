//! Opening the configured storage, and `haven-relay doctor`'s look at every backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use backends::mirror::{Mirror, MirrorStore};
use backends::spec::BackendSpec;
use backends::{Store, StoreError};
use bytes::Bytes;
use futures::StreamExt;

use crate::config::{RelayConfig, StorageConfig};

/// The store behind the gateway, and the mirror set when there is one.
pub(crate) struct OpenedStore {
    pub store: Arc<dyn Store>,
    pub mirrors: Option<Arc<MirrorStore>>,
    /// The embedded store, when it is the store.
    pub local: Option<Arc<backends::fs::FsStore>>,
}

pub(crate) async fn open(config: &RelayConfig) -> anyhow::Result<OpenedStore> {
    if config.no_storage {
        return Ok(OpenedStore {
            store: Arc::new(backends::no_storage::NoStorage),
            mirrors: None,
            local: None,
        });
    }
    if config.storage.backends.is_empty() {
        let dir = config.store_dir();
        let store = backends::fs::FsStore::open(&dir)
            .await
            .with_context(|| format!("opening store at {}", dir.display()))?;
        let store = Arc::new(store);
        return Ok(OpenedStore {
            store: store.clone(),
            mirrors: None,
            local: Some(store),
        });
    }
    let mirrors = connect_all(&config.storage).await?;
    let set = MirrorStore::open(&config.data_dir, mirrors, config.storage.mirror.clone())
        .await
        .with_context(|| format!("opening the mirror set's catalog in {}", config.data_dir.display()))?;
    let embedded = config.store_dir();
    let has_buckets = std::fs::read_dir(embedded.join("buckets")).is_ok_and(|mut d| d.next().is_some());
    let imported = config.data_dir.join("catalog").join("imported-embedded-store");
    if has_buckets && !imported.exists() {
        // First start with backends after running on the embedded store: bring its objects.
        // Keys already in the set are kept, so an import cut short resumes without
        // overwriting anything written since.
        let source = backends::fs::FsStore::open(&embedded)
            .await
            .with_context(|| format!("opening the embedded store at {} to import it", embedded.display()))?;
        let copied = set
            .import_from(&source)
            .await
            .with_context(|| format!("importing the embedded store at {}", embedded.display()))?;
        std::fs::write(&imported, b"done\n")?;
        tracing::info!(objects = copied, store = %embedded.display(), "imported the embedded store into the mirror set; it is no longer used and can be removed");
    } else if has_buckets {
        tracing::warn!(store = %embedded.display(), "the embedded store is not used while backends are configured");
    }
    let set = Arc::new(set);
    Ok(OpenedStore {
        store: set.clone(),
        mirrors: Some(set),
        local: None,
    })
}

/// Connects every configured backend, in order; the first that cannot start stops the relay
/// with its reason (a typo in a remote name should not look like an outage).
pub async fn connect_all(storage: &StorageConfig) -> anyhow::Result<Vec<Mirror>> {
    let mut mirrors = Vec::with_capacity(storage.backends.len());
    for spec in &storage.backends {
        let mirror = backends::spec::connect(spec, &storage.connect).await?;
        tracing::info!(backend = %mirror.label(), "backend ready");
        mirrors.push(mirror);
    }
    Ok(mirrors)
}

/// One backend as `doctor` found it.
#[derive(Debug)]
pub struct DoctorReport {
    pub label: String,
    /// The round trip's time, or why it failed.
    pub round_trip: Result<Duration, String>,
    /// Blobs and bytes found on the backend.
    pub stored: Option<(u64, u64)>,
    /// From the catalog: objects this backend still lacks.
    pub pending_repairs: Option<u64>,
}

/// Writes, reads back, checks and deletes a small blob on every backend, and counts what each
/// holds. Works next to a running relay: it opens no store and takes no lock.
pub async fn doctor(config: &RelayConfig) -> anyhow::Result<Vec<DoctorReport>> {
    let labels = config.storage.backends.iter().map(|b| b.label()).collect();
    let pending = MirrorStore::pending_repairs(&config.data_dir, labels).await?;
    let mut reports = Vec::new();
    for spec in &config.storage.backends {
        let label = spec.label();
        let pending_repairs = pending.iter().find(|(l, _)| *l == label).map(|(_, n)| *n);
        // Each backend gets one bound for everything: a server that accepts connections and
        // never answers must not hold the doctor for minutes of retries.
        let connect = &config.storage.connect;
        let bound = connect.timeout * (connect.retries as u32 + 1);
        let checked = tokio::time::timeout(bound, check(spec, config)).await;
        let (round_trip, stored) = match checked {
            Ok(result) => result,
            Err(_) => (Err(format!("no answer in {} s", bound.as_secs())), None),
        };
        reports.push(DoctorReport {
            label,
            round_trip,
            stored,
            pending_repairs,
        });
    }
    Ok(reports)
}

/// One backend's round trip and what it holds. A backend that cannot even start (bad keys,
/// missing remote) is reported, not fatal.
async fn check(spec: &BackendSpec, config: &RelayConfig) -> (Result<Duration, String>, Option<(u64, u64)>) {
    let mirror = match backends::spec::connect(spec, &config.storage.connect).await {
        Ok(mirror) => mirror,
        Err(e) => return (Err(plain_reason(&e.to_string())), None),
    };
    let round_trip = round_trip(&mirror).await.map_err(|e| plain_reason(&e.to_string()));
    let stored = match &round_trip {
        Ok(_) => mirror
            .blobs()
            .list("blobs/")
            .await
            .ok()
            .map(|all| (all.len() as u64, all.iter().map(|b| b.size).sum())),
        Err(_) => None,
    };
    (round_trip, stored)
}

/// The cause a person can act on, for the errors everyone meets; anything else as it came,
/// on one line.
pub fn plain_reason(error: &str) -> String {
    let lower = error.to_lowercase();
    let known = [
        (
            "connection refused",
            "connection refused (nothing listens on that address and port)",
        ),
        ("dns error", "host not found"),
        ("failed to lookup address", "host not found"),
        ("certificate", "TLS certificate not accepted"),
        ("invalidaccesskeyid", "access key not accepted"),
        ("signaturedoesnotmatch", "secret key not accepted"),
        ("accessdenied", "access denied"),
        ("nosuchbucket", "no such bucket"),
        ("timed out", "timed out"),
    ];
    match known.iter().find(|(needle, _)| lower.contains(needle)) {
        Some((_, plain)) => (*plain).to_owned(),
        None => error.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

async fn round_trip(mirror: &Mirror) -> Result<Duration, StoreError> {
    let path = format!("doctor/{}", uuid_like());
    let payload = Bytes::from(format!("haven-relay doctor {path}"));
    let started = Instant::now();
    let blobs = mirror.blobs();
    let mut sink = blobs.create(&path).await?;
    sink.write(payload.clone()).await?;
    sink.commit().await?;
    let mut read = Vec::new();
    let mut stream = blobs.read(&path, 0..payload.len() as u64).await?;
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk?);
    }
    blobs.delete(&path).await?;
    if read != payload {
        return Err(StoreError::Corrupt("read back different bytes".into()));
    }
    Ok(started.elapsed())
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("system randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
