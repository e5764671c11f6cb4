//! A lean SigV4 S3 client for the benchmark.
//!
//! The three servers share two cores with the client, so the client must cost as little as
//! possible per request: header auth with `UNSIGNED-PAYLOAD` (no client-side hashing of
//! bodies), a pooled hyper connection per worker, TCP_NODELAY, and bodies streamed to
//! nowhere on GET. Every server sees exactly the same requests.

use std::net::SocketAddr;

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client as HyperClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

pub use crate::common::Error;

#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
}

impl Client {
    pub fn new(addr: SocketAddr, access_key: &str, secret_key: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Self {
            http,
            addr,
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<(), Error> {
        let (status, body) = self.send(Method::PUT, &format!("/{bucket}"), &[], Bytes::new()).await?;
        // Re-running against a kept server finds the bucket already there.
        if status.is_success() || status == StatusCode::CONFLICT {
            return Ok(());
        }
        Err(format!("create bucket: {status} {body}").into())
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), Error> {
        let (status, text) = self.send(Method::PUT, &format!("/{bucket}/{key}"), &[], body).await?;
        expect_ok("put", status, &text)
    }

    /// Downloads an object, discarding the bytes as they arrive; returns how many there were.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<u64, Error> {
        let request = self.request(Method::GET, &format!("/{bucket}/{key}"), &[], Bytes::new())?;
        let response = self.http.request(request).await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                len += data.len() as u64;
            }
        }
        expect_ok("get", status, "")?;
        Ok(len)
    }

    /// Lists every key of a bucket with ListObjectsV2 pages of 1,000; returns the key count.
    pub async fn list_all(&self, bucket: &str) -> Result<usize, Error> {
        let mut token: Option<String> = None;
        let mut count = 0;
        loop {
            let mut query = vec![("list-type", "2".to_string()), ("max-keys", "1000".to_string())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let (status, text) = self
                .send(Method::GET, &format!("/{bucket}"), &query, Bytes::new())
                .await?;
            expect_ok("list", status, &text)?;
            count += text.matches("<Contents>").count();
            token = between(&text, "<NextContinuationToken>", "</NextContinuationToken>").map(unescape_xml);
            if token.is_none() {
                return Ok(count);
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Bytes,
    ) -> Result<(StatusCode, String), Error> {
        let response = self.http.request(self.request(method, path, query, body)?).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Uploads a body already framed as aws-chunked (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, as
    /// restic sends it) whose payload is `decoded_len` bytes. The chunk signatures are not
    /// real: this is for the tunnel, which does not check them.
    #[allow(dead_code)] // the tunnel bench's; the S3 bench shares this client
    pub async fn put_aws_chunked(
        &self,
        bucket: &str,
        key: &str,
        framed: Bytes,
        decoded_len: usize,
    ) -> Result<(), Error> {
        let mut request = self.request_with(
            Method::PUT,
            &format!("/{bucket}/{key}"),
            &[],
            framed,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        )?;
        let headers = request.headers_mut();
        headers.insert("x-amz-decoded-content-length", decoded_len.into());
        headers.insert("content-encoding", http::HeaderValue::from_static("aws-chunked"));
        let response = self.http.request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        expect_ok("put aws-chunked", status, &String::from_utf8_lossy(&bytes))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, Error> {
        self.request_with(method, path, query, body, "UNSIGNED-PAYLOAD")
    }

    fn request_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Bytes,
        payload: &str,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let mut pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (uri_encode(k), uri_encode(v))).collect();
        pairs.sort();
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let host = self.addr.to_string();
        let now = time::OffsetDateTime::now_utc();
        let amz_date = now.format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))?;
        let canonical = format!(
            "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\n\
             host;x-amz-content-sha256;x-amz-date\n{payload}"
        );
        let scope = format!("{}/us-east-1/s3/aws4_request", &amz_date[..8]);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret_key).as_bytes(), &amz_date[..8]);
        for part in ["us-east-1", "s3", "aws4_request"] {
            key = hmac(&key, part);
        }
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
            self.access_key,
            hex(&hmac(&key, &to_sign))
        );
        let uri = if query.is_empty() {
            format!("http://{host}{path}")
        } else {
            format!("http://{host}{path}?{query}")
        };
        Ok(Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .header("x-amz-content-sha256", payload)
            .header("x-amz-date", amz_date)
            .header("authorization", authorization)
            .header("content-length", body.len())
            .body(Full::new(body))?)
    }
}

fn expect_ok(what: &str, status: StatusCode, text: &str) -> Result<(), Error> {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{what}: {status} {text}").into())
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    hex_simd::encode_to_string(bytes, hex_simd::AsciiCase::Lower)
}

/// SigV4 query encoding: everything but the unreserved set is percent-encoded.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
