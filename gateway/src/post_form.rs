//! Browser-form uploads (POST object): AWS's answers where s3s gives others.
//!
//! Web apps and the conformance suites read the status, so these follow AWS:
//! - A policy condition that fails (a key outside `starts-with`, a form for another bucket)
//!   is 403 AccessDenied, "Invalid according to Policy: Policy Condition failed: …";
//!   s3s answers 400 InvalidPolicyDocument, which AWS keeps for a policy it cannot read.
//! - `success_action_status=201` returns a `PostResponse` whose ETag is quoted, as in every
//!   other S3 answer, and `success_action_redirect` passes `etag="…"` on; s3s leaves the
//!   quotes off both.

use http::{HeaderValue, Method, Response, StatusCode};
use s3s::Body;

/// s3s's message for a condition that does not hold, and for a `bucket` field that names
/// another bucket than the URL.
const FAILED_CONDITION: &[&str] = &["Policy condition ", "Bucket in form field "];

/// Rewrites s3s's answer to a form upload into AWS's, where they differ.
pub fn as_aws(method: &Method, res: &mut Response<Body>) {
    if method != Method::POST {
        return;
    }
    match res.status() {
        StatusCode::BAD_REQUEST => deny_failed_condition(res),
        StatusCode::CREATED => quote_etag(res),
        StatusCode::SEE_OTHER => quote_redirect_etag(res),
        _ => {}
    }
}

fn deny_failed_condition(res: &mut Response<Body>) {
    let Some(xml) = body_text(res) else { return };
    if !xml.contains("<Code>InvalidPolicyDocument</Code>") {
        return;
    }
    let Some(message) = between(&xml, "<Message>", "</Message>") else {
        return;
    };
    if !FAILED_CONDITION.iter().any(|start| message.starts_with(start)) {
        return;
    }
    let replaced = xml
        .replace("<Code>InvalidPolicyDocument</Code>", "<Code>AccessDenied</Code>")
        .replace(
            &format!("<Message>{message}</Message>"),
            &format!("<Message>Invalid according to Policy: Policy Condition failed: {message}</Message>"),
        );
    *res.status_mut() = StatusCode::FORBIDDEN;
    set_body(res, replaced);
}

fn quote_etag(res: &mut Response<Body>) {
    let Some(xml) = body_text(res) else { return };
    if !xml.contains("<PostResponse>") {
        return;
    }
    let Some(etag) = between(&xml, "<ETag>", "</ETag>") else {
        return;
    };
    if etag.starts_with("&quot;") || etag.starts_with('"') {
        return;
    }
    let quoted = xml.replace(
        &format!("<ETag>{etag}</ETag>"),
        &format!("<ETag>&quot;{etag}&quot;</ETag>"),
    );
    set_body(res, quoted);
}

fn quote_redirect_etag(res: &mut Response<Body>) {
    let Some(location) = res.headers().get(http::header::LOCATION).and_then(|l| l.to_str().ok()) else {
        return;
    };
    let Some(at) = location.rfind("&etag=").map(|i| i + "&etag=".len()) else {
        return;
    };
    let etag = &location[at..];
    if etag.is_empty() || etag.starts_with("%22") || etag.contains('&') {
        return;
    }
    let quoted = format!("{}%22{etag}%22", &location[..at]);
    if let Ok(value) = HeaderValue::from_str(&quoted) {
        res.headers_mut().insert(http::header::LOCATION, value);
    }
}

fn body_text(res: &Response<Body>) -> Option<String> {
    let bytes = res.body().bytes()?;
    String::from_utf8(bytes.to_vec()).ok()
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = start + text[start..].find(close)?;
    Some(&text[start..end])
}

fn set_body(res: &mut Response<Body>, text: String) {
    let length = text.len();
    *res.body_mut() = Body::from(text);
    if res.headers().contains_key(http::header::CONTENT_LENGTH) {
        res.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: StatusCode, xml: &str) -> Response<Body> {
        let mut res = Response::new(Body::from(xml.to_owned()));
        *res.status_mut() = status;
        res
    }

    fn text(res: &Response<Body>) -> String {
        body_text(res).unwrap()
    }

    #[test]
    fn a_failed_condition_is_access_denied() {
        let mut res = answer(
            StatusCode::BAD_REQUEST,
            "<Error><Code>InvalidPolicyDocument</Code><Message>Policy condition 'eq' for field 'bucket' failed</Message></Error>",
        );
        as_aws(&Method::POST, &mut res);
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(text(&res).contains("<Code>AccessDenied</Code>"));
        assert!(text(&res).contains("Invalid according to Policy: Policy Condition failed: Policy condition 'eq'"));
    }

    #[test]
    fn an_unreadable_policy_stays_a_bad_request() {
        let xml = "<Error><Code>InvalidPolicyDocument</Code><Message>failed to parse POST policy</Message></Error>";
        let mut res = answer(StatusCode::BAD_REQUEST, xml);
        as_aws(&Method::POST, &mut res);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(text(&res), xml);
    }

    #[test]
    fn the_redirect_passes_a_quoted_etag() {
        let mut res = answer(StatusCode::SEE_OTHER, "");
        res.headers_mut().insert(
            http::header::LOCATION,
            HeaderValue::from_static("http://app.example/done?bucket=b&key=k&etag=abc"),
        );
        as_aws(&Method::POST, &mut res);
        assert_eq!(
            res.headers()[http::header::LOCATION],
            "http://app.example/done?bucket=b&key=k&etag=%22abc%22"
        );
    }

    #[test]
    fn the_post_response_etag_is_quoted_once() {
        let mut res = answer(
            StatusCode::CREATED,
            "<PostResponse><Location>/b/k</Location><Bucket>b</Bucket><Key>k</Key><ETag>abc</ETag></PostResponse>",
        );
        as_aws(&Method::POST, &mut res);
        assert!(text(&res).contains("<ETag>&quot;abc&quot;</ETag>"));
        as_aws(&Method::POST, &mut res);
        assert!(text(&res).contains("<ETag>&quot;abc&quot;</ETag>"));
    }
}
