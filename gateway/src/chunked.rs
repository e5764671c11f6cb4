//! aws-chunked bodies on a transport that has already authenticated its peer.
//!
//! Over HTTP, s3s decodes aws-chunked framing while it checks the chunk signatures. On the
//! tunnel there is no SigV4 (members are admitted by node id and sign with keys the relay does
//! not know), so s3s would hand us the framing as if it were the payload: a 1,000-byte upload
//! from restic would be stored as 1,174 bytes of `3e8;chunk-signature=…`. This module decodes
//! the framing itself, ignores the chunk signatures (they cannot be checked without the
//! member's secret, and need not be), keeps any trailer for the checksum check in
//! [`crate::body`], and rewrites the request into a plain one carrying exactly the payload.

use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt, stream};
use http::{HeaderMap, HeaderValue, Request};
use s3s::Body;
use s3s::stream::{ByteStream, DynByteStream, RemainingLength};

use crate::error::BodyError;

/// Longest chunk header line we accept (`<hex size>;chunk-signature=<64 hex>`).
const MAX_CHUNK_LINE: usize = 1024;
/// Most trailer bytes we accept after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// Trailers decoded from an aws-chunked body on a trusted transport; a request extension that
/// [`crate::body::Trailer`] reads when s3s has none.
#[derive(Clone, Default)]
pub struct DecodedTrailers(Arc<Mutex<Option<HeaderMap>>>);

impl DecodedTrailers {
    pub fn read<R>(&self, f: impl FnOnce(&HeaderMap) -> R) -> Option<R> {
        self.0.lock().ok()?.as_ref().map(f)
    }
}

/// Whether `x-amz-content-sha256` announces an aws-chunked body.
pub fn is_streaming(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"))
}

/// The payload length an aws-chunked request announced.
pub fn decoded_length(headers: &HeaderMap) -> Result<Option<u64>, BodyError> {
    match headers.get("x-amz-decoded-content-length") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or(BodyError::Malformed("x-amz-decoded-content-length is not a number")),
    }
}

/// Turns an aws-chunked request from a trusted transport into a plain one: the body becomes
/// the decoded payload, `Content-Length` its declared length, the payload hash
/// `UNSIGNED-PAYLOAD`. The declared length stays in `x-amz-decoded-content-length`, which
/// [`crate::body`] holds the decoded bytes to. Requests that are not aws-chunked are left as
/// they are.
pub fn decode_trusted(req: Request<Body>) -> Request<Body> {
    if !is_streaming(req.headers()) {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    let declared = decoded_length(&parts.headers).ok().flatten();
    let trailers = DecodedTrailers::default();
    let decoded = decode(body, trailers.clone());
    let headers = &mut parts.headers;
    headers.insert("x-amz-content-sha256", HeaderValue::from_static("UNSIGNED-PAYLOAD"));
    headers.remove(http::header::TRANSFER_ENCODING);
    match declared {
        Some(n) => {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.remove(http::header::CONTENT_LENGTH);
        }
    }
    parts.extensions.insert(trailers);
    let body: DynByteStream = Box::pin(Sized {
        inner: Box::pin(decoded),
        remaining: declared,
    });
    Request::from_parts(parts, Body::from(body))
}

/// Decodes aws-chunked framing from `body`, storing the trailers in `trailers` at the end.
pub fn decode<S, E>(
    body: S,
    trailers: DecodedTrailers,
) -> impl Stream<Item = Result<Bytes, s3s::StdError>> + Send + Sync
where
    S: Stream<Item = Result<Bytes, E>> + Send + Sync + Unpin + 'static,
    E: Into<s3s::StdError>,
{
    let decoder = Decoder {
        body,
        rest: Bytes::new(),
        state: State::Header,
        trailers,
        eof: false,
    };
    stream::unfold(decoder, |mut d| async move {
        match d.next_payload().await {
            Ok(Some(bytes)) => Some((Ok(bytes), d)),
            Ok(None) => None,
            Err(e) => {
                d.state = State::Failed;
                Some((Err(e), d))
            }
        }
    })
}

enum State {
    /// Expecting a chunk header line.
    Header,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailers, then the end.
    Trailers,
    Done,
    Failed,
}

struct Decoder<S> {
    body: S,
    /// What has arrived and is not yet parsed or passed on: a slice of the body's own buffers.
    rest: Bytes,
    state: State,
    trailers: DecodedTrailers,
    eof: bool,
}

impl<S, E> Decoder<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<s3s::StdError>,
{
    /// The next piece of the framed body, skipping empty ones; `None` at its end.
    async fn next_piece(&mut self) -> Result<Option<Bytes>, s3s::StdError> {
        while !self.eof {
            match self.body.next().await {
                Some(Ok(bytes)) if bytes.is_empty() => {}
                Some(Ok(bytes)) => return Ok(Some(bytes)),
                Some(Err(e)) => return Err(e.into()),
                None => self.eof = true,
            }
        }
        Ok(None)
    }

    /// One line without its CRLF, or `None` at the end of the body. A line that lies within
    /// one piece of the body is sliced out of it; only one that spans pieces is copied.
    async fn line(&mut self, max: usize) -> Result<Option<Bytes>, s3s::StdError> {
        if let Some(at) = crlf(&self.rest) {
            let line = self.rest.split_to(at);
            self.rest.advance(2);
            return Ok(Some(line));
        }
        let mut joined = BytesMut::from(&self.rest[..]);
        loop {
            if let Some(at) = crlf(&joined) {
                let line = joined.split_to(at).freeze();
                joined.advance(2);
                self.rest = joined.freeze();
                return Ok(Some(line));
            }
            if joined.len() > max {
                return Err(BodyError::Malformed("an aws-chunked line is too long").into());
            }
            match self.next_piece().await? {
                Some(piece) => joined.extend_from_slice(&piece),
                None if joined.is_empty() => {
                    self.rest = Bytes::new();
                    return Ok(None);
                }
                None => return Err(BodyError::Malformed("the body ended inside a line").into()),
            }
        }
    }

    async fn next_payload(&mut self) -> Result<Option<Bytes>, s3s::StdError> {
        loop {
            match self.state {
                State::Header => {
                    let line = self
                        .line(MAX_CHUNK_LINE)
                        .await?
                        .ok_or(BodyError::Malformed("the body ended before its last chunk"))?;
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Data(left) => {
                    if self.rest.is_empty() {
                        self.rest = self
                            .next_piece()
                            .await?
                            .ok_or(BodyError::Malformed("the body ended inside a chunk"))?;
                    }
                    let take = (self.rest.len() as u64).min(left) as usize;
                    let data = self.rest.split_to(take);
                    let left = left - take as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(Some(data));
                }
                State::DataEnd => {
                    let line = self
                        .line(2)
                        .await?
                        .ok_or(BodyError::Malformed("the body ended inside a chunk"))?;
                    if !line.is_empty() {
                        return Err(BodyError::Malformed("a chunk is longer than its size").into());
                    }
                    self.state = State::Header;
                }
                State::Trailers => {
                    self.read_trailers().await?;
                    self.state = State::Done;
                }
                State::Done | State::Failed => return Ok(None),
            }
        }
    }

    /// Reads `name:value` lines up to an empty line or the end; the trailer signature is
    /// dropped with the chunk signatures.
    async fn read_trailers(&mut self) -> Result<(), s3s::StdError> {
        let mut map = HeaderMap::new();
        let mut total = 0;
        while let Some(line) = self.line(MAX_TRAILERS).await? {
            total += line.len() + 2;
            if total > MAX_TRAILERS {
                return Err(BodyError::Malformed("the aws-chunked trailers are too long").into());
            }
            if line.is_empty() {
                break;
            }
            let (name, value) = split_trailer(&line)?;
            if name.eq_ignore_ascii_case("x-amz-trailer-signature") {
                continue;
            }
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BodyError::Malformed("a trailer name is not a header name"))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| BodyError::Malformed("a trailer value is not a header value"))?;
            map.append(name, value);
        }
        // Nothing but line ends may follow the trailers.
        loop {
            if self.rest.iter().any(|b| !matches!(b, b'\r' | b'\n')) {
                return Err(BodyError::Malformed("bytes after the last aws-chunked chunk").into());
            }
            match self.next_piece().await? {
                Some(piece) => self.rest = piece,
                None => break,
            }
        }
        *self.trailers.0.lock().expect("trailers lock") = Some(map);
        Ok(())
    }
}

fn crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// The size in a chunk header: hex digits, then nothing or `;extensions`.
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
    let hex = std::str::from_utf8(hex).map_err(|_| BodyError::Malformed("a chunk size is not hex"))?;
    if hex.is_empty() || hex.len() > 16 {
        return Err(BodyError::Malformed("a chunk size is not hex"));
    }
    u64::from_str_radix(hex, 16).map_err(|_| BodyError::Malformed("a chunk size is not hex"))
}

fn split_trailer(line: &[u8]) -> Result<(&str, &str), BodyError> {
    let line = std::str::from_utf8(line).map_err(|_| BodyError::Malformed("a trailer is not text"))?;
    line.split_once(':')
        .map(|(n, v)| (n.trim(), v))
        .ok_or(BodyError::Malformed("a trailer has no ':'"))
}

/// The decoded stream with the length s3s reports for it.
struct Sized<S> {
    inner: S,
    remaining: Option<u64>,
}

impl<S> Stream for Sized<S>
where
    S: Stream<Item = Result<Bytes, s3s::StdError>> + Unpin,
{
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(Some(Ok(bytes))) = &polled
            && let Some(n) = self.remaining.as_mut()
        {
            *n = n.saturating_sub(bytes.len() as u64);
        }
        polled
    }
}

impl<S> ByteStream for Sized<S>
where
    S: Stream<Item = Result<Bytes, s3s::StdError>> + Unpin,
{
    fn remaining_length(&self) -> RemainingLength {
        match self.remaining.and_then(|n| usize::try_from(n).ok()) {
            Some(n) => RemainingLength::new_exact(n),
            None => RemainingLength::unknown(),
        }
    }
}

/// Frames `data` as aws-chunked with `chunk`-byte chunks, signed-looking extensions and an
/// optional trailer: what minio-go and the Java SDKs send. For tests.
#[doc(hidden)]
pub fn encode_for_tests(data: &[u8], chunk: usize, trailer: Option<(&str, &str)>) -> Vec<u8> {
    let fake_sig = "0".repeat(64);
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x};chunk-signature={fake_sig}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("0;chunk-signature={fake_sig}\r\n").as_bytes());
    if let Some((name, value)) = trailer {
        out.extend_from_slice(format!("{name}:{value}\r\nx-amz-trailer-signature:{fake_sig}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode_all(framed: &[u8], piece: usize) -> Result<(Vec<u8>, DecodedTrailers), String> {
        let pieces: Vec<Result<Bytes, std::io::Error>> = framed
            .chunks(piece.max(1))
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        let trailers = DecodedTrailers::default();
        let mut out = Vec::new();
        let mut s = Box::pin(decode(stream::iter(pieces), trailers.clone()));
        while let Some(item) = s.next().await {
            out.extend_from_slice(&item.map_err(|e| e.to_string())?);
        }
        Ok((out, trailers))
    }

    #[tokio::test]
    async fn payloads_of_every_shape_decode_exactly_in_any_split() {
        for len in [0usize, 1, 8192, 8193, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for trailer in [None, Some(("x-amz-checksum-crc32", "AAAAAA=="))] {
                let framed = encode_for_tests(&data, 8192, trailer);
                for piece in [1, 3, 64, 8195, framed.len()] {
                    let (out, trailers) = decode_all(&framed, piece).await.unwrap();
                    assert_eq!(out, data, "len {len} piece {piece}");
                    let got = trailers.read(|h| h.get("x-amz-checksum-crc32").cloned()).flatten();
                    assert_eq!(got.is_some(), trailer.is_some());
                    assert!(trailers.read(|h| h.contains_key("x-amz-trailer-signature")) == Some(false));
                }
            }
        }
    }

    #[tokio::test]
    async fn unsigned_chunks_decode_too() {
        let framed = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:abc=\r\n\r\n";
        let (out, _) = decode_all(framed, 4).await.unwrap();
        assert_eq!(out, b"hello");
    }

    #[tokio::test]
    async fn broken_framing_is_an_error_never_data() {
        let cases: [&[u8]; 7] = [
            b"5\r\nhel",                       // ends inside a chunk
            b"5\r\nhello",                     // no CRLF, no last chunk
            b"5\r\nhelloX\r\n0\r\n\r\n",       // chunk longer than its size
            b"zz\r\nhello\r\n0\r\n\r\n",       // not hex
            b"5\r\nhello\r\n",                 // no last chunk
            b"0\r\n\r\ntrailing garbage",      // bytes after the end
            b"\xc3\xa9\r\nhello\r\n0\r\n\r\n", // non-ASCII size
        ];
        for framed in cases {
            assert!(
                decode_all(framed, 2).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(framed)
            );
        }
    }
}
