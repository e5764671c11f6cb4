//! Circle and relay links: `haven-relay://circle#…` and `haven-relay://relay#…`.
//!
//! Both carry public facts only (ids and addresses, never a secret) as a compact binary
//! payload in URL-safe base64 without padding, after a `#` so that no web server ever sees
//! it. The payload starts with a version byte; a link from a newer version is refused with a
//! clear error instead of being half-understood. See docs/LINKS.md for the byte layout.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use iroh::{EndpointAddr, EndpointId, RelayUrl, TransportAddr};

const SCHEME: &str = "haven-relay://";
const VERSION: u8 = 1;
const CIRCLE_ID_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// Keeps a link printable as a terminal QR code and bounds what parsing can allocate.
pub const MAX_MEMBERS: usize = 64;

const TAG_RELAY_URL: u8 = 1;
const TAG_IPV4: u8 = 2;
const TAG_IPV6: u8 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("not a haven-relay link (expected haven-relay://circle#… or haven-relay://relay#…)")]
    NotALink,
    #[error("this is a {found} link, a {wanted} link is needed here")]
    WrongKind { found: String, wanted: &'static str },
    #[error("the link is not valid URL-safe base64; was it copied completely?")]
    Encoding,
    #[error("the link is truncated; was it copied completely?")]
    Truncated,
    #[error("the link is from a newer haven-relay (link version {0}); update haven-relay")]
    FutureVersion(u8),
    #[error("the link has unexpected bytes at its end")]
    TrailingBytes,
    #[error("the link lists {0} members; at most {MAX_MEMBERS} are supported")]
    TooManyMembers(usize),
    #[error("the link contains an invalid node id")]
    InvalidNodeId,
    #[error("the link contains an invalid relay URL")]
    InvalidRelayUrl,
}

/// A circle's id: 16 random bytes chosen by the app that created the circle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CircleId(pub [u8; CIRCLE_ID_LEN]);

impl fmt::Display for CircleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_simd::encode_to_string(self.0, hex_simd::AsciiCase::Lower))
    }
}

/// What the app hands the relay: which circle it serves and who belongs to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircleLink {
    pub circle: CircleId,
    pub members: Vec<EndpointId>,
}

/// What the relay hands back to the app: how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLink {
    pub circle: CircleId,
    pub relay: EndpointId,
    pub relay_url: Option<RelayUrl>,
    pub direct_addrs: Vec<SocketAddr>,
}

impl RelayLink {
    /// The iroh address to dial.
    pub fn endpoint_addr(&self) -> EndpointAddr {
        let addrs = self
            .direct_addrs
            .iter()
            .copied()
            .map(TransportAddr::Ip)
            .chain(self.relay_url.iter().cloned().map(TransportAddr::Relay));
        EndpointAddr::from_parts(self.relay, addrs)
    }
}

impl fmt::Display for CircleLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.circle.0);
        out.push(self.members.len() as u8);
        for member in &self.members {
            out.extend_from_slice(member.as_bytes());
        }
        write!(f, "{SCHEME}circle#{}", encode(&out))
    }
}

impl fmt::Display for RelayLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.circle.0);
        out.extend_from_slice(self.relay.as_bytes());
        if let Some(url) = &self.relay_url {
            let url = url.to_string();
            // Longer URLs cannot be encoded; a relay URL is a short https origin.
            if url.len() <= u8::MAX as usize {
                push_tlv(&mut out, TAG_RELAY_URL, url.as_bytes());
            }
        }
        for addr in &self.direct_addrs {
            match addr.ip() {
                IpAddr::V4(ip) => push_tlv(
                    &mut out,
                    TAG_IPV4,
                    &[&ip.octets()[..], &addr.port().to_be_bytes()].concat(),
                ),
                IpAddr::V6(ip) => push_tlv(
                    &mut out,
                    TAG_IPV6,
                    &[&ip.octets()[..], &addr.port().to_be_bytes()].concat(),
                ),
            }
        }
        write!(f, "{SCHEME}relay#{}", encode(&out))
    }
}

impl FromStr for CircleLink {
    type Err = LinkError;

    fn from_str(s: &str) -> Result<Self, LinkError> {
        let mut r = Reader::new(payload(s, "circle")?)?;
        let circle = CircleId(r.array()?);
        let count = r.byte()? as usize;
        if count > MAX_MEMBERS {
            return Err(LinkError::TooManyMembers(count));
        }
        let members = (0..count).map(|_| r.node_id()).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(CircleLink { circle, members })
    }
}

impl FromStr for RelayLink {
    type Err = LinkError;

    fn from_str(s: &str) -> Result<Self, LinkError> {
        let mut r = Reader::new(payload(s, "relay")?)?;
        let circle = CircleId(r.array()?);
        let relay = r.node_id()?;
        let mut link = RelayLink {
            circle,
            relay,
            relay_url: None,
            direct_addrs: Vec::new(),
        };
        while !r.is_empty() {
            let tag = r.byte()?;
            let len = r.byte()? as usize;
            let value = r.take(len)?;
            match (tag, len) {
                (TAG_RELAY_URL, _) => {
                    let text = std::str::from_utf8(value).map_err(|_| LinkError::InvalidRelayUrl)?;
                    link.relay_url = Some(text.parse().map_err(|_| LinkError::InvalidRelayUrl)?);
                }
                (TAG_IPV4, 6) => {
                    let ip = Ipv4Addr::new(value[0], value[1], value[2], value[3]);
                    link.direct_addrs.push(SocketAddr::new(ip.into(), port(&value[4..])));
                }
                (TAG_IPV6, 18) => {
                    let octets: [u8; 16] = value[..16].try_into().expect("length checked");
                    link.direct_addrs
                        .push(SocketAddr::new(Ipv6Addr::from(octets).into(), port(&value[16..])));
                }
                (TAG_IPV4 | TAG_IPV6, _) => return Err(LinkError::Truncated),
                // Fields added later within version 1 are skipped, not fatal.
                _ => {}
            }
        }
        Ok(link)
    }
}

fn port(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

fn encode(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// Checks the scheme and kind and decodes the payload after `#`.
fn payload(s: &str, wanted: &'static str) -> Result<Vec<u8>, LinkError> {
    let rest = s.trim().strip_prefix(SCHEME).ok_or(LinkError::NotALink)?;
    let (kind, data) = rest.split_once('#').ok_or(LinkError::NotALink)?;
    let kind = kind.trim_end_matches('/');
    if kind != wanted {
        return Err(match kind {
            "circle" | "relay" => LinkError::WrongKind {
                found: kind.to_owned(),
                wanted,
            },
            _ => LinkError::NotALink,
        });
    }
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(data.trim_end_matches('='))
        .map_err(|_| LinkError::Encoding)
}

struct Reader {
    bytes: Vec<u8>,
    at: usize,
}

impl Reader {
    fn new(bytes: Vec<u8>) -> Result<Self, LinkError> {
        let mut r = Reader { bytes, at: 0 };
        match r.byte()? {
            VERSION => Ok(r),
            v => Err(LinkError::FutureVersion(v)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], LinkError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(LinkError::Truncated)?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, LinkError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LinkError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn node_id(&mut self) -> Result<EndpointId, LinkError> {
        let bytes: [u8; KEY_LEN] = self.array()?;
        EndpointId::from_bytes(&bytes).map_err(|_| LinkError::InvalidNodeId)
    }

    fn is_empty(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn finish(self) -> Result<(), LinkError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(LinkError::TrailingBytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node_id(seed: u8) -> EndpointId {
        iroh::SecretKey::from_bytes(&[seed; 32]).public()
    }

    fn circle_link() -> impl Strategy<Value = CircleLink> {
        (any::<[u8; 16]>(), prop::collection::vec(any::<u8>(), 0..=MAX_MEMBERS)).prop_map(|(id, seeds)| CircleLink {
            circle: CircleId(id),
            members: seeds.into_iter().map(node_id).collect(),
        })
    }

    fn relay_link() -> impl Strategy<Value = RelayLink> {
        let addr = (any::<bool>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(v4, b, port)| {
            let ip: IpAddr = if v4 {
                Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
            } else {
                Ipv6Addr::from(b).into()
            };
            SocketAddr::new(ip, port)
        });
        let url = prop_oneof![
            Just(None),
            "[a-z]{1,20}".prop_map(|host| Some(format!("https://{host}.example.org/").parse().unwrap())),
        ];
        (any::<[u8; 16]>(), any::<u8>(), url, prop::collection::vec(addr, 0..6)).prop_map(
            |(id, seed, relay_url, direct_addrs)| RelayLink {
                circle: CircleId(id),
                relay: node_id(seed),
                relay_url,
                direct_addrs,
            },
        )
    }

    proptest! {
        #[test]
        fn circle_links_round_trip(link in circle_link()) {
            prop_assert_eq!(link.to_string().parse::<CircleLink>(), Ok(link));
        }

        #[test]
        fn relay_links_round_trip(link in relay_link()) {
            prop_assert_eq!(link.to_string().parse::<RelayLink>(), Ok(link));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,300}") {
            let _ = s.parse::<CircleLink>();
            let _ = s.parse::<RelayLink>();
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = format!("haven-relay://circle#{}", encode(&bytes)).parse::<CircleLink>();
            let _ = format!("haven-relay://relay#{}", encode(&bytes)).parse::<RelayLink>();
        }

        #[test]
        fn every_truncation_is_an_error(link in circle_link(), cut in 1usize..64) {
            let text = link.to_string();
            let (head, payload) = text.split_once('#').unwrap();
            let bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(payload).unwrap();
            let keep = bytes.len().saturating_sub(cut);
            let truncated = format!("{head}#{}", encode(&bytes[..keep]));
            prop_assert!(truncated.parse::<CircleLink>().is_err());
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let link = CircleLink {
            circle: CircleId([7; 16]),
            members: vec![node_id(1)],
        }
        .to_string();
        assert_eq!("https://example.org".parse::<CircleLink>(), Err(LinkError::NotALink));
        assert_eq!(
            link.replace("circle#", "relay#").parse::<CircleLink>(),
            Err(LinkError::WrongKind {
                found: "relay".into(),
                wanted: "circle"
            })
        );
        assert_eq!(format!("{link}!").parse::<CircleLink>(), Err(LinkError::Encoding));
        let future = format!("haven-relay://circle#{}", encode(&[2, 0, 0]));
        assert_eq!(future.parse::<CircleLink>(), Err(LinkError::FutureVersion(2)));
        assert_eq!(link[..link.len() - 12].parse::<CircleLink>(), Err(LinkError::Truncated));
        let message = future.parse::<CircleLink>().unwrap_err().to_string();
        assert!(!message.contains('\n'), "one line: {message}");
    }
}
