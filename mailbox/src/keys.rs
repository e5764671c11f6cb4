//! Where the mailbox keeps things in its store bucket. The keys carry only random message
//! ids, recipients' public node ids, arrival order and expiry *days*: no sender, no time.
//!
//! - `p/<seq>-<id>`: a message's payload, stored once for all its recipients. Its metadata
//!   (`mailbox`) holds `1 <expiry day> <hops> <recipient>,<recipient>…`.
//! - `r/<expiry day>/<batch id>`: a batch of acknowledgements, "this recipient has this
//!   message" ([`crate::receipts`]). Kept until the day is over, so that posting an id that
//!   everyone has again is still a duplicate.

use crate::frame::{MessageId, NodeId};
use backends::clock::Day;

/// The reserved bucket. [`crate::hidden`] keeps it out of the S3 API.
pub const BUCKET: &str = "haven-relay-mailbox";
/// The user-metadata entry holding a message's header.
pub const META: &str = "mailbox";

pub fn message(seq: u64, id: MessageId) -> String {
    format!("p/{seq:016x}-{}", id.to_hex())
}

pub fn parse_message(key: &str) -> Option<(u64, MessageId)> {
    let (seq, id) = key.strip_prefix("p/")?.split_once('-')?;
    Some((u64::from_str_radix(seq, 16).ok()?, MessageId::from_hex(id)?))
}

/// A message's header, as kept in its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub expiry: Day,
    pub hops: u8,
    pub recipients: Vec<NodeId>,
}

impl Header {
    pub fn encode(&self) -> String {
        let recipients: Vec<String> = self.recipients.iter().map(node_hex).collect();
        format!("1 {} {} {}", self.expiry.0, self.hops, recipients.join(","))
    }

    pub fn parse(text: &str) -> Option<Header> {
        let mut parts = text.split(' ');
        if parts.next()? != "1" {
            return None;
        }
        let expiry = Day(parts.next()?.parse().ok()?);
        let hops = parts.next()?.parse().ok()?;
        let recipients = parts.next()?.split(',').map(parse_node).collect::<Option<Vec<_>>>()?;
        (parts.next().is_none() && !recipients.is_empty()).then_some(Header {
            expiry,
            hops,
            recipients,
        })
    }
}

pub fn node_hex(node: &NodeId) -> String {
    hex_simd::encode_to_string(node, hex_simd::AsciiCase::Lower)
}

fn parse_node(s: &str) -> Option<NodeId> {
    hex_simd::decode_to_vec(s.as_bytes()).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_headers_round_trip_and_refuse_strangers() {
        let id = MessageId([0x5a; 16]);
        let node = [7u8; 32];
        assert_eq!(parse_message(&message(42, id)), Some((42, id)));
        let header = Header {
            expiry: Day(20_500),
            hops: 1,
            recipients: vec![node, [9; 32]],
        };
        assert_eq!(Header::parse(&header.encode()), Some(header));
        for bad in ["", "2 1 1 00", "1 x 1 00", "1 1 1 ", "1 1 1 zz", "1 1 1 0707 extra"] {
            assert_eq!(Header::parse(bad), None, "{bad}");
        }
        for bad in ["p/zz-00", "p/1", "r/00000001/00", "x/1-2"] {
            assert!(parse_message(bad).is_none(), "{bad}");
        }
    }
}
