//! Request bodies on their way to the store: capped, held to their declared length, and their
//! trailing checksums verified.
//!
//! s3s decodes aws-chunked framing and checks chunk signatures (on the tunnel, [`crate::chunked`]
//! decodes it), but neither *checks* the trailer (`x-amz-checksum-crc32: ...` after the last
//! chunk) nor that the payload has the length `x-amz-decoded-content-length` announced. We hash
//! and count the decoded bytes and fail the stream before it ends on any mismatch, so the store
//! never commits the object.

use std::io;

use backends::digest::Digester;
use backends::{ByteStream, ChecksumAlgorithm};
use futures::{StreamExt, stream};
use s3s::dto::StreamingBlob;
use s3s::{S3Request, S3Result, TrailingHeaders};

use crate::chunked::{self, DecodedTrailers};
use crate::error::BodyError;

/// A request extension: the request came over a transport that authenticated its peer, so
/// s3s checked no signature and, with it, no `x-amz-content-sha256`.
#[derive(Clone, Copy)]
pub struct TrustedTransport;

/// What a request body must live up to besides the size cap.
pub struct BodyChecks {
    trailer: Option<Trailer>,
    /// The payload length an aws-chunked request announced.
    decoded_length: Option<u64>,
    /// The payload's SHA-256 (hex) a client sent on a trusted transport, where s3s does not
    /// check it (over HTTP, SigV4 verification does).
    sha256: Option<String>,
}

impl BodyChecks {
    pub fn from_request<T>(req: &S3Request<T>) -> S3Result<BodyChecks> {
        let sha256 = if req.extensions.get::<TrustedTransport>().is_some() {
            payload_sha256(&req.headers)?
        } else {
            None
        };
        let aws_chunked = chunked::is_streaming(&req.headers) || req.extensions.get::<DecodedTrailers>().is_some();
        let decoded_length = if aws_chunked {
            chunked::decoded_length(&req.headers).map_err(|e| s3s::s3_error!(InvalidArgument, "{e}"))?
        } else {
            None
        };
        let trailer = Trailer::from_request(
            &req.headers,
            req.trailing_headers.clone(),
            req.extensions.get::<DecodedTrailers>(),
        );
        Ok(BodyChecks {
            trailer,
            decoded_length,
            sha256,
        })
    }

    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// The payload size announced: aws-chunked's decoded length, else Content-Length.
    pub fn declared_size(&self, content_length: Option<i64>) -> Option<u64> {
        self.decoded_length
            .or_else(|| content_length.and_then(|n| u64::try_from(n).ok()))
    }
}

/// The SHA-256 in `x-amz-content-sha256`, if it is one; the markers of unsigned and aws-chunked
/// payloads are not, and anything else is refused as AWS does.
fn payload_sha256(headers: &http::HeaderMap) -> S3Result<Option<String>> {
    let Some(value) = headers.get("x-amz-content-sha256") else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default();
    if value == "UNSIGNED-PAYLOAD" || value.starts_with("STREAMING-") {
        return Ok(None);
    }
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Some(value.to_ascii_lowercase()));
    }
    Err(s3s::s3_error!(
        InvalidArgument,
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-..., or the payload's SHA-256 in hex"
    ))
}

/// The trailer a request announced with `x-amz-trailer`.
pub struct Trailer {
    pub algorithm: ChecksumAlgorithm,
    headers: TrailerSource,
}

/// Who decoded the trailer: s3s (signed HTTP) or [`crate::chunked`] (a trusted transport).
enum TrailerSource {
    S3s(TrailingHeaders),
    Decoded(DecodedTrailers),
}

impl Trailer {
    /// The trailer announced by the request, if it is a checksum we know.
    fn from_request(
        headers: &http::HeaderMap,
        trailing: Option<TrailingHeaders>,
        decoded: Option<&DecodedTrailers>,
    ) -> Option<Trailer> {
        let name = headers.get("x-amz-trailer")?.to_str().ok()?.trim().to_ascii_lowercase();
        let algorithm = ChecksumAlgorithm::from_s3_name(name.strip_prefix("x-amz-checksum-")?)?;
        let headers = match (trailing, decoded) {
            (Some(t), _) => TrailerSource::S3s(t),
            (None, Some(d)) => TrailerSource::Decoded(d.clone()),
            (None, None) => return None,
        };
        Some(Trailer { algorithm, headers })
    }

    fn value(&self, name: &str) -> Option<String> {
        let get = |h: &http::HeaderMap| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        match &self.headers {
            TrailerSource::S3s(t) => t.read(get).flatten(),
            TrailerSource::Decoded(d) => d.read(get).flatten(),
        }
    }

    fn header_name(&self) -> String {
        format!("x-amz-checksum-{}", self.algorithm.s3_name().to_ascii_lowercase())
    }
}

/// Turns an s3s body into a store body, enforcing `limit`, the declared length and the trailer
/// checksum.
pub fn request_body(blob: Option<StreamingBlob>, limit: u64, checks: BodyChecks) -> ByteStream {
    let blob = blob.unwrap_or_else(|| StreamingBlob::wrap(stream::empty::<Result<bytes::Bytes, io::Error>>()));
    struct State {
        blob: StreamingBlob,
        seen: u64,
        limit: u64,
        declared: Option<u64>,
        trailer: Option<(Trailer, Digester)>,
        sha256: Option<(String, Digester)>,
        done: bool,
    }
    let state = State {
        blob,
        seen: 0,
        limit,
        declared: checks.decoded_length,
        trailer: checks.trailer.map(|t| {
            let d = Digester::new(&[t.algorithm]);
            (t, d)
        }),
        sha256: checks
            .sha256
            .map(|hex| (hex, Digester::new(&[ChecksumAlgorithm::Sha256]))),
        done: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        match st.blob.next().await {
            Some(Ok(bytes)) => {
                st.seen += bytes.len() as u64;
                if st.seen > st.limit {
                    st.done = true;
                    return Some((Err(io::Error::other(BodyError::TooLarge { limit: st.limit })), st));
                }
                if st.declared.is_some_and(|n| st.seen > n) {
                    st.done = true;
                    return Some((Err(io::Error::other(BodyError::LengthMismatch)), st));
                }
                if let Some((_, digester)) = &mut st.trailer {
                    digester.update(&bytes);
                }
                if let Some((_, digester)) = &mut st.sha256 {
                    digester.update(&bytes);
                }
                Some((Ok(bytes), st))
            }
            Some(Err(e)) => {
                st.done = true;
                Some((Err(io::Error::other(e)), st))
            }
            None => {
                st.done = true;
                if st.declared.is_some_and(|n| st.seen != n) {
                    return Some((Err(io::Error::other(BodyError::LengthMismatch)), st));
                }
                if let Some((expected, digester)) = st.sha256.take()
                    && !sha256_matches(&expected, digester)
                {
                    return Some((Err(io::Error::other(BodyError::Sha256Mismatch)), st));
                }
                let (trailer, digester) = st.trailer.take()?;
                match verify_trailer(&trailer, digester) {
                    Ok(()) => None,
                    Err(e) => Some((Err(io::Error::other(e)), st)),
                }
            }
        }
    }))
}

fn sha256_matches(expected_hex: &str, digester: Digester) -> bool {
    let computed = digester.finish();
    computed
        .checksums
        .get(&ChecksumAlgorithm::Sha256)
        .and_then(|b64| backends::digest::base64_decode(b64))
        .is_some_and(|raw| backends::digest::hex(&raw) == expected_hex)
}

fn verify_trailer(trailer: &Trailer, digester: Digester) -> Result<(), BodyError> {
    let name = trailer.header_name();
    let algo = trailer.algorithm.s3_name();
    let sent = trailer.value(&name).ok_or(BodyError::MissingTrailer(algo))?;
    let computed = digester.finish();
    if computed.checksums.get(&trailer.algorithm) == Some(&sent) {
        Ok(())
    } else {
        Err(BodyError::TrailerMismatch(algo))
    }
}

/// A store body as an s3s response body.
pub fn response_body(body: ByteStream) -> StreamingBlob {
    StreamingBlob::wrap(body)
}
