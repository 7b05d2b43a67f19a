//! Grant requests: hostile filenames never reach the key, and every bad
//! size, type, profile, mode, metadata or body is a 4xx problem before a
//! row is reserved.

use serde_json::{Value, json};

use super::{count, download, id, problem};
use crate::common::{Res, TestApp, spawn_app};

fn file(name: &str, content_type: &str, size: Value) -> Value {
    json!({"profile": "file", "filename": name, "content_type": content_type, "size": size})
}

#[tokio::test]
async fn hostile_filenames_are_metadata_only() {
    let app = spawn_app().await;
    let alice = app.token("alice");
    let long = "A".repeat(5 * 1024) + ".jpg";
    // (what the client sent, what the row keeps as its filename)
    let cases: Vec<(String, String)> = vec![
        ("../../x".into(), "x".into()),
        ("..\\..\\windows\\win.ini".into(), "win.ini".into()),
        ("%2e%2e%2f%2e%2e%2fx".into(), "%2e%2e%2f%2e%2e%2fx".into()),
        ("a\u{0}b.jpg".into(), "ab.jpg".into()),
        ("photo\u{202E}gpj.exe".into(), "photogpj.exe".into()),
        ("a.jpg.php".into(), "a.jpg.php".into()),
        ("..".into(), "upload".into()),
        ("/".into(), "upload".into()),
        ("line\r\nbreak.jpg".into(), "linebreak.jpg".into()),
        (long.clone(), "A".repeat(255)),
    ];
    for (sent, kept) in &cases {
        let res = app.create(&alice, file(sent, "image/jpeg", json!(3))).await;
        assert_eq!(res.status, 201, "{sent:?}: {}", res.text);
        let key = res.body["key"].as_str().unwrap();
        // The broker chose the key: user, profile, id, and the extension
        // of the declared type — nothing the client named.
        let expected = format!("u/alice/file/{}.jpg", id(&res.body));
        assert_eq!(key, expected, "{sent:?}");
        let url = res.body["grant"]["url"].as_str().unwrap();
        assert!(!url.contains("php") && !url.contains("..") && !url.contains("%2e"));
        let row = super::row(&app, &alice, id(&res.body)).await;
        assert_eq!(row.body["filename"], json!(kept), "{sent:?}");
    }
    // One of them goes all the way: the bytes land at the broker's key.
    let res = app
        .create(&alice, file("../../x", "image/jpeg", json!(3)))
        .await;
    assert_eq!(
        app.put_grant(&res.body, b"abc".to_vec(), |_| {})
            .await
            .status,
        200
    );
    let done = app.complete(&alice, id(&res.body)).await;
    assert_eq!(done.body["status"], "committed", "{}", done.text);
    assert_eq!(download(&app, &alice, id(&res.body)).await, b"abc");
}

#[tokio::test]
async fn bad_sizes_types_profiles_and_modes_reserve_nothing() {
    let app = spawn_app().await;
    let bob = app.token("bob");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "size 0 on a profile with min_bytes 1",
            json!({"profile": "photo", "filename": "a.jpg", "content_type": "image/jpeg", "size": 0}),
            400,
            "too_small",
        ),
        (
            "negative size",
            file("a.txt", "text/plain", json!(-1)),
            400,
            "invalid_request",
        ),
        (
            "size over the profile's max",
            json!({"profile": "photo", "filename": "a.jpg", "content_type": "image/jpeg", "size": (50u64 << 20) + 1}),
            400,
            "too_large",
        ),
        (
            "u64::MAX",
            file("a.txt", "text/plain", json!(u64::MAX)),
            400,
            "too_large",
        ),
        (
            "1e30",
            file("a.txt", "text/plain", json!(1e30)),
            400,
            "invalid_request",
        ),
        (
            "fractional size",
            file("a.txt", "text/plain", json!(1.5)),
            400,
            "invalid_request",
        ),
        (
            "size as a string",
            file("a.txt", "text/plain", json!("12")),
            400,
            "invalid_request",
        ),
        (
            "size 2^64",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 18446744073709551616u128 as f64}),
            400,
            "invalid_request",
        ),
        (
            "html on the photo profile",
            json!({"profile": "photo", "filename": "a.html", "content_type": "text/html", "size": 10}),
            400,
            "type_not_allowed",
        ),
        (
            "svg on the photo profile",
            json!({"profile": "photo", "filename": "a.svg", "content_type": "image/svg+xml", "size": 10}),
            400,
            "type_not_allowed",
        ),
        (
            "empty content type",
            file("a", "", json!(1)),
            400,
            "invalid_request",
        ),
        (
            "content type without subtype",
            file("a", "image/", json!(1)),
            400,
            "invalid_request",
        ),
        (
            "content type with spaces",
            file("a", "image /jpeg", json!(1)),
            400,
            "invalid_request",
        ),
        (
            "content type with CRLF",
            file("a", "image\r\n/jpeg", json!(1)),
            400,
            "invalid_request",
        ),
        (
            "content type of 300 bytes",
            file("a", &format!("image/{}", "x".repeat(300)), json!(1)),
            400,
            "invalid_request",
        ),
        (
            "unknown profile",
            json!({"profile": "admin", "filename": "a", "content_type": "text/plain", "size": 1}),
            400,
            "unknown_profile",
        ),
        (
            "profile with path characters",
            json!({"profile": "../file", "filename": "a", "content_type": "text/plain", "size": 1}),
            400,
            "unknown_profile",
        ),
        (
            "unknown mode",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1, "mode": "ftp"}),
            400,
            "invalid_request",
        ),
        (
            "tus through the grant route",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1, "mode": "tus"}),
            400,
            "mode_not_supported",
        ),
        (
            "malformed sha256",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1, "sha256": "zz"}),
            400,
            "invalid_request",
        ),
        (
            "17 metadata entries",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1,
                   "metadata": (0..17).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            400,
            "metadata_too_large",
        ),
        (
            "3 KiB of metadata",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1,
                   "metadata": {"note": "x".repeat(3 * 1024)}}),
            400,
            "metadata_too_large",
        ),
        (
            "metadata key with a colon",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1,
                   "metadata": {"x-amz-acl:": "public-read"}}),
            400,
            "invalid_request",
        ),
        (
            "metadata value with a newline",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1,
                   "metadata": {"note": "a\r\nx-amz-acl: public-read"}}),
            400,
            "invalid_request",
        ),
        (
            "a TTL above the profile's (unknown field)",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1, "ttl": "365d"}),
            400,
            "invalid_request",
        ),
        (
            "a key of the client's choosing (unknown field)",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1, "key": "u/bob/x"}),
            400,
            "invalid_request",
        ),
        (
            "another user (unknown field)",
            json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1, "user": "alice"}),
            400,
            "invalid_request",
        ),
    ];
    for (what, body, status, code) in cases {
        let res = app.create(&bob, body).await;
        problem(&res, status, code, what);
    }
    assert_eq!(
        count(&app, &bob).await,
        0,
        "a refused request reserves nothing"
    );
}

async fn raw_post(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> Res {
    let res = app
        .http
        .post(format!("{}/v1/uploads", app.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    Res {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

#[tokio::test]
async fn non_json_and_oversized_bodies_are_problems() {
    let app = spawn_app().await;
    let bob = app.token("bob");
    let valid = file("a.txt", "text/plain", json!(1)).to_string();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "form body",
            "application/x-www-form-urlencoded",
            b"filename=a&size=1".to_vec(),
        ),
        (
            "JSON sent as text/plain",
            "text/plain",
            valid.clone().into_bytes(),
        ),
        ("empty body", "application/json", Vec::new()),
        ("null", "application/json", b"null".to_vec()),
        ("an array", "application/json", b"[1,2,3]".to_vec()),
        (
            "truncated JSON",
            "application/json",
            valid.as_bytes()[..10].to_vec(),
        ),
        (
            "invalid UTF-8",
            "application/json",
            b"{\"filename\": \"\xff\xfe\"}".to_vec(),
        ),
        (
            "deeply nested",
            "application/json",
            ("[".repeat(10_000) + &"]".repeat(10_000)).into_bytes(),
        ),
        (
            "duplicate fields",
            "application/json",
            br#"{"profile":"file","filename":"a","content_type":"text/plain","size":1,"size":2}"#
                .to_vec(),
        ),
    ];
    for (what, ct, body) in cases {
        let res = raw_post(&app, &bob, ct, body).await;
        problem(&res, 400, "invalid_request", what);
    }
    // Ten megabytes: refused by the body limit (64 KiB by default) without
    // being read, as a problem like every other refusal.
    let mut huge = valid.clone().into_bytes();
    huge.truncate(huge.len() - 1);
    huge.extend_from_slice(b",\"metadata\":{\"a\":\"");
    huge.resize(10 * 1024 * 1024, b'x');
    huge.extend_from_slice(b"\"}}");
    let res = raw_post(&app, &bob, "application/json", huge).await;
    problem(&res, 413, "body_too_large", "10 MB body");
    assert_eq!(count(&app, &bob).await, 0);
    // The control: the same request, well-formed.
    assert_eq!(
        raw_post(&app, &bob, "application/json", valid.into_bytes())
            .await
            .status,
        201
    );
}
