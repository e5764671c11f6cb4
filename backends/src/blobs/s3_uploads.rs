//! The multipart uploads OpenDAL's S3 writer leaves behind when the relay dies mid-write.
//!
//! A blob larger than one part is written as an S3 multipart upload. If the relay is killed
//! before it completes or aborts it, the parts stay in the bucket: invisible to listings,
//! but stored (and billed, on most providers) until someone aborts the upload. OpenDAL has
//! no call to list uploads, so this speaks the two S3 requests it needs itself
//! (ListMultipartUploads, AbortMultipartUpload), signed with the same SigV4 signer OpenDAL
//! uses.

use std::time::Duration;

use reqsign_aws_v4::{Credential, RequestSigner, StaticCredentialProvider};
use reqsign_core::{Context, Signer};

use super::s3::S3Settings;
use crate::error::{Result, Setup, StoreError, Unavailable};

/// An upload this backend holds that nobody completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The blob path it was writing, relative to the backend root.
    pub path: String,
    pub upload_id: String,
}

pub(super) struct UploadJanitor {
    http: reqwest::Client,
    signer: Signer<Credential>,
    /// `https://endpoint/bucket` or `https://bucket.endpoint`: what object keys follow.
    bucket_url: String,
    /// The backend's folder in the bucket, `""` or ending in `/`.
    root: String,
}

impl UploadJanitor {
    pub fn new(settings: &S3Settings) -> Result<Self> {
        let endpoint = settings.endpoint.trim_end_matches('/');
        let bucket_url = if settings.path_style {
            format!("{endpoint}/{}", settings.bucket)
        } else {
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            format!("{scheme}://{}.{host}", settings.bucket)
        };
        let root = settings.root.trim_matches('/');
        let root = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };
        let http = reqwest::Client::builder()
            .timeout(settings.timeout.max(Duration::from_secs(1)))
            .build()
            .map_err(|e| Setup::S3Settings(e.to_string()))?;
        let region = if settings.region.is_empty() {
            "auto"
        } else {
            &settings.region
        };
        let signer = Signer::new(
            Context::new(),
            StaticCredentialProvider::new(&settings.access_key_id, &settings.secret_access_key),
            RequestSigner::new("s3", region),
        );
        Ok(Self {
            http,
            signer,
            bucket_url,
            root,
        })
    }

    /// Every upload in progress under `prefix` (relative to the root), following pages.
    pub async fn list(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        let full_prefix = format!("{}{prefix}", self.root);
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = format!("uploads=&prefix={}", encode(&full_prefix));
            if let Some((key, id)) = &markers {
                query.push_str(&format!("&key-marker={}&upload-id-marker={}", encode(key), encode(id)));
            }
            let body = self
                .send(http::Method::GET, &format!("{}/?{query}", self.bucket_url))
                .await?;
            for upload in elements(&body, "Upload") {
                let (Some(key), Some(upload_id)) = (element(upload, "Key"), element(upload, "UploadId")) else {
                    continue;
                };
                if let Some(path) = key.strip_prefix(&self.root) {
                    out.push(PendingUpload {
                        path: path.to_owned(),
                        upload_id,
                    });
                }
            }
            let truncated = element(&body, "IsTruncated").is_some_and(|t| t == "true");
            let next = (element(&body, "NextKeyMarker"), element(&body, "NextUploadIdMarker"));
            match next {
                (Some(key), Some(id)) if truncated && markers.as_ref() != Some(&(key.clone(), id.clone())) => {
                    markers = Some((key, id));
                }
                _ => return Ok(out),
            }
        }
    }

    /// Aborts one upload; one already gone counts as aborted.
    pub async fn abort(&self, upload: &PendingUpload) -> Result<()> {
        let url = format!(
            "{}/{}?uploadId={}",
            self.bucket_url,
            encode_path(&format!("{}{}", self.root, upload.path)),
            encode(&upload.upload_id)
        );
        match self.send(http::Method::DELETE, &url).await {
            Err(StoreError::NoSuchKey) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn send(&self, method: http::Method, url: &str) -> Result<String> {
        let unavailable = |e: &dyn std::fmt::Display| StoreError::from(Unavailable::Remote(e.to_string()));
        let (mut parts, ()) = http::Request::builder()
            .method(method)
            .uri(url)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .body(())
            .map_err(|e| Setup::S3Settings(e.to_string()))?
            .into_parts();
        self.signer.sign(&mut parts, None).await.map_err(|e| unavailable(&e))?;
        let response = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| unavailable(&e))?;
        match status.as_u16() {
            200..=299 => Ok(body),
            404 => Err(StoreError::NoSuchKey),
            status => Err(Unavailable::Status {
                status,
                code: element(&body, "Code").unwrap_or_default(),
            }
            .into()),
        }
    }
}

/// The text of each `<name>…</name>` in `xml`. The answers parsed here are flat and small;
/// a full XML parser would add nothing.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

/// The first `<name>` in `xml`, unescaped.
fn element(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).first().map(|text| {
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes an object key for the path, keeping its slashes.
fn encode_path(key: &str) -> String {
    key.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_answers_parse_including_escapes_and_pages() {
        let xml = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>\
            <NextKeyMarker>r/blobs/ab/ab1</NextKeyMarker><NextUploadIdMarker>u&amp;2</NextUploadIdMarker>\
            <Upload><Key>r/blobs/ab/ab1</Key><UploadId>u&amp;1</UploadId></Upload>\
            <Upload><Key>r/blobs/cd/cd2</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>";
        let keys: Vec<_> = elements(xml, "Upload")
            .iter()
            .map(|u| element(u, "Key").unwrap())
            .collect();
        assert_eq!(keys, ["r/blobs/ab/ab1", "r/blobs/cd/cd2"]);
        assert_eq!(element(xml, "NextUploadIdMarker").as_deref(), Some("u&2"));
        assert_eq!(element(xml, "Missing"), None);
        assert_eq!(encode("a b/c~"), "a%20b%2Fc~");
        assert_eq!(encode_path("r/blobs/a b"), "r/blobs/a%20b");
    }
}
