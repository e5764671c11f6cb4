//! POST-object form uploads, as a web client sends them from a presigned POST policy.

mod common;

use common::raw::{form_data, post_policy_signature, send};
use common::{ACCESS_KEY, SECRET_KEY, start, status};

const BOUNDARY: &str = "----havenformboundary7MA4YWxkTrZu0gW";

struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// A signed form for `bucket` allowing keys under `prefix`, expiring in `ttl_secs`.
    fn signed(bucket: &str, prefix: &str, max_len: u64, ttl_secs: i64, secret: &str) -> Self {
        Self::signed_with(bucket, prefix, max_len, ttl_secs, secret, "")
    }

    /// As [`Form::signed`], with `conditions` (JSON, each followed by a comma) added.
    fn signed_with(bucket: &str, prefix: &str, max_len: u64, ttl_secs: i64, secret: &str, conditions: &str) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let amz_date = now
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap();
        let date = amz_date[..8].to_string();
        let expiration = (now + time::Duration::seconds(ttl_secs))
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].000Z"
            ))
            .unwrap();
        let credential = format!("{ACCESS_KEY}/{date}/us-east-1/s3/aws4_request");
        let policy = format!(
            r#"{{"expiration":"{expiration}","conditions":[{conditions}{{"bucket":"{bucket}"}},["starts-with","$key","{prefix}"],["content-length-range",1,{max_len}],{{"x-amz-algorithm":"AWS4-HMAC-SHA256"}},{{"x-amz-credential":"{credential}"}},{{"x-amz-date":"{amz_date}"}}]}}"#
        );
        let policy = backends::digest::base64(policy.as_bytes());
        let signature = post_policy_signature(&policy, &date, secret);
        let fields = [
            ("x-amz-algorithm", "AWS4-HMAC-SHA256".to_string()),
            ("x-amz-credential", credential),
            ("x-amz-date", amz_date),
            ("policy", policy),
            ("x-amz-signature", signature),
        ];
        Self {
            fields: fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    async fn post(&self, r: &common::TestRelay, bucket: &str, key: &str, file: &[u8]) -> (u16, String) {
        self.post_with(r, bucket, key, &[], file).await
    }

    /// Posts the form with `extra` fields, which its policy must name.
    async fn post_with(
        &self,
        r: &common::TestRelay,
        bucket: &str,
        key: &str,
        extra: &[(&str, &str)],
        file: &[u8],
    ) -> (u16, String) {
        let mut fields: Vec<(&str, &str)> = vec![("key", key)];
        fields.extend(extra);
        fields.extend(self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = form_data(BOUNDARY, &fields, file);
        let headers = vec![
            ("host".to_string(), r.addr.to_string()),
            (
                "content-type".to_string(),
                format!("multipart/form-data; boundary={BOUNDARY}"),
            ),
            ("content-length".to_string(), body.len().to_string()),
        ];
        send(r.addr, &format!("POST /{bucket} HTTP/1.1"), &headers, &body).await
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    let mut d = backends::digest::Digester::new(&[]);
    d.update(bytes);
    hex_simd::encode_to_string(d.finish().md5, hex_simd::AsciiCase::Lower)
}

/// Posts `file` under `key` with one success action field, which the form's policy names.
async fn post_with_action(
    r: &common::TestRelay,
    bucket: &str,
    key: &str,
    (field, value): (&str, &str),
    file: &[u8],
) -> (u16, String) {
    let condition = format!(r#"{{"{field}":"{value}"}},"#);
    let form = Form::signed_with(bucket, "in/", 1 << 20, 300, SECRET_KEY, &condition);
    form.post_with(r, bucket, key, &[(field, value)], file).await
}

#[tokio::test]
async fn post_form_upload_stores_the_file_with_its_md5_etag() {
    let r = start().await;
    let b = r.bucket("web-uploads").await;
    let file = common::blob(70_000, 11);
    let form = Form::signed(&b, "inbox/", 1 << 20, 300, SECRET_KEY);
    let (st, text) = form.post(&r, &b, "inbox/sealed-1", &file).await;
    assert_eq!(st, 204, "{text}");
    assert_eq!(r.get(&b, "inbox/sealed-1").await, file);
    let head = r
        .client
        .head_object()
        .bucket(&b)
        .key("inbox/sealed-1")
        .send()
        .await
        .unwrap();
    let md5 = md5_hex(&file);
    assert_eq!(head.e_tag(), Some(format!("\"{md5}\"").as_str()));
}

#[tokio::test]
async fn post_form_outside_its_policy_is_refused_and_writes_nothing() {
    let r = start().await;
    let b = r.bucket("web-policy").await;
    let file = common::blob(5_000, 12);

    let forged = Form::signed(&b, "inbox/", 1 << 20, 300, "not-the-secret-key-at-all-000000000000");
    let (st, text) = forged.post(&r, &b, "inbox/forged", &file).await;
    assert_eq!(st, 403, "forged signature: {text}");

    let form = Form::signed(&b, "inbox/", 1 << 20, 300, SECRET_KEY);
    let (st, text) = form.post(&r, &b, "elsewhere/k", &file).await;
    assert_eq!(st, 403, "key outside the policy prefix: {text}");
    assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
    assert!(
        text.contains("Invalid according to Policy: Policy Condition failed"),
        "{text}"
    );

    // A form signed for another bucket is refused here too, as AWS refuses it.
    let other = r.bucket("web-policy-other").await;
    let (st, text) = form.post(&r, &other, "inbox/misrouted", &file).await;
    assert_eq!(st, 403, "form for another bucket: {text}");
    assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
    let listed = r.client.list_objects_v2().bucket(&other).send().await.unwrap();
    assert_eq!(
        listed.key_count(),
        Some(0),
        "nothing written in the bucket the form did not name"
    );

    let small = Form::signed(&b, "inbox/", 1000, 300, SECRET_KEY);
    let (st, text) = small.post(&r, &b, "inbox/too-big", &file).await;
    assert_eq!(st, 400, "content-length-range exceeded: {text}");

    let expired = Form::signed(&b, "inbox/", 1 << 20, -60, SECRET_KEY);
    let (st, text) = expired.post(&r, &b, "inbox/late", &file).await;
    assert_eq!(st, 403, "expired policy: {text}");

    let listed = r.client.list_objects_v2().bucket(&b).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "nothing was written");
    let err = r
        .client
        .head_object()
        .bucket(&b)
        .key("inbox/forged")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 404);
}

#[tokio::test]
async fn post_form_success_actions_answer_as_aws() {
    let r = start().await;
    let b = r.bucket("web-actions").await;
    let file = common::blob(3_000, 13);
    let md5 = md5_hex(&file);

    let (st, text) = post_with_action(&r, &b, "in/created", ("success_action_status", "201"), &file).await;
    assert_eq!(st, 201, "{text}");
    assert!(text.contains("<Key>in/created</Key>"), "{text}");
    assert!(text.contains(&format!("<ETag>&quot;{md5}&quot;</ETag>")), "{text}");

    let (st, text) = post_with_action(&r, &b, "in/ok", ("success_action_status", "200"), &file).await;
    assert_eq!(st, 200, "{text}");
    assert!(
        text.ends_with("\r\n\r\n") || !text.contains("<"),
        "200 has no body: {text}"
    );

    let redirect = "https://app.example/uploaded";
    let (st, text) = post_with_action(&r, &b, "in/redirected", ("success_action_redirect", redirect), &file).await;
    assert_eq!(st, 303, "{text}");
    let location = format!("location: {redirect}?bucket={b}&key=in%2Fredirected&etag=%22{md5}%22");
    assert!(
        text.to_ascii_lowercase().contains(&location.to_ascii_lowercase()),
        "{location} in {text}"
    );

    for key in ["in/created", "in/ok", "in/redirected"] {
        assert_eq!(r.get(&b, key).await, file, "{key}");
    }
}
