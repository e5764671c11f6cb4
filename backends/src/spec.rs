//! Backend URIs (`--backend`, relay.json `backends`) and turning them into mirrors.
//!
//! ```text
//! fs:PATH                                   a local directory
//! s3://BUCKET[/FOLDER]?endpoint=URL&region=R&path_style=true&credentials=NAME
//! rclone:REMOTE:PATH                        any remote in rclone.conf, served by rclone
//! ```
//! S3 keys never appear in a URI: they come from a named entry in relay.json
//! (`credentials=NAME`) or from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::blobs::local::LocalBlobs;
use crate::blobs::s3::{S3Blobs, S3Settings};
use crate::error::StoreError;
use crate::mirror::Mirror;
use crate::rclone::{RcloneError, RcloneOptions, RcloneServer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    Fs(PathBuf),
    S3 {
        bucket: String,
        /// A folder inside the bucket; empty for the root.
        root: String,
        /// `None`: AWS itself.
        endpoint: Option<String>,
        region: Option<String>,
        path_style: Option<bool>,
        /// A named entry of relay.json's `s3_credentials`.
        credentials: Option<String>,
    },
    Rclone {
        /// `REMOTE:PATH` as rclone spells it.
        remote: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{uri}`: {why}")]
    Invalid { uri: String, why: String },
    #[error(
        "backend {label} needs S3 keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add `credentials=NAME` and a matching entry under `s3_credentials` in relay.json"
    )]
    MissingKeys { label: String },
    #[error("backend {label}: no `{name}` entry under `s3_credentials` in relay.json")]
    UnknownCredentials { label: String, name: String },
    #[error(transparent)]
    Rclone(#[from] RcloneError),
    #[error("backend {label}: {source}")]
    Store { label: String, source: StoreError },
}

impl FromStr for BackendSpec {
    type Err = BackendError;

    fn from_str(uri: &str) -> Result<Self, BackendError> {
        let invalid = |why: &str| BackendError::Invalid {
            uri: uri.to_owned(),
            why: why.to_owned(),
        };
        if let Some(path) = uri.strip_prefix("fs:") {
            if path.is_empty() {
                return Err(invalid("give a directory, as in fs:/mnt/disk/haven"));
            }
            return Ok(BackendSpec::Fs(PathBuf::from(path)));
        }
        if let Some(remote) = uri.strip_prefix("rclone:") {
            let (name, path) = remote
                .split_once(':')
                .ok_or_else(|| invalid("give REMOTE:PATH as in rclone:mydrive:haven"))?;
            if name.is_empty() || path.trim_matches('/').is_empty() {
                return Err(invalid("give a remote and a folder in it, as in rclone:mydrive:haven"));
            }
            return Ok(BackendSpec::Rclone {
                remote: remote.to_owned(),
            });
        }
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, root) = location.split_once('/').unwrap_or((location, ""));
            if bucket.is_empty() {
                return Err(invalid("give a bucket, as in s3://my-bucket?endpoint=https://..."));
            }
            let mut spec = (None, None, None, None);
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_decode(v).ok_or_else(|| invalid("bad %-escape in the query"))?;
                match k {
                    "endpoint" => spec.0 = Some(v),
                    "region" => spec.1 = Some(v),
                    "path_style" => {
                        spec.2 = Some(match v.as_str() {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => return Err(invalid("path_style is true or false")),
                        })
                    }
                    "credentials" => spec.3 = Some(v),
                    "access_key_id" | "secret_access_key" | "access_key" | "secret_key" => {
                        return Err(invalid(
                            "keys do not belong in a URI (it shows in `ps` and shell history): use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or relay.json `s3_credentials`",
                        ));
                    }
                    other => return Err(invalid(&format!("unknown parameter `{other}`"))),
                }
            }
            return Ok(BackendSpec::S3 {
                bucket: bucket.to_owned(),
                root: root.trim_matches('/').to_owned(),
                endpoint: spec.0,
                region: spec.1,
                path_style: spec.2,
                credentials: spec.3,
            });
        }
        Err(invalid("expected fs:PATH, s3://BUCKET?... or rclone:REMOTE:PATH"))
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl BackendSpec {
    /// The backend's stable name in the catalog and in logs: no keys, no secrets.
    pub fn label(&self) -> String {
        match self {
            BackendSpec::Fs(path) => {
                let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!("fs:{}", path.display())
            }
            BackendSpec::S3 {
                bucket, root, endpoint, ..
            } => {
                let folder = if root.is_empty() {
                    String::new()
                } else {
                    format!("/{root}")
                };
                let host = endpoint.as_deref().unwrap_or("aws");
                format!("s3://{bucket}{folder}@{host}")
            }
            BackendSpec::Rclone { remote } => format!("rclone:{remote}"),
        }
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A key pair for an S3 backend. `Debug` hides the secret.
#[derive(Clone, serde::Deserialize)]
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Keys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What connecting to backends needs beyond their URIs.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `--rclone-bin`.
    pub rclone_binary: PathBuf,
    /// `--rclone-config`; rclone's own default when `None`.
    pub rclone_config: Option<PathBuf>,
    /// relay.json `s3_credentials`.
    pub named_keys: HashMap<String, S3Keys>,
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    pub env_keys: Option<S3Keys>,
    /// Per attempt of one remote operation; for `fs:` backends, per file call.
    pub timeout: Duration,
    pub retries: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            rclone_binary: PathBuf::from("rclone"),
            rclone_config: None,
            named_keys: HashMap::new(),
            env_keys: None,
            timeout: Duration::from_secs(30),
            retries: 3,
        }
    }
}

/// Makes a backend ready: opens a directory, sets up an S3 client, or starts rclone.
pub async fn connect(spec: &BackendSpec, options: &ConnectOptions) -> Result<Mirror, BackendError> {
    let label = spec.label();
    let store_err = |source| BackendError::Store {
        label: label.clone(),
        source,
    };
    match spec {
        BackendSpec::Fs(path) => {
            let blobs = LocalBlobs::open(path, options.timeout).await.map_err(store_err)?;
            Ok(Mirror::new(label.clone(), Arc::new(blobs)))
        }
        BackendSpec::S3 {
            bucket,
            root,
            endpoint,
            region,
            path_style,
            credentials,
        } => {
            let keys = match credentials {
                Some(name) => options
                    .named_keys
                    .get(name)
                    .ok_or_else(|| BackendError::UnknownCredentials {
                        label: label.clone(),
                        name: name.clone(),
                    })?,
                None => options
                    .env_keys
                    .as_ref()
                    .ok_or_else(|| BackendError::MissingKeys { label: label.clone() })?,
            };
            let settings = S3Settings {
                endpoint: endpoint.clone().unwrap_or_default(),
                bucket: bucket.clone(),
                root: root.clone(),
                region: region
                    .clone()
                    .unwrap_or_else(|| if endpoint.is_some() { "auto" } else { "us-east-1" }.to_owned()),
                path_style: path_style.unwrap_or(endpoint.is_some()),
                access_key_id: keys.access_key_id.clone(),
                secret_access_key: keys.secret_access_key.clone(),
                timeout: options.timeout,
                retries: options.retries,
            };
            let blobs = S3Blobs::new(&settings).map_err(store_err)?;
            Ok(Mirror::new(label.clone(), Arc::new(blobs)))
        }
        BackendSpec::Rclone { remote } => {
            // rclone serves a directory's subdirectories as buckets: serve the parent, use
            // the last path component as the bucket, and create it first.
            let (name, path) = remote.split_once(':').expect("checked when parsed");
            let (parent, bucket) = rclone_parent_and_bucket(path);
            let path = path.trim_end_matches('/');
            let rclone = RcloneOptions {
                binary: options.rclone_binary.clone(),
                config: options.rclone_config.clone(),
                remote: format!("{name}:{parent}"),
            };
            crate::rclone::mkdir(&rclone, &format!("{name}:{path}")).await?;
            let server = RcloneServer::start_cleaning(rclone, Some(format!("{name}:{path}/blobs"))).await?;
            let (access_key_id, secret_access_key) = server.credentials();
            let settings = S3Settings {
                endpoint: server.endpoint(),
                bucket: bucket.to_owned(),
                root: String::new(),
                region: "us-east-1".into(),
                path_style: true,
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret_access_key.to_owned(),
                timeout: options.timeout,
                retries: options.retries,
            };
            let blobs = S3Blobs::new(&settings).map_err(store_err)?;
            Ok(Mirror::new(label.clone(), Arc::new(blobs)).with_guard(server))
        }
    }
}

/// Splits an rclone path into the folder rclone serves and the bucket (its last component).
/// A leading `/` is kept: on `local`, `sftp` or `alias` remotes `/srv/haven` is absolute and
/// `srv/haven` is relative to rclone's working directory, which is not the same place.
fn rclone_parent_and_bucket(path: &str) -> (&str, &str) {
    let path = path.trim_end_matches('/');
    match path.rsplit_once('/') {
        Some(("", bucket)) => ("/", bucket),
        Some((parent, bucket)) => (parent, bucket),
        None => ("", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rclone_paths_keep_their_leading_slash() {
        assert_eq!(rclone_parent_and_bucket("/srv/haven"), ("/srv", "haven"));
        assert_eq!(rclone_parent_and_bucket("/srv/haven/"), ("/srv", "haven"));
        assert_eq!(rclone_parent_and_bucket("/haven"), ("/", "haven"));
        assert_eq!(rclone_parent_and_bucket("a/b/haven"), ("a/b", "haven"));
        assert_eq!(rclone_parent_and_bucket("haven"), ("", "haven"));
    }

    #[test]
    fn uris_parse() {
        assert_eq!(
            "fs:/mnt/x".parse::<BackendSpec>().unwrap(),
            BackendSpec::Fs("/mnt/x".into())
        );
        assert_eq!(
            "rclone:mydrive:haven".parse::<BackendSpec>().unwrap(),
            BackendSpec::Rclone {
                remote: "mydrive:haven".into()
            }
        );
        let s3: BackendSpec =
            "s3://b/some/folder?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=r1&path_style=false&credentials=r2"
                .parse()
                .unwrap();
        assert_eq!(
            s3,
            BackendSpec::S3 {
                bucket: "b".into(),
                root: "some/folder".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("r1".into()),
                path_style: Some(false),
                credentials: Some("r2".into()),
            }
        );
        assert_eq!(s3.label(), "s3://b/some/folder@http://127.0.0.1:9000");
        let plain: BackendSpec = "s3://b?endpoint=https://x.r2.cloudflarestorage.com".parse().unwrap();
        assert_eq!(plain.label(), "s3://b@https://x.r2.cloudflarestorage.com");
    }

    #[test]
    fn bad_uris_say_why() {
        for (uri, why) in [
            ("fs:", "directory"),
            ("rclone:mydrive", "REMOTE:PATH"),
            ("rclone:mydrive:", "folder"),
            ("s3://?endpoint=x", "bucket"),
            ("s3://b?secret_access_key=x", "keys do not belong"),
            ("s3://b?colour=blue", "unknown parameter"),
            ("s3://b?path_style=maybe", "true or false"),
            ("ftp://x", "expected"),
        ] {
            let err = uri.parse::<BackendSpec>().unwrap_err().to_string();
            assert!(err.contains(why), "{uri}: {err}");
        }
    }
}
