//! Bucket CORS rules, so a browser app can talk to the relay directly.
//!
//! s3s parses the rule documents; the rules themselves are stored as a small JSON bucket
//! document and applied by the HTTP frontend (preflight `OPTIONS` and the response headers).

use std::sync::Arc;

use backends::Store;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use crate::Gateway;
use crate::error::to_s3;

const DOC: &str = "cors";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub max_age: Option<i32>,
    #[serde(default)]
    pub id: Option<String>,
}

/// `*` matches anything; one `*` inside a pattern matches any run of characters.
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(value),
        Some((pre, post)) => {
            value.len() >= pre.len() + post.len()
                && value[..pre.len()].eq_ignore_ascii_case(pre)
                && value[value.len() - post.len()..].eq_ignore_ascii_case(post)
        }
    }
}

impl Rule {
    fn allows(&self, origin: &str, method: &str, headers: &[&str]) -> bool {
        self.origins.iter().any(|o| wildcard(o, origin))
            && self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && headers.iter().all(|h| self.headers.iter().any(|p| wildcard(p, h)))
    }
}

pub async fn put(gw: &Gateway, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    let rules: Vec<Rule> = input
        .cors_configuration
        .cors_rules
        .into_iter()
        .map(|r| Rule {
            origins: r.allowed_origins,
            methods: r.allowed_methods,
            headers: r.allowed_headers.unwrap_or_default(),
            expose: r.expose_headers.unwrap_or_default(),
            max_age: r.max_age_seconds,
            id: r.id,
        })
        .collect();
    const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];
    if rules
        .iter()
        .flat_map(|r| &r.methods)
        .any(|m| !METHODS.contains(&m.as_str()))
    {
        return Err(s3_error!(
            InvalidRequest,
            "CORS methods must be GET, PUT, POST, DELETE or HEAD"
        ));
    }
    let doc = serde_json::to_vec(&rules).map_err(|_| crate::error::aws(s3s::S3ErrorCode::InternalError))?;
    gw.store
        .put_bucket_doc(&input.bucket, DOC, Some(Bytes::from(doc)))
        .await
        .map_err(to_s3)?;
    Ok(S3Response::new(PutBucketCorsOutput::default()))
}

pub async fn get(gw: &Gateway, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let rules = load(gw.store.as_ref(), &req.input.bucket).await.map_err(to_s3)?;
    let Some(rules) = rules else {
        return Err(crate::error::aws(s3s::S3ErrorCode::NoSuchCORSConfiguration));
    };
    let cors_rules = rules
        .into_iter()
        .map(|r| CORSRule {
            allowed_origins: r.origins,
            allowed_methods: r.methods,
            allowed_headers: (!r.headers.is_empty()).then_some(r.headers),
            expose_headers: (!r.expose.is_empty()).then_some(r.expose),
            max_age_seconds: r.max_age,
            id: r.id,
        })
        .collect();
    Ok(S3Response::new(GetBucketCorsOutput {
        cors_rules: Some(cors_rules),
    }))
}

pub async fn delete(
    gw: &Gateway,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    gw.store
        .put_bucket_doc(&req.input.bucket, DOC, None)
        .await
        .map_err(to_s3)?;
    Ok(S3Response::with_status(
        DeleteBucketCorsOutput::default(),
        hyper::StatusCode::NO_CONTENT,
    ))
}

async fn load(store: &dyn Store, bucket: &str) -> backends::Result<Option<Vec<Rule>>> {
    let Some(doc) = store.get_bucket_doc(bucket, DOC).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&doc).ok())
}

/// The bucket a path-style request addresses.
fn bucket_of(path: &str) -> Option<&str> {
    path.trim_start_matches('/').split('/').next().filter(|b| !b.is_empty())
}

/// Applies a bucket's CORS rules at the HTTP edge.
#[derive(Clone)]
pub struct CorsPolicy {
    store: Arc<dyn Store>,
}

pub enum Preflight {
    Allowed(HeaderMap),
    Denied,
}

impl CorsPolicy {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    async fn rules(&self, path: &str) -> Vec<Rule> {
        let Some(bucket) = bucket_of(path) else {
            return Vec::new();
        };
        load(self.store.as_ref(), bucket)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Answers a browser's `OPTIONS` preflight.
    pub async fn preflight(&self, path: &str, headers: &HeaderMap) -> Preflight {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(origin), Some(method)) = (get("origin"), get("access-control-request-method")) else {
            return Preflight::Denied;
        };
        let requested: Vec<&str> = get("access-control-request-headers")
            .map(|h| h.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let rules = self.rules(path).await;
        let Some(rule) = rules.iter().find(|r| r.allows(origin, method, &requested)) else {
            return Preflight::Denied;
        };
        let mut out = HeaderMap::new();
        let wildcard_origin = rule.origins.iter().any(|o| o == "*");
        insert(
            &mut out,
            "access-control-allow-origin",
            if wildcard_origin { "*" } else { origin },
        );
        insert(&mut out, "access-control-allow-methods", &rule.methods.join(", "));
        if !requested.is_empty() {
            insert(&mut out, "access-control-allow-headers", &requested.join(", "));
        }
        if !rule.expose.is_empty() {
            insert(&mut out, "access-control-expose-headers", &rule.expose.join(", "));
        }
        if let Some(age) = rule.max_age {
            insert(&mut out, "access-control-max-age", &age.to_string());
        }
        insert(
            &mut out,
            "vary",
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
        );
        Preflight::Allowed(out)
    }

    /// Headers for an actual (non-preflight) cross-origin request, if a rule allows it.
    pub async fn response_headers(&self, path: &str, method: &Method, headers: &HeaderMap) -> Option<HeaderMap> {
        let origin = headers.get("origin")?.to_str().ok()?;
        let rules = self.rules(path).await;
        let rule = rules.iter().find(|r| r.allows(origin, method.as_str(), &[]))?;
        let mut out = HeaderMap::new();
        let wildcard_origin = rule.origins.iter().any(|o| o == "*");
        insert(
            &mut out,
            "access-control-allow-origin",
            if wildcard_origin { "*" } else { origin },
        );
        if !rule.expose.is_empty() {
            insert(&mut out, "access-control-expose-headers", &rule.expose.join(", "));
        }
        insert(&mut out, "vary", "Origin");
        Some(out)
    }
}

fn insert(map: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        map.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_s3() {
        assert!(wildcard("*", "https://app.example"));
        assert!(wildcard("https://*.example.com", "https://a.example.com"));
        assert!(!wildcard("https://*.example.com", "https://example.org"));
        assert!(wildcard("x-amz-*", "X-Amz-Date"));
        assert!(!wildcard("content-type", "content-length"));
    }
}
