//! The mailbox wire format, version 1 (ALPN `haven-relay/mailbox/1`). docs/ARCHITECTURE.md
//! has the byte layout and the state machine; this is its one implementation.
//!
//! Every QUIC bi-stream a member opens starts with one byte saying what it is for:
//! [`STREAM_POST`] (one post, one status back) or [`STREAM_INBOX`] (frames pushed to the
//! member, acknowledgements back). Integers are big-endian. Decoders take bytes as they
//! arrive and answer `Ok(None)` until a whole message is there; nothing they are given can
//! make them panic or allocate more than the caller's payload limit.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The first byte of a stream that carries one post.
pub const STREAM_POST: u8 = 1;
/// The first byte of a stream on which the relay delivers the member's queue.
pub const STREAM_INBOX: u8 = 2;
/// Version byte after the stream kind; bumped with the ALPN on any incompatible change.
pub const VERSION: u8 = 1;
/// At most this many recipients per post (a post to the whole circle is one post).
pub const MAX_RECIPIENTS: usize = 255;
/// The largest payload the protocol carries; a relay's own limit (1 MiB by default) may only
/// be lower, so that every client can receive what the relay accepts.
pub const MAX_PAYLOAD: u64 = 64 * 1024 * 1024;

pub type NodeId = [u8; 32];

/// A random message id chosen by the sender; the relay's only handle on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    pub fn random() -> Self {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the OS has randomness");
        Self(id)
    }

    pub fn to_hex(&self) -> String {
        hex_simd::encode_to_string(self.0, hex_simd::AsciiCase::Lower)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex_simd::decode_to_vec(s.as_bytes()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("this stream speaks mailbox version {0}; this relay speaks {VERSION}")]
    Version(u8),
    #[error("unknown stream kind or message type {0}")]
    UnknownType(u8),
    #[error("a post needs between 1 and {MAX_RECIPIENTS} recipients")]
    Recipients,
    #[error("the payload is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("bytes after the end of the post")]
    TrailingBytes,
}

/// A sealed message as a member posts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub id: MessageId,
    /// 0 when a member posts; each relay that hands the frame on adds one.
    pub hops: u8,
    /// Days to keep it if undelivered; 0 asks for the relay's default.
    pub lifetime_days: u16,
    pub recipients: Vec<NodeId>,
    pub payload: Bytes,
}

/// The fixed part of a post before its recipients: version, id, hops, lifetime, count.
pub const POST_HEAD: usize = 1 + 16 + 1 + 2 + 1;

impl Post {
    /// The whole stream: kind byte, then the post.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(1 + POST_HEAD + 32 * self.recipients.len() + 4 + self.payload.len());
        out.put_u8(STREAM_POST);
        out.put_u8(VERSION);
        out.put_slice(&self.id.0);
        out.put_u8(self.hops);
        out.put_u16(self.lifetime_days);
        out.put_u8(self.recipients.len() as u8);
        for r in &self.recipients {
            out.put_slice(r);
        }
        out.put_u32(self.payload.len() as u32);
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// Decodes a post stream after its kind byte. `Ok(None)`: more bytes are needed. The
    /// payload limit is checked from the length field, before the payload is read.
    pub fn decode(buf: &[u8], max_payload: u64) -> Result<Option<Post>, FrameError> {
        let Some(head) = buf.get(..POST_HEAD) else {
            return Ok(None);
        };
        if head[0] != VERSION {
            return Err(FrameError::Version(head[0]));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&head[1..17]);
        let hops = head[17];
        let lifetime_days = u16::from_be_bytes([head[18], head[19]]);
        let count = head[20] as usize;
        if count == 0 {
            return Err(FrameError::Recipients);
        }
        let rest = &buf[POST_HEAD..];
        let Some(list) = rest.get(..32 * count) else {
            return Ok(None);
        };
        let recipients = list
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunks"))
            .collect();
        let rest = &rest[32 * count..];
        let Some(len) = rest.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as u64;
        if len > max_payload {
            return Err(FrameError::TooLarge { limit: max_payload });
        }
        let rest = &rest[4..];
        let Some(payload) = rest.get(..len as usize) else {
            return Ok(None);
        };
        if rest.len() > len as usize {
            return Err(FrameError::TrailingBytes);
        }
        Ok(Some(Post {
            id: MessageId(id),
            hops,
            lifetime_days,
            recipients,
            payload: Bytes::copy_from_slice(payload),
        }))
    }
}

/// The relay's answer to a post, sent once the outcome is final (for `Stored`: durable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PostStatus {
    Stored = 0,
    /// This message id was posted before (and not yet expired): not stored or delivered again.
    Duplicate = 1,
    TooLarge = 2,
    /// A recipient's queue is full (frames or bytes).
    QueueFull = 3,
    /// The sender posts faster than the relay allows.
    RateLimited = 4,
    /// A recipient is not a member of this circle.
    NotAMember = 5,
    HopLimit = 6,
    /// The relay's mailbox as a whole is full.
    MailboxFull = 7,
    /// The relay was started with `--no-storage`: it stores no messages.
    NoStorage = 8,
    /// The post could not be parsed.
    Malformed = 9,
    /// Storage failed; nothing was stored. Try again later.
    Unavailable = 10,
}

impl PostStatus {
    pub fn from_byte(b: u8) -> Option<Self> {
        use PostStatus::*;
        [
            Stored,
            Duplicate,
            TooLarge,
            QueueFull,
            RateLimited,
            NotAMember,
            HopLimit,
            MailboxFull,
            NoStorage,
            Malformed,
            Unavailable,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
    }

    /// Whether the message is with the relay (stored now or before).
    pub fn is_accepted(self) -> bool {
        matches!(self, PostStatus::Stored | PostStatus::Duplicate)
    }
}

impl std::fmt::Display for PostStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PostStatus::Stored => "stored",
            PostStatus::Duplicate => "duplicate (already stored)",
            PostStatus::TooLarge => "too large",
            PostStatus::QueueFull => "a recipient's queue is full",
            PostStatus::RateLimited => "rate limited",
            PostStatus::NotAMember => "a recipient is not a member of this circle",
            PostStatus::HopLimit => "hop limit exceeded",
            PostStatus::MailboxFull => "the relay's mailbox is full",
            PostStatus::NoStorage => "this relay stores no messages (--no-storage)",
            PostStatus::Malformed => "malformed post",
            PostStatus::Unavailable => "storage unavailable; try again later",
        })
    }
}

const DELIVER: u8 = 1;
const EMPTY: u8 = 2;
const SUPERSEDED: u8 = 3;
const REFUSED: u8 = 4;
const ACK: u8 = 1;

/// What the relay sends on an inbox stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message for this member. It comes again (on this or a later connection) until
    /// acknowledged.
    Message { id: MessageId, payload: Bytes },
    /// Everything queued so far has been sent; later messages follow as they arrive.
    Empty,
    /// A newer connection of the same node took over this inbox; this stream ends.
    Superseded,
    /// The relay will not deliver (for instance `--no-storage`); this stream ends.
    Refused(PostStatus),
}

impl Delivery {
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Delivery::Message { id, payload } => {
                out.put_u8(DELIVER);
                out.put_slice(&id.0);
                out.put_u32(payload.len() as u32);
                out.put_slice(payload);
            }
            Delivery::Empty => out.put_u8(EMPTY),
            Delivery::Superseded => out.put_u8(SUPERSEDED),
            Delivery::Refused(status) => {
                out.put_u8(REFUSED);
                out.put_u8(*status as u8);
            }
        }
    }

    /// Takes one message off the front of `buf`, if it is all there.
    pub fn decode(buf: &mut BytesMut, max_payload: u64) -> Result<Option<Delivery>, FrameError> {
        let Some(&kind) = buf.first() else { return Ok(None) };
        match kind {
            DELIVER => {
                let Some(head) = buf.get(1..21) else { return Ok(None) };
                let len = u32::from_be_bytes(head[16..20].try_into().expect("4 bytes")) as u64;
                if len > max_payload {
                    return Err(FrameError::TooLarge { limit: max_payload });
                }
                if buf.len() < 21 + len as usize {
                    return Ok(None);
                }
                let id = MessageId(head[..16].try_into().expect("16 bytes"));
                buf.advance(21);
                let payload = buf.split_to(len as usize).freeze();
                Ok(Some(Delivery::Message { id, payload }))
            }
            EMPTY | SUPERSEDED => {
                buf.advance(1);
                Ok(Some(if kind == EMPTY {
                    Delivery::Empty
                } else {
                    Delivery::Superseded
                }))
            }
            REFUSED => {
                let Some(&code) = buf.get(1) else { return Ok(None) };
                let status = PostStatus::from_byte(code).ok_or(FrameError::UnknownType(code))?;
                buf.advance(2);
                Ok(Some(Delivery::Refused(status)))
            }
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

/// The inbox stream's opening, client to relay.
pub fn inbox_opening() -> [u8; 2] {
    [STREAM_INBOX, VERSION]
}

/// An acknowledgement, client to relay: this message is safely with the member.
pub fn encode_ack(id: MessageId, out: &mut BytesMut) {
    out.put_u8(ACK);
    out.put_slice(&id.0);
}

/// Takes one acknowledgement off the front of `buf`, if it is all there.
pub fn decode_ack(buf: &mut BytesMut) -> Result<Option<MessageId>, FrameError> {
    let Some(&kind) = buf.first() else { return Ok(None) };
    if kind != ACK {
        return Err(FrameError::UnknownType(kind));
    }
    let Some(id) = buf.get(1..17) else { return Ok(None) };
    let id = MessageId(id.try_into().expect("16 bytes"));
    buf.advance(17);
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn post() -> impl Strategy<Value = Post> {
        (
            any::<[u8; 16]>(),
            any::<u8>(),
            any::<u16>(),
            prop::collection::vec(any::<[u8; 32]>(), 1..=12),
            prop::collection::vec(any::<u8>(), 0..3000),
        )
            .prop_map(|(id, hops, lifetime_days, recipients, payload)| Post {
                id: MessageId(id),
                hops,
                lifetime_days,
                recipients,
                payload: payload.into(),
            })
    }

    fn delivery() -> impl Strategy<Value = Delivery> {
        prop_oneof![
            (any::<[u8; 16]>(), prop::collection::vec(any::<u8>(), 0..2000)).prop_map(|(id, p)| Delivery::Message {
                id: MessageId(id),
                payload: p.into()
            }),
            Just(Delivery::Empty),
            Just(Delivery::Superseded),
            (0u8..=10).prop_map(|b| Delivery::Refused(PostStatus::from_byte(b).unwrap())),
        ]
    }

    proptest! {
        #[test]
        fn posts_round_trip_and_every_prefix_asks_for_more(p in post()) {
            let wire = p.encode();
            prop_assert_eq!(wire[0], STREAM_POST);
            let body = &wire[1..];
            prop_assert_eq!(Post::decode(body, 1 << 20), Ok(Some(p.clone())));
            for cut in [0, 1, POST_HEAD, body.len() / 2, body.len() - 1] {
                prop_assert_eq!(Post::decode(&body[..cut.min(body.len() - 1)], 1 << 20), Ok(None));
            }
            let mut longer = body.to_vec();
            longer.push(0);
            prop_assert_eq!(Post::decode(&longer, 1 << 20), Err(FrameError::TrailingBytes));
            if !p.payload.is_empty() {
                let limit = p.payload.len() as u64 - 1;
                prop_assert_eq!(Post::decode(body, limit), Err(FrameError::TooLarge { limit }));
            }
        }

        #[test]
        fn deliveries_and_acks_round_trip_back_to_back(ds in prop::collection::vec(delivery(), 0..6), ids in prop::collection::vec(any::<[u8; 16]>(), 0..6)) {
            let mut wire = BytesMut::new();
            ds.iter().for_each(|d| d.encode(&mut wire));
            let mut got = Vec::new();
            // Fed one byte at a time, as a slow network would.
            let mut buf = BytesMut::new();
            for b in wire.iter() {
                buf.put_u8(*b);
                while let Some(d) = Delivery::decode(&mut buf, 1 << 20).unwrap() {
                    got.push(d);
                }
            }
            prop_assert_eq!(got, ds);
            prop_assert!(buf.is_empty());
            let mut acks = BytesMut::new();
            ids.iter().for_each(|id| encode_ack(MessageId(*id), &mut acks));
            let mut back = Vec::new();
            while let Some(id) = decode_ack(&mut acks).unwrap() {
                back.push(id.0);
            }
            prop_assert_eq!(back, ids);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), limit in 0u64..1000) {
            let _ = Post::decode(&bytes, limit);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Delivery::decode(&mut buf, limit) {}
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode_ack(&mut buf) {}
        }
    }

    #[test]
    fn bad_versions_and_counts_are_named() {
        let mut p = Post {
            id: MessageId([7; 16]),
            hops: 0,
            lifetime_days: 0,
            recipients: vec![[1; 32]],
            payload: Bytes::from_static(b"x"),
        }
        .encode()
        .to_vec();
        p[1] = 9;
        assert_eq!(Post::decode(&p[1..], 10), Err(FrameError::Version(9)));
        p[1] = VERSION;
        p[1 + POST_HEAD - 1] = 0;
        assert_eq!(Post::decode(&p[1..], 10), Err(FrameError::Recipients));
        assert!(MessageId::from_hex(&MessageId([0xab; 16]).to_hex()) == Some(MessageId([0xab; 16])));
        assert_eq!(MessageId::from_hex("zz"), None);
    }
}
