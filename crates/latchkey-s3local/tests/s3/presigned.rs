//! Presigned URLs made by aws-sdk-s3's presigner, used with raw HTTP the way a
//! browser or phone would.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{BUCKET, TestStore, md5_hex, sha256_b64, start};

const BODY: &[u8] = b"\x89PNG pretend image bytes";

async fn presign_put(s: &TestStore, key: &str, len: i64) -> PresignedRequest {
    s.client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .content_type("image/png")
        .content_length(len)
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap()
}

fn request(
    s: &TestStore,
    p: &PresignedRequest,
    body: Vec<u8>,
    skip: &[&str],
) -> reqwest::RequestBuilder {
    let mut req = s.http.put(p.uri()).body(body);
    for (k, v) in p.headers() {
        if !skip.contains(&k) && k != "host" {
            req = req.header(k, v);
        }
    }
    req
}

#[tokio::test]
async fn presigned_put_enforces_signed_type_and_length() {
    let s = start().await;
    let p = presign_put(&s, "grant/a.png", BODY.len() as i64).await;
    assert!(p.uri().contains("X-Amz-SignedHeaders="));
    let signed = p
        .uri()
        .split("X-Amz-SignedHeaders=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert!(
        signed.contains("content-type") && signed.contains("content-length"),
        "{signed}"
    );

    // Another content type → 403, nothing stored.
    let resp = request(&s, &p, BODY.to_vec(), &["content-type"])
        .header("content-type", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!s.exists("grant/a.png").await);

    // A longer body (its own, truthful content-length) → 403, nothing stored.
    let mut longer = BODY.to_vec();
    longer.push(b'!');
    let resp = request(&s, &p, longer, &["content-length"])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!s.exists("grant/a.png").await);

    // The grant as made → 200 with the ETag.
    let resp = request(&s, &p, BODY.to_vec(), &[]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", md5_hex(BODY)));
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("grant/a.png")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("image/png"));

    // Presigned GET works too.
    let get = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("grant/a.png")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let resp = s.http.get(get.uri()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), BODY);
}

/// A client that sends the signed Content-Length but fewer bytes and then
/// closes its side must not leave an object behind.
#[tokio::test]
async fn short_body_under_signed_length_writes_nothing() {
    let s = start().await;
    let p = presign_put(&s, "grant/short.png", BODY.len() as i64).await;
    let uri: http::Uri = p.uri().parse().unwrap();
    let mut raw = format!(
        "PUT {} HTTP/1.1\r\nhost: {}\r\n",
        uri.path_and_query().unwrap(),
        s.handle.local_addr
    );
    for (k, v) in p.headers() {
        if k != "host" {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    raw.push_str("\r\n");
    let mut tcp = tokio::net::TcpStream::connect(s.handle.local_addr)
        .await
        .unwrap();
    tcp.write_all(raw.as_bytes()).await.unwrap();
    tcp.write_all(&BODY[..BODY.len() - 5]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!s.exists("grant/short.png").await);
    assert!(s.events.take().is_empty());
}

#[tokio::test]
async fn expired_presigned_url_is_refused() {
    let s = start().await;
    let config = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(3600))
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
    let p = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("late")
        .presigned(config)
        .await
        .unwrap();
    let resp = request(&s, &p, b"x".to_vec(), &[]).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!s.exists("late").await);
}

#[tokio::test]
async fn presigned_put_with_signed_checksum_and_if_none_match() {
    let s = start().await;
    let p = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("sum.png")
        .checksum_sha256(sha256_b64(BODY))
        .if_none_match("*")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let mut other = BODY.to_vec();
    other[0] ^= 1;
    let resp = request(&s, &p, other, &[]).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("BadDigest"));
    assert!(!s.exists("sum.png").await);

    let resp = request(&s, &p, BODY.to_vec(), &[]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Replaying the same grant cannot overwrite the object.
    let resp = request(&s, &p, BODY.to_vec(), &[]).send().await.unwrap();
    assert_eq!(resp.status(), 412);
}

/// s3s-fs accepted an unsigned `x-amz-acl` added to a presigned PUT, and
/// so did this store with unsigned user metadata or a website redirect.
/// AWS refuses any `x-amz-*` header a presigned request did not sign
/// (403 AccessDenied), and so does this store now.
#[tokio::test]
async fn unsigned_amz_headers_on_presigned_put_are_refused() {
    let s = start().await;
    for (name, value) in [
        ("x-amz-acl", "public-read"),
        ("x-amz-meta-owner", "mallory"),
        ("x-amz-website-redirect-location", "https://evil.example/"),
        ("x-amz-tagging", "a=b"),
    ] {
        let p = presign_put(&s, "acl.png", BODY.len() as i64).await;
        let resp = request(&s, &p, BODY.to_vec(), &[])
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{name}");
        assert!(
            resp.text().await.unwrap().contains("AccessDenied"),
            "{name}"
        );
        assert!(!s.exists("acl.png").await, "{name}");
    }
    // The unsigned payload hash is allowed, as on AWS.
    let p = presign_put(&s, "acl.png", BODY.len() as i64).await;
    let resp = request(&s, &p, BODY.to_vec(), &[])
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
