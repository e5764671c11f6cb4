//! Request ids: every answer carries `x-amz-request-id` and `x-amz-id-2`, and an error's XML
//! names the same ids, as S3 does. SDKs print them with every error, so a person asking for
//! help can point at the relay's log line, which carries the id too. They are random and say
//! nothing about the request.

use http::{HeaderValue, Response};
use s3s::Body;

/// Ids for one request: 16 hex digits, and a longer host id for `x-amz-id-2`.
pub struct RequestId {
    pub id: String,
    host_id: String,
}

impl RequestId {
    pub fn new() -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string().to_ascii_uppercase();
        Self {
            id: random[..16].to_owned(),
            host_id: random,
        }
    }

    /// Adds the ids to `res`: as headers always, and into an S3 error document.
    pub fn stamp(&self, res: &mut Response<Body>) {
        let headers = res.headers_mut();
        if let Ok(id) = HeaderValue::from_str(&self.id) {
            headers.insert("x-amz-request-id", id);
        }
        if let Ok(host) = HeaderValue::from_str(&self.host_id) {
            headers.insert("x-amz-id-2", host);
        }
        if !res.status().is_client_error() && !res.status().is_server_error() {
            return;
        }
        let Some(body) = res.body().bytes() else { return };
        let Ok(xml) = std::str::from_utf8(&body) else { return };
        if xml.contains("<RequestId>") {
            return;
        }
        let Some(end) = xml.rfind("</Error>") else { return };
        // Errors s3s makes itself may lack a message; clients then print "Unknown".
        let message = if xml.contains("<Message>") {
            None
        } else {
            code_of(xml).and_then(|code| crate::error::aws_message(&s3s::S3ErrorCode::from_bytes(code.as_bytes())?))
        };
        let stamped = format!(
            "{}{}<RequestId>{}</RequestId><HostId>{}</HostId>{}",
            &xml[..end],
            message.map(|m| format!("<Message>{m}</Message>")).unwrap_or_default(),
            self.id,
            self.host_id,
            &xml[end..]
        );
        let length = stamped.len();
        *res.body_mut() = Body::from(stamped);
        if res.headers().contains_key(http::header::CONTENT_LENGTH) {
            res.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
}

fn code_of(xml: &str) -> Option<&str> {
    let start = xml.find("<Code>")? + "<Code>".len();
    let end = start + xml[start..].find("</Code>")?;
    Some(&xml[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_document_names_the_id_of_its_headers() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>";
        let mut res = Response::new(Body::from(xml.to_owned()));
        *res.status_mut() = http::StatusCode::NOT_FOUND;
        res.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(xml.len()));
        let ids = RequestId::new();
        ids.stamp(&mut res);
        let body = String::from_utf8(res.body().bytes().unwrap().to_vec()).unwrap();
        assert_eq!(res.headers()["x-amz-request-id"], ids.id.as_str());
        assert!(body.contains(&format!("<RequestId>{}</RequestId>", ids.id)), "{body}");
        assert!(body.ends_with("</HostId></Error>"), "{body}");
        assert_eq!(
            res.headers()[http::header::CONTENT_LENGTH],
            body.len().to_string().as_str()
        );

        let bare = "<Error><Code>InvalidBucketName</Code></Error>";
        let mut res = Response::new(Body::from(bare.to_owned()));
        *res.status_mut() = http::StatusCode::BAD_REQUEST;
        ids.stamp(&mut res);
        let body = String::from_utf8(res.body().bytes().unwrap().to_vec()).unwrap();
        assert!(
            body.contains("<Message>The specified bucket is not valid.</Message>"),
            "{body}"
        );

        let mut ok = Response::new(Body::from("<ListBucketResult/>".to_owned()));
        ids.stamp(&mut ok);
        assert_eq!(ok.body().bytes().unwrap(), "<ListBucketResult/>");
        assert!(ok.headers().contains_key("x-amz-id-2"));
    }
}
