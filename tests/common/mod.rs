//! A relay started in-process on port 0 with its own data dir, and real clients for it.
#![allow(dead_code)]

pub mod mirror_set;
pub mod raw;
pub mod stand_ins;
pub mod tunnel;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials as AwsCredentials, Region};
use haven_relay::{Credentials, Relay, RelayConfig};
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "HAVNTESTACCESSKEY000";
pub const SECRET_KEY: &str = "test-secret-key-0123456789abcdefghijklmn";

pub struct TestRelay {
    pub relay: Relay,
    pub dir: TempDir,
    pub client: Client,
    /// The plain-HTTP S3 listener and its URL.
    pub addr: std::net::SocketAddr,
    pub endpoint: String,
    config: RelayConfig,
    /// The S3 server a mirrored store writes to, kept running as long as the relay.
    stand_in: Option<stand_ins::S3sFs>,
}

/// Which store the S3 behaviour suites run on (tests/run.sh lists them):
/// the embedded store by default; with `HAVEN_RELAY_TEST_STORE=mirror`, a mirror set of a
/// local directory and a real S3 server (an in-process s3s-fs). OpenDAL's behaviour tests
/// pick their service the same way. A test that names its own backends keeps them.
const STORE_UNDER_TEST: &str = "HAVEN_RELAY_TEST_STORE";

pub fn on_mirror_set() -> bool {
    std::env::var(STORE_UNDER_TEST).is_ok_and(|v| v == "mirror")
}

pub fn credentials() -> Credentials {
    Credentials {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
    }
}

pub fn config(dir: &TempDir) -> RelayConfig {
    let mut config = RelayConfig::new(dir.path().to_path_buf());
    config.s3_addr = Some("127.0.0.1:0".parse().unwrap());
    config
}

pub async fn start() -> TestRelay {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut RelayConfig)) -> TestRelay {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    tweak(&mut cfg);
    let stand_in = if on_mirror_set() && cfg.storage.backends.is_empty() {
        let s3 = stand_ins::S3sFs::start(&dir.path().join("stand-in"), "127.0.0.1:0".parse().unwrap()).await;
        let local = dir.path().join("mirror-local");
        mirror_set::mirrored(
            &mut cfg,
            vec![
                backends::spec::BackendSpec::Fs(local),
                stand_ins::s3_spec(&s3.endpoint(), "b"),
            ],
        );
        Some(s3)
    } else {
        None
    };
    let mut relay = TestRelay::on(dir, cfg).await;
    relay.stand_in = stand_in;
    relay
}

impl TestRelay {
    /// Stops the relay and starts a new one on the same data dir (a new port).
    pub async fn on(dir: TempDir, config: RelayConfig) -> TestRelay {
        let relay = Relay::start(&config, &credentials()).await.unwrap();
        let addr = relay.s3_addr().expect("tests serve HTTP");
        let endpoint = format!("http://{addr}");
        let client = client(&endpoint, ACCESS_KEY, SECRET_KEY);
        TestRelay {
            relay,
            dir,
            client,
            addr,
            endpoint,
            config,
            stand_in: None,
        }
    }

    /// Stops the relay and starts a new one with the same config and data dir (a new port).
    pub async fn restart(self) -> TestRelay {
        let TestRelay {
            relay,
            dir,
            config,
            stand_in,
            ..
        } = self;
        relay.shutdown().await;
        let mut restarted = TestRelay::on(dir, config).await;
        restarted.stand_in = stand_in;
        restarted
    }

    /// Stops the relay and starts it again on the same data dir with a changed config.
    pub async fn reconfigure(self, tweak: impl FnOnce(&mut RelayConfig)) -> TestRelay {
        let TestRelay {
            relay,
            dir,
            mut config,
            stand_in,
            ..
        } = self;
        relay.shutdown().await;
        tweak(&mut config);
        let mut restarted = TestRelay::on(dir, config).await;
        restarted.stand_in = stand_in;
        restarted
    }

    pub async fn bucket(&self, name: &str) -> String {
        self.client.create_bucket().bucket(name).send().await.unwrap();
        name.to_owned()
    }

    pub async fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) -> String {
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into().into())
            .send()
            .await
            .unwrap();
        out.e_tag.unwrap()
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self.client.get_object().bucket(bucket).key(key).send().await.unwrap();
        out.body.collect().await.unwrap().to_vec()
    }

    /// Every file under the data dir, to prove nothing escaped it or was left behind.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() { walk(&p, out) } else { out.push(p) }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

pub fn client(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    let creds = AwsCredentials::new(access_key, secret_key, None, None, "haven-relay-tests");
    let http = aws_smithy_http_client::Builder::new().build_http();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .http_client(http)
        .build();
    Client::from_conf(config)
}

/// The S3 error code of a failed SDK call.
pub fn code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{err:?}"))
}

/// The HTTP status of a failed SDK call.
pub fn status<E>(err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> u16 {
    err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Deterministic pseudo-random bytes (sealed blobs look random).
pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Starts a multipart upload of `parts` (part numbers from 1) without completing it.
pub async fn upload_parts(
    client: &Client,
    bucket: &str,
    key: &str,
    parts: &[Vec<u8>],
) -> (String, Vec<aws_sdk_s3::types::CompletedPart>) {
    let id = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let mut done = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        done.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag.unwrap())
                .build(),
        );
    }
    (id, done)
}

/// Uploads `parts` as a multipart upload of `key` and completes it; returns the ETag.
pub async fn multipart_put(client: &Client, bucket: &str, key: &str, parts: &[Vec<u8>]) -> String {
    let (id, done) = upload_parts(client, bucket, key, parts).await;
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap()
}

/// The ids of the uploads ListMultipartUploads lists in `bucket`.
pub async fn upload_ids(client: &Client, bucket: &str) -> Vec<String> {
    let listed = client.list_multipart_uploads().bucket(bucket).send().await.unwrap();
    listed
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id().map(str::to_owned))
        .collect()
}

/// The names ListBuckets returns, in its order.
pub async fn bucket_names(client: &Client) -> Vec<String> {
    client
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect()
}

/// Every key in `bucket`, in listing order.
pub async fn list_keys(client: &Client, bucket: &str) -> Vec<String> {
    list_keys_paged(client, bucket, 1000).await
}

/// Every key in `bucket`, fetched `page` keys at a time by following continuation tokens.
pub async fn list_keys_paged(client: &Client, bucket: &str, page: i32) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .max_keys(page)
            .send()
            .await
            .unwrap();
        keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        match out.next_continuation_token {
            Some(t) => token = Some(t),
            None => return keys,
        }
    }
}
