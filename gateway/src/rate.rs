//! Requests per second per client: a token bucket each, answered with `503 SlowDown` and
//! `Retry-After` when empty (what AWS answers a client that goes too fast).
//!
//! A client is the access key over HTTP (the relay has one key pair, so every holder of it
//! shares one bucket, and requests without the key share another) and the node id over the
//! tunnel (members only). Both sets are small, so the buckets' map stays small whatever a
//! stranger sends.
//!
//! The key holder's requests are counted only once their signature has been verified (by
//! [`RateByKey`], s3s's access hook): the access key id is no secret (it is in every presigned
//! URL), and counting requests that merely name it let anyone exhaust the holder's bucket.
//! Requests naming another key, or none, are counted before anything else, as strangers.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    /// A member, by node id, over the tunnel.
    Node(String),
    /// Over HTTP with the relay's access key.
    Keyholder,
    /// Over HTTP without it: anonymous, or another key that will fail authentication.
    Stranger,
}

pub(crate) struct RequestRate {
    buckets: DefaultKeyedRateLimiter<Client>,
    clock: DefaultClock,
}

impl RequestRate {
    /// `per_second` requests, with bursts of twice as many (at least 20): S3 clients send
    /// several requests at once (the aws CLI ten) and give up after a few refusals.
    pub(crate) fn new(per_second: NonZeroU32) -> Self {
        let burst = per_second
            .saturating_mul(NonZeroU32::new(2).expect("2 > 0"))
            .max(NonZeroU32::new(20).expect("20 > 0"));
        Self {
            buckets: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` if `client` must slow down, with when a request would be let through.
    pub(crate) fn check(&self, client: &Client) -> Result<(), Duration> {
        self.buckets
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// s3s's access hook on the HTTP frontend: after the signature is verified, the key holder's
/// request counts against its rate; unsigned requests are refused, as s3s does without a hook.
pub(crate) struct RateByKey {
    pub rate: Option<std::sync::Arc<RequestRate>>,
    pub metrics: Option<std::sync::Arc<crate::metrics::S3Metrics>>,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for RateByKey {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        if let Some(rate) = &self.rate
            && rate.check(&Client::Keyholder).is_err()
        {
            if let Some(m) = &self.metrics {
                m.slowed("http");
            }
            // The frontend adds Retry-After to every 503.
            return Err(s3s::s3_error!(SlowDown, "Please reduce your request rate."));
        }
        Ok(())
    }
}

/// The access key a SigV4 or SigV2 request names, in its header or its presigned query.
pub(crate) fn access_key<'a>(authorization: Option<&'a str>, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(auth) = authorization {
        if let Some((_, rest)) = auth.split_once("Credential=") {
            return rest.split('/').next();
        }
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return rest.split(':').next();
        }
    }
    query?.split('&').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        match name {
            // The credential's slashes may be percent-encoded; the key itself never needs it.
            "X-Amz-Credential" => value.split(['/', '%']).next(),
            "AWSAccessKeyId" => Some(value),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_found_in_every_form_of_signature() {
        let v4 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
        assert_eq!(access_key(Some(v4), None), Some("AKIDEXAMPLE"));
        assert_eq!(access_key(Some("AWS AKID2:c2ln"), None), Some("AKID2"));
        assert_eq!(
            access_key(
                None,
                Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID3%2F20261201%2Fus-east-1")
            ),
            Some("AKID3")
        );
        assert_eq!(access_key(None, Some("AWSAccessKeyId=AKID4&Expires=1")), Some("AKID4"));
        assert_eq!(access_key(None, Some("list-type=2")), None);
        assert_eq!(access_key(None, None), None);
    }

    #[test]
    fn a_client_over_its_rate_waits_and_others_do_not() {
        let rate = RequestRate::new(NonZeroU32::new(2).unwrap());
        let node = Client::Node("a".into());
        for _ in 0..20 {
            assert!(rate.check(&node).is_ok(), "a burst of 20 passes");
        }
        let wait = rate.check(&node).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(rate.check(&Client::Keyholder).is_ok());
    }
}
