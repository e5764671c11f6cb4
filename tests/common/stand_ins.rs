//! Real S3 servers standing in for R2/B2/MinIO: an in-process s3s-fs that can be stopped and
//! started again on the same port, a supervised `rclone serve s3`, and a socket that accepts
//! and never answers (a hung provider).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use backends::rclone::{RcloneOptions, RcloneServer};
use backends::spec::{BackendSpec, S3Keys};
use tokio::task::JoinSet;

pub const STAND_IN_KEY: &str = "STANDINACCESSKEY0000";
pub const STAND_IN_SECRET: &str = "stand-in-secret-key-0123456789abcdefghij";
/// The bucket every stand-in serves.
pub const BUCKET: &str = "mirror";

pub fn stand_in_keys() -> S3Keys {
    S3Keys {
        access_key_id: STAND_IN_KEY.into(),
        secret_access_key: STAND_IN_SECRET.into(),
    }
}

/// `s3://mirror?endpoint=...&credentials=NAME`.
pub fn s3_spec(endpoint: &str, credentials: &str) -> BackendSpec {
    BackendSpec::S3 {
        bucket: BUCKET.into(),
        root: String::new(),
        endpoint: Some(endpoint.into()),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        credentials: Some(credentials.into()),
    }
}

/// s3s-fs 0.14 serving `root`, in this process.
pub struct S3sFs {
    pub addr: SocketAddr,
    pub root: PathBuf,
    tasks: JoinSet<()>,
}

impl S3sFs {
    /// Serves `root` (creating the `mirror` bucket) on `addr` (port 0 for any).
    pub async fn start(root: &Path, addr: SocketAddr) -> S3sFs {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(STAND_IN_KEY, STAND_IN_SECRET));
        let service = builder.build();
        let listener = bind_retrying(addr).await;
        let addr = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                connections.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(socket);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        S3sFs {
            addr,
            root: root.to_owned(),
            tasks,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and drops every open connection, like a provider outage.
    pub async fn stop(mut self) -> SocketAddr {
        self.tasks.shutdown().await;
        self.addr
    }
}

async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..50 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("cannot bind {addr}");
}

/// `rclone serve s3` on a local directory, as an S3 bucket stand-in.
pub async fn rclone_s3(root: &Path) -> RcloneServer {
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    RcloneServer::start(RcloneOptions {
        binary: rclone_binary(),
        config: None,
        remote: root.display().to_string(),
    })
    .await
    .unwrap()
}

pub fn rclone_binary() -> PathBuf {
    std::env::var_os("HAVEN_RELAY_RCLONE")
        .expect("HAVEN_RELAY_RCLONE is not set: run the tests with `bash tests/run.sh`, which installs rclone")
        .into()
}

/// A TCP port that accepts connections and never says a word, for as long as the test's
/// runtime lives.
pub async fn hung_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A TCP proxy to `upstream` that holds every piece of the answer back by `delay`: a slow
/// provider (a far-away region, a loaded NAS). Closing either side closes the other.
pub async fn slow_proxy(upstream: SocketAddr, delay: std::time::Duration) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    let _ = server_write.shutdown().await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            tokio::time::sleep(delay).await;
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = client_write.shutdown().await;
                up.abort();
            });
        }
    });
    addr
}

/// Every file under `dir/.../blobs/`, relative to the `blobs` directory, with its bytes.
pub fn blob_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, base: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(&dir.join("blobs"), &dir.join("blobs"), &mut out);
    out
}
