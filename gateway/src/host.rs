//! Which bucket a request names: path-style always, virtual-hosted style under the relay's own
//! domains, and never a bucket the client did not mean.
//!
//! A client in virtual-hosted style sends `Host: photos.relay.example` and `PUT /sync/a.txt`,
//! meaning key `sync/a.txt` in bucket `photos`. Read as path-style, the same request writes
//! `a.txt` into bucket `sync`: a 200 for the wrong bucket. So virtual-hosted style is served
//! only under domains the operator names (`--s3-domain`), and a request whose Host starts with
//! the name of an existing bucket anywhere else is refused, since it was almost certainly
//! meant for that bucket.

use std::sync::Arc;

use backends::Store;
use s3s::access::{S3Access, S3AccessContext};
use s3s::host::{S3Host, VirtualHost};
use s3s::{S3Error, S3ErrorCode, S3Result};

/// The host name the tunnel's library client uses as its endpoint (`http://haven-relay.tunnel`).
pub const TUNNEL_HOST: &str = "haven-relay.tunnel";

/// s3s's host parser: `<bucket>.<domain>` is virtual-hosted, anything else path-style.
#[derive(Debug, Clone)]
pub struct RelayHosts {
    domains: Vec<String>,
}

impl RelayHosts {
    pub fn new(domains: impl IntoIterator<Item = String>) -> Self {
        Self {
            domains: domains.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    /// The bucket a virtual-hosted `host` names under one of our domains, lowercased.
    fn bucket_of(&self, host: &str) -> Option<String> {
        let name = without_port(host).to_ascii_lowercase();
        self.domains.iter().find_map(|d| {
            let bucket = name.strip_suffix(d.as_str())?.strip_suffix('.')?;
            (!bucket.is_empty()).then(|| bucket.to_owned())
        })
    }

    fn is_ours(&self, host: &str) -> bool {
        let name = without_port(host);
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(name))
    }

    /// Refuses a request whose Host looks like `<existing bucket>.<something not ours>`.
    ///
    /// The answer tells whether a bucket exists, so it is asked only of callers already
    /// admitted: after SigV4 on HTTP ([`MisrouteCheck`]), after admission on the tunnel.
    pub async fn check_not_misrouted(&self, host: Option<&str>, store: &dyn Store) -> S3Result<()> {
        let Some(host) = host else { return Ok(()) };
        if self.is_ours(host) || self.bucket_of(host).is_some() {
            return Ok(());
        }
        let name = without_port(host);
        if name.parse::<std::net::IpAddr>().is_ok() || name.starts_with('[') {
            return Ok(());
        }
        let Some((first, _)) = name.split_once('.') else {
            return Ok(());
        };
        let first = first.to_ascii_lowercase();
        // The store checks the name: one that cannot be a bucket is no bucket here.
        if store.head_bucket(&first).await.is_ok() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!(
                    "the Host header names bucket '{first}' (virtual-hosted style), which this relay serves only \
                     under its --s3-domain; set --s3-domain to this host's domain or use path-style addressing"
                ),
            ));
        }
        Ok(())
    }
}

/// s3s's access check for the SigV4 frontend: s3s's own (a signature is required), then the
/// misroute check, so that an unsigned request cannot probe which buckets exist.
pub struct MisrouteCheck {
    pub hosts: RelayHosts,
    pub store: Arc<dyn Store>,
}

#[async_trait::async_trait]
impl S3Access for MisrouteCheck {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "Signature is required",
            ));
        }
        let host = cx.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
        self.hosts.check_not_misrouted(host, &*self.store).await
    }
}

impl S3Host for RelayHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        match self.bucket_of(host) {
            Some(bucket) => Ok(VirtualHost::new(host).with_bucket(bucket)),
            None => Ok(VirtualHost::new(host)),
        }
    }
}

fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') =>
        {
            name
        }
        Some((name, port)) if name.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_only_from_our_domains() {
        let hosts = RelayHosts::new(["s3.example.org".to_owned()]);
        let bucket = |h: &str| hosts.bucket_of(h);
        assert_eq!(bucket("photos.s3.example.org:8333").as_deref(), Some("photos"));
        assert_eq!(bucket("Photos.S3.Example.Org").as_deref(), Some("photos"));
        for other in [
            "s3.example.org",
            ".s3.example.org",
            "photos.evil-s3.example.org",
            "photoss3.example.org",
            "photos.localhost",
            "éé3.example.org",
        ] {
            assert_eq!(bucket(other), None, "{other}");
        }
        assert!(hosts.is_ours("s3.example.org:80"));
        assert_eq!(without_port("[::1]:80"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
        assert_eq!(without_port("a.b"), "a.b");
    }
}
