//! Browser POST uploads against the store alone: policies signed here with
//! the `aws-sigv4` crate (not latchkey's signer), forms built byte by byte,
//! and every condition checked the way S3 answers it.

use std::time::SystemTime;

use aws_sigv4::sign::v4;
use base64::Engine as _;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::common::{AK, BUCKET, SK, TestStore, sha256_b64, start};

const BOUNDARY: &str = "----latchkeyFormBoundary7MA4YWxkTrZu0gW";

struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// A signed form for `key`, `content_type` and exactly `size` bytes;
    /// `extra` adds exact-match conditions that are also fields.
    fn signed(key: &str, size: u64, extra: &[(&str, &str)], expires_in: time::Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self::signed_at(key, size, extra, now, now + expires_in)
    }

    fn signed_at(
        key: &str,
        size: u64,
        extra: &[(&str, &str)],
        now: OffsetDateTime,
        expiration: OffsetDateTime,
    ) -> Self {
        let date = format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let amz_date = format!(
            "{date}T{:02}{:02}{:02}Z",
            now.hour(),
            now.minute(),
            now.second()
        );
        let credential = format!("{AK}/{date}/us-east-1/s3/aws4_request");
        let mut fields: Vec<(String, String)> = vec![
            ("key".into(), key.into()),
            ("Content-Type".into(), "image/jpeg".into()),
        ];
        for (k, v) in extra {
            // A name already set (Content-Type) is replaced, not repeated.
            match fields.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
                Some((_, value)) => *value = (*v).into(),
                None => fields.push(((*k).into(), (*v).into())),
            }
        }
        fields.push(("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()));
        fields.push(("x-amz-credential".into(), credential));
        fields.push(("x-amz-date".into(), amz_date));
        let mut conditions: Vec<Value> = vec![json!({ "bucket": BUCKET })];
        for (k, v) in &fields {
            conditions.push(json!({ k.as_str(): v }));
        }
        conditions.push(json!(["content-length-range", size, size]));
        let expiration = expiration
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let policy = json!({ "expiration": expiration, "conditions": conditions });
        let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let key = v4::generate_signing_key(SK, SystemTime::from(now), "us-east-1", "s3");
        let signature = v4::calculate_signature(key, policy.as_bytes());
        fields.push(("policy".into(), policy));
        fields.push(("x-amz-signature".into(), signature));
        Self { fields }
    }

    fn set(&mut self, name: &str, value: &str) {
        for (k, v) in &mut self.fields {
            if k == name {
                *v = value.into();
            }
        }
    }

    fn body(&self, file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.fields {
            out.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(file);
        out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        out
    }
}

async fn post(store: &TestStore, form: &Form, file: &[u8]) -> (u16, String) {
    let res = store
        .http
        .post(format!("{}/{BUCKET}", store.handle.endpoint_url()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form.body(file))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

const MINUTE: time::Duration = time::Duration::minutes(1);

#[tokio::test]
async fn a_signed_form_stores_the_object_and_answers_201() {
    let store = start().await;
    let file = b"jpeg bytes".to_vec();
    let checksum = sha256_b64(&file);
    let form = Form::signed(
        "u/a/1.jpg",
        file.len() as u64,
        &[
            ("success_action_status", "201"),
            ("x-amz-meta-upload-id", "123"),
            ("x-amz-checksum-sha256", &checksum),
        ],
        MINUTE,
    );
    let (status, body) = post(&store, &form, &file).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("<PostResponse>"), "{body}");
    assert!(body.contains("<Key>u/a/1.jpg</Key>"), "{body}");
    let head = store
        .client
        .head_object()
        .bucket(BUCKET)
        .key("u/a/1.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(head.content_length(), Some(file.len() as i64));
    assert_eq!(
        head.metadata()
            .unwrap()
            .get("upload-id")
            .map(String::as_str),
        Some("123")
    );
    assert_eq!(store.events.take().len(), 1);
}

#[tokio::test]
async fn every_policy_violation_is_refused_like_s3() {
    let store = start().await;
    let file = b"jpeg bytes".to_vec();
    let size = file.len() as u64;
    let checksum = sha256_b64(&file);
    let fresh = || {
        Form::signed(
            "u/a/1.jpg",
            size,
            &[("x-amz-checksum-sha256", &checksum)],
            MINUTE,
        )
    };

    let mut cases: Vec<(&str, Form, Vec<u8>, u16, &str)> = Vec::new();
    let mut other_key = fresh();
    other_key.set("key", "u/b/1.jpg");
    cases.push(("other key", other_key, file.clone(), 403, "AccessDenied"));
    let mut other_type = fresh();
    other_type.set("Content-Type", "text/html");
    cases.push(("other type", other_type, file.clone(), 403, "AccessDenied"));
    let mut extra = fresh();
    extra
        .fields
        .insert(0, ("x-amz-meta-evil".into(), "1".into()));
    cases.push(("uncovered field", extra, file.clone(), 403, "AccessDenied"));
    let mut sse = fresh();
    sse.fields
        .insert(0, ("x-amz-server-side-encryption".into(), "AES256".into()));
    cases.push(("encryption field", sse, file.clone(), 403, "AccessDenied"));
    let mut longer = file.clone();
    longer.push(b'!');
    cases.push(("one byte more", fresh(), longer, 400, "EntityTooLarge"));
    cases.push((
        "one byte fewer",
        fresh(),
        file[1..].to_vec(),
        400,
        "EntityTooSmall",
    ));
    let mut flipped = file.clone();
    flipped[0] ^= 1;
    cases.push(("other bytes", fresh(), flipped, 400, "BadDigest"));
    let mut tampered = fresh();
    let sig = tampered
        .fields
        .iter()
        .find(|(k, _)| k == "x-amz-signature")
        .unwrap()
        .1
        .clone();
    let flip = if sig.starts_with('0') { "1" } else { "0" };
    tampered.set("x-amz-signature", &format!("{flip}{}", &sig[1..]));
    cases.push((
        "tampered signature",
        tampered,
        file.clone(),
        403,
        "SignatureDoesNotMatch",
    ));
    let now = OffsetDateTime::now_utc();
    let expired = Form::signed_at("u/a/1.jpg", size, &[], now - MINUTE * 2, now - MINUTE);
    cases.push(("expired", expired, file.clone(), 403, "AccessDenied"));
    let mut unsigned = fresh();
    unsigned
        .fields
        .retain(|(k, _)| k != "x-amz-signature" && k != "policy");
    cases.push(("no signature", unsigned, file.clone(), 403, "AccessDenied"));

    for (what, form, file, want, code) in cases {
        let (status, body) = post(&store, &form, &file).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            body.contains(&format!("<Code>{code}</Code>")),
            "{what}: {body}"
        );
        assert!(!store.exists("u/a/1.jpg").await, "{what}");
        assert!(!store.exists("u/b/1.jpg").await, "{what}");
    }
    assert!(store.events.take().is_empty());
}

/// Form fields the store turns into response headers must be valid header
/// values. A signed form whose Content-Type holds a NUL (the fuzzer's
/// `post_policy` found one) would store an object no GET or HEAD can
/// answer, so it is refused up front, like any other malformed argument.
#[tokio::test]
async fn header_fields_that_are_not_header_values_are_refused() {
    let store = start().await;
    let file = b"jpeg bytes".to_vec();
    for (name, value) in [
        ("Content-Type", "image/gi\0f"),
        ("Content-Type", "image/jpeg\r\nx-evil: 1"),
        ("Cache-Control", "max-age=1\u{7f}"),
        ("Content-Disposition", "inline\n"),
        ("x-amz-meta-note", "a\0b"),
    ] {
        let form = Form::signed("u/a/nul.jpg", file.len() as u64, &[(name, value)], MINUTE);
        let (status, body) = post(&store, &form, &file).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert!(
            body.contains("<Code>InvalidArgument</Code>"),
            "{name}: {body}"
        );
        assert!(!store.exists("u/a/nul.jpg").await, "{name}: stored");
    }
    assert!(store.events.take().is_empty());
}
