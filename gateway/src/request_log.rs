//! What the per-request log line says a request did, without naming what it did it to: the
//! method, whether it addressed the service, a bucket or an object, and which S3 subresource
//! (by parameter name, never a value). Path-style addressing is assumed; a virtual-hosted
//! request's object reads as a bucket here, which is as much as the line needs.

use std::fmt;

use http::Method;

/// Query parameters that name an S3 subresource or operation; anything else is left out.
const SUBRESOURCES: [&str; 16] = [
    "acl",
    "attributes",
    "cors",
    "delete",
    "lifecycle",
    "list-type",
    "location",
    "partNumber",
    "policy",
    "tagging",
    "uploadId",
    "uploads",
    "versioning",
    "versions",
    "X-Amz-Signature",
    "Signature",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    method: Method,
    target: &'static str,
    subresources: Vec<&'static str>,
}

impl Operation {
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> Self {
        let segments = path.trim_matches('/').splitn(2, '/').filter(|s| !s.is_empty()).count();
        let target = match segments {
            0 => "service",
            1 => "bucket",
            _ => "object",
        };
        let mut subresources: Vec<&'static str> = query
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                SUBRESOURCES.iter().copied().find(|s| *s == name)
            })
            .map(|s| {
                if s == "X-Amz-Signature" || s == "Signature" {
                    "presigned"
                } else {
                    s
                }
            })
            .collect();
        subresources.sort_unstable();
        subresources.dedup();
        Self {
            method: method.clone(),
            target,
            subresources,
        }
    }
}

impl Operation {
    /// A short name from a bounded set, for a metrics label: the method (unusual ones as
    /// `OTHER`), the target and the first subresource, so that no client can grow the number of
    /// time series by what it sends.
    pub fn label(&self) -> String {
        let method = self.method_name();
        match self.subresources.first() {
            Some(sub) => format!("{method} {}?{sub}", self.target),
            None => format!("{method} {}", self.target),
        }
    }
}

impl Operation {
    /// The method, with any but S3's own as `OTHER`: a client chooses it, and the log and the
    /// metrics should not say what it likes.
    fn method_name(&self) -> &str {
        match self.method.as_str() {
            m @ ("GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "OPTIONS") => m,
            _ => "OTHER",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method_name(), self.target)?;
        for (i, s) in self.subresources.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            f.write_str(s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kind_of_request_never_its_target() {
        let op = |m: Method, p: &str, q: Option<&str>| Operation::of(&m, p, q).to_string();
        assert_eq!(op(Method::GET, "/", None), "GET service");
        assert_eq!(op(Method::PUT, "/photos", None), "PUT bucket");
        assert_eq!(
            op(Method::GET, "/photos/", Some("list-type=2&prefix=secret%2F")),
            "GET bucket?list-type"
        );
        assert_eq!(
            op(Method::PUT, "/photos/a/b.jpg", Some("partNumber=3&uploadId=xyz")),
            "PUT object?partNumber&uploadId"
        );
        assert_eq!(
            op(
                Method::GET,
                "/photos/k",
                Some("X-Amz-Signature=abc&X-Amz-Credential=key")
            ),
            "GET object?presigned"
        );
        let line = op(Method::POST, "/private-bucket/private-key", Some("uploads&secret=1"));
        assert!(!line.contains("private") && !line.contains("secret"), "{line}");
    }
}
