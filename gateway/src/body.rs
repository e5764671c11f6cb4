//! Request bodies on their way to the store: capped, and their trailing checksums verified.
//!
//! s3s decodes aws-chunked framing and checks chunk signatures, but it only *parses* the
//! trailer (`x-amz-checksum-crc32: ...` after the last chunk). We hash the decoded bytes and
//! compare with the trailer before the stream ends, so a mismatch fails the stream and the store
//! never commits the object.

use std::io;

use backends::digest::Digester;
use backends::{ByteStream, ChecksumAlgorithm};
use futures::{StreamExt, stream};
use s3s::TrailingHeaders;
use s3s::dto::StreamingBlob;

use crate::error::BodyError;

/// The trailer a request announced with `x-amz-trailer`.
pub struct Trailer {
    pub algorithm: ChecksumAlgorithm,
    pub headers: TrailingHeaders,
}

impl Trailer {
    /// The trailer announced by the request, if it is a checksum we know.
    pub fn from_request(headers: &http::HeaderMap, trailing: Option<TrailingHeaders>) -> Option<Trailer> {
        let name = headers.get("x-amz-trailer")?.to_str().ok()?.trim().to_ascii_lowercase();
        let algorithm = ChecksumAlgorithm::from_s3_name(name.strip_prefix("x-amz-checksum-")?)?;
        Some(Trailer {
            algorithm,
            headers: trailing?,
        })
    }

    fn header_name(&self) -> String {
        format!("x-amz-checksum-{}", self.algorithm.s3_name().to_ascii_lowercase())
    }
}

/// Turns an s3s body into a store body, enforcing `limit` and the trailer checksum.
pub fn request_body(blob: Option<StreamingBlob>, limit: u64, trailer: Option<Trailer>) -> ByteStream {
    let Some(blob) = blob else {
        return Box::pin(stream::empty());
    };
    struct State {
        blob: StreamingBlob,
        seen: u64,
        limit: u64,
        trailer: Option<(Trailer, Digester)>,
        done: bool,
    }
    let state = State {
        blob,
        seen: 0,
        limit,
        trailer: trailer.map(|t| {
            let d = Digester::new(&[t.algorithm]);
            (t, d)
        }),
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
                if let Some((_, digester)) = &mut st.trailer {
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
                let (trailer, digester) = st.trailer.take()?;
                match verify_trailer(&trailer, digester) {
                    Ok(()) => None,
                    Err(e) => Some((Err(io::Error::other(e)), st)),
                }
            }
        }
    }))
}

fn verify_trailer(trailer: &Trailer, digester: Digester) -> Result<(), BodyError> {
    let name = trailer.header_name();
    let algo = trailer.algorithm.s3_name();
    let sent = trailer
        .headers
        .read(|h| h.get(name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned))
        .flatten()
        .ok_or(BodyError::MissingTrailer(algo))?;
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
