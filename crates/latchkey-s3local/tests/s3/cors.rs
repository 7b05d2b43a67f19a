//! A page on another origin can preflight, PUT with a presigned URL and read
//! the ETag.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;

use crate::common::{BUCKET, start};

#[tokio::test]
async fn preflight_and_put_from_another_origin() {
    let s = start().await;
    let resp = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("web/a.png"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "content-type,x-amz-checksum-sha256",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "PUT", "POST", "HEAD", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("content-type") && allowed.contains("x-amz-checksum-sha256"),
        "{allowed}"
    );
    assert!(h.contains_key("access-control-max-age"));

    let p = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("web/a.png")
        .content_type("image/png")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let mut req = s
        .http
        .put(p.uri())
        .body("png")
        .header("origin", "https://app.example");
    for (k, v) in p.headers() {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let exposed = h["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["etag", "x-amz-checksum-sha256", "x-amz-version-id"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert!(h.contains_key("etag"));

    // Errors carry the CORS headers too, so the page can read them.
    let resp = s
        .http
        .get(s.url("web/a.png"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}
