//! Which bucket a request names: never one the client did not mean.
//!
//! A client in virtual-hosted style sends `Host: photos.relay.example` and `DELETE /sync/a.txt`,
//! meaning key `sync/a.txt` in bucket `photos`. Read as path-style, the same request deletes
//! `a.txt` from bucket `sync`: a 204 for the wrong bucket. Nothing in the request tells the two
//! readings apart; only knowing the relay's own names does. So the relay serves a Host only
//! when it knows what it means:
//!
//! - an IP address, or a name without dots (`nas`): path-style;
//! - one of the relay's domains (`localhost` always, `--s3-domain` names, `haven-relay.tunnel`
//!   on the tunnel): path-style;
//! - `<bucket>.<one of those domains>`: virtual-hosted style, bucket from the Host;
//! - any other name is refused with 400, saying to add it with `--s3-domain`.
//!
//! The refusal needs no lookup, so it reveals nothing about which buckets exist and can be
//! given before the signature is checked.

use s3s::host::{S3Host, VirtualHost};
use s3s::{S3Error, S3ErrorCode, S3Result};

/// The host name the tunnel's library client uses as its endpoint (`http://haven-relay.tunnel`).
pub const TUNNEL_HOST: &str = "haven-relay.tunnel";

/// A relay's own names, and what a Host header means under them. Also s3s's host parser.
#[derive(Debug, Clone)]
pub struct RelayHosts {
    domains: Vec<String>,
}

/// What a Host header means.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    PathStyle,
    Bucket(String),
    /// A name the relay does not know as its own.
    Unknown(String),
}

impl RelayHosts {
    /// `localhost` and `domains` (operator-named, lower-cased here).
    pub fn new(domains: impl IntoIterator<Item = String>) -> Self {
        let mut all = vec!["localhost".to_owned()];
        all.extend(
            domains
                .into_iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase()),
        );
        all.dedup();
        Self { domains: all }
    }

    fn read(&self, host: &str) -> Reading {
        let name = without_port(host).trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<std::net::IpAddr>().is_ok() || name.starts_with('[') || !name.contains('.') {
            return Reading::PathStyle;
        }
        for d in &self.domains {
            if name == *d {
                return Reading::PathStyle;
            }
            if let Some(bucket) = name.strip_suffix(d.as_str()).and_then(|b| b.strip_suffix('.'))
                && !bucket.is_empty()
            {
                return Reading::Bucket(bucket.to_owned());
            }
        }
        Reading::Unknown(name)
    }

    /// Refuses a request whose Host is not one of the relay's names, since a bucket in it
    /// could be mistaken for path-style addressing.
    pub fn check(&self, host: Option<&str>) -> S3Result<()> {
        match host.map(|h| self.read(h)) {
            Some(Reading::Unknown(name)) => Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!(
                    "this relay does not know the host name '{name}' as its own, so it cannot tell \
                     whether the request names a bucket in the Host (virtual-hosted style) or in the \
                     path; start the relay with --s3-domain {name} (path-style keeps working there), \
                     or use its IP address"
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl S3Host for RelayHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        match self.read(host) {
            Reading::Bucket(bucket) => Ok(VirtualHost::new(host).with_bucket(bucket)),
            Reading::PathStyle => Ok(VirtualHost::new(host)),
            Reading::Unknown(_) => self.check(Some(host)).map(|()| VirtualHost::new(host)),
        }
    }
}

fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if port.bytes().all(|b| b.is_ascii_digit()) && (name.ends_with(']') || !name.contains(':')) =>
        {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_read_only_under_the_relays_own_names() {
        let hosts = RelayHosts::new(["S3.Example.org.".to_owned()]);
        let bucket = |b: &str| Reading::Bucket(b.to_owned());
        for (host, reading) in [
            ("127.0.0.1:8333", Reading::PathStyle),
            ("[::1]:8333", Reading::PathStyle),
            ("nas:8333", Reading::PathStyle),
            ("localhost:9000", Reading::PathStyle),
            ("s3.example.org", Reading::PathStyle),
            ("photos.localhost:9000", bucket("photos")),
            ("Photos.S3.Example.Org:8333", bucket("photos")),
            ("my.dotted.bucket.s3.example.org", bucket("my.dotted.bucket")),
            ("relay.example.org", Reading::Unknown("relay.example.org".into())),
            (
                "photos.evil-s3.example.org",
                Reading::Unknown("photos.evil-s3.example.org".into()),
            ),
            (".s3.example.org", Reading::Unknown(".s3.example.org".into())),
        ] {
            assert_eq!(hosts.read(host), reading, "{host}");
        }
        assert!(hosts.check(Some("relay.example.org")).is_err());
        assert!(hosts.check(Some("photos.localhost")).is_ok());
        assert!(hosts.check(None).is_ok());
        assert_eq!(without_port("[::1]:80"), "[::1]");
        assert_eq!(without_port("::1"), "::1");
    }
}
