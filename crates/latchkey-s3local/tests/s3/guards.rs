//! What the store refuses: anonymous requests, failed preconditions, bodies
//! that do not match their digests, ACL headers.

use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectCannedAcl;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;

use crate::common::{AK, BUCKET, SK, code, sha256_b64, sha256_hex, start, status};

#[tokio::test]
async fn anonymous_requests_are_refused() {
    let s = start().await;
    s.client
        .put_object()
        .bucket(BUCKET)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let get = s.http.get(s.url("k")).send().await.unwrap();
    assert_eq!(get.status(), 403);
    let put = s.http.put(s.url("anon")).body("x").send().await.unwrap();
    assert_eq!(put.status(), 403);
    assert!(!s.exists("anon").await);
}

#[tokio::test]
async fn if_none_match_refuses_overwrite() {
    let s = start().await;
    let put = || {
        s.client
            .put_object()
            .bucket(BUCKET)
            .key("once")
            .if_none_match("*")
            .body(ByteStream::from_static(b"first"))
            .send()
    };
    put().await.unwrap();
    let err = put().await.unwrap_err();
    assert_eq!(status(&err), 412);
    assert_eq!(code(&err), "PreconditionFailed");
}

#[tokio::test]
async fn concurrent_conditional_puts_have_one_winner() {
    let s = start().await;
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let client = s.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .put_object()
                .bucket(BUCKET)
                .key("race")
                .if_none_match("*")
                .body(ByteStream::from(vec![i; 256 * 1024]))
                .send()
                .await
                .map_err(|e| status(&e))
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(code) => assert_eq!(code, 412),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.events.take().len(), 1);
}

#[tokio::test]
async fn bad_checksum_and_md5_write_nothing() {
    let s = start().await;
    let err = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("sum")
        .checksum_sha256(sha256_b64(b"something else"))
        .body(ByteStream::from_static(b"payload"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 400);
    assert_eq!(code(&err), "BadDigest");
    assert!(!s.exists("sum").await);

    // Right checksum: stored and echoed.
    let ok = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("sum")
        .checksum_sha256(sha256_b64(b"payload"))
        .body(ByteStream::from_static(b"payload"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.checksum_sha256(), Some(sha256_b64(b"payload").as_str()));

    let err = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("md5")
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==") // md5 of the empty string
        .body(ByteStream::from_static(b"payload"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 400);
    assert!(!s.exists("md5").await);
    // Nothing half-written is left in the temp folder either.
    assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn acl_headers_are_refused() {
    let s = start().await;
    let err = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("public")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 501);
    assert!(!s.exists("public").await);
    // `private` is what every object is anyway.
    s.client
        .put_object()
        .bucket(BUCKET)
        .key("private")
        .acl(ObjectCannedAcl::Private)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
}

/// Header-signed PUT (the `headers` grant mode): the signature covers
/// `x-amz-content-sha256`, so other bytes of the same length must get a 400,
/// not a 500 and not an object.
#[tokio::test]
async fn body_not_matching_signed_sha256_is_400() {
    let s = start().await;
    let url = s.url("signed-body");
    let signed_for = b"the bytes the grant was made for";
    let sent = b"other bytes of exactly that size";
    assert_eq!(signed_for.len(), sent.len());

    let headers = signed_headers(&url, signed_for);
    let mut req = s.http.put(&url).body(sent.to_vec());
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.contains("XAmzContentSHA256Mismatch"), "{text}");
    assert!(!s.exists("signed-body").await);

    let mut req = s.http.put(&url).body(signed_for.to_vec());
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
}

fn signed_headers(url: &str, body: &[u8]) -> Vec<(String, String)> {
    let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let hash = sha256_hex(body);
    let len = body.len().to_string();
    let base = [("content-length", len.as_str())];
    let signable = SignableRequest::new(
        "PUT",
        url,
        base.into_iter(),
        SignableBody::Precomputed(hash),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder()
        .method("PUT")
        .uri(url)
        .body(())
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req.headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}
