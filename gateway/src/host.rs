//! Which bucket a request names: path-style always, virtual-hosted style under the relay's own
//! domains, and never a bucket the client did not mean.
//!
//! A client in virtual-hosted style sends `Host: photos.relay.example` and `PUT /sync/a.txt`,
//! meaning key `sync/a.txt` in bucket `photos`. Read as path-style, the same request writes
//! `a.txt` into bucket `sync`: a 200 for the wrong bucket. So virtual-hosted style is served
//! only under domains the operator names (`--s3-domain`), and a request whose Host starts with
//! the name of an existing bucket anywhere else is refused, since it was almost certainly
//! meant for that bucket.

use backends::Store;
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

    /// The bucket a virtual-hosted `host` names under one of our domains.
    fn bucket_of<'h>(&self, host: &'h str) -> Option<&'h str> {
        let name = without_port(host);
        self.domains.iter().find_map(|d| {
            let prefix = name.len().checked_sub(d.len() + 1)?;
            let (bucket, rest) = name.split_at(prefix);
            (rest.get(1..)?.eq_ignore_ascii_case(d) && rest.starts_with('.') && !bucket.is_empty()).then_some(bucket)
        })
    }

    fn is_ours(&self, host: &str) -> bool {
        let name = without_port(host);
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(name))
    }

    /// Refuses a request whose Host looks like `<existing bucket>.<something not ours>`.
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

impl S3Host for RelayHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        match self.bucket_of(host) {
            Some(bucket) => Ok(VirtualHost::new(host).with_bucket(bucket.to_ascii_lowercase())),
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
        assert_eq!(hosts.bucket_of("photos.s3.example.org:8333"), Some("photos"));
        assert_eq!(hosts.bucket_of("Photos.S3.Example.Org"), Some("Photos"));
        assert_eq!(hosts.bucket_of("s3.example.org"), None);
        assert_eq!(hosts.bucket_of(".s3.example.org"), None);
        assert_eq!(hosts.bucket_of("photos.evil-s3.example.org"), None);
        assert_eq!(hosts.bucket_of("photoss3.example.org"), None);
        assert_eq!(hosts.bucket_of("photos.localhost"), None);
        assert_eq!(hosts.bucket_of("é.s3.example.org"), Some("é"));
        assert!(hosts.is_ours("s3.example.org:80"));
        assert_eq!(without_port("[::1]:80"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
        assert_eq!(without_port("a.b"), "a.b");
    }
}
