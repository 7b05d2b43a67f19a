//! The presigned-PUT flow, happy path: grant → PUT → complete → download.

use serde_json::json;

use crate::common::{photo_request, spawn_app, testdata};

const PHOTOS: [(&str, &str); 7] = [
    ("iphone-12mp-gps-orient6.jpg", "image/jpeg"),
    ("small-gps.jpg", "image/jpeg"),
    ("small-gps-orient8.jpg", "image/jpeg"),
    ("photo.png", "image/png"),
    ("photo.webp", "image/webp"),
    ("photo.heic", "image/heic"),
    ("anim.gif", "image/gif"),
];

/// Through the `file` profile (`photo_request`), which stores bytes as they
/// came: what is downloaded is exactly what was uploaded. (The `photo`
/// profile re-writes every photo without its metadata: `photos.rs`.)
#[tokio::test]
async fn every_real_photo_round_trips_byte_for_byte() {
    let app = spawn_app().await;
    let token = app.token("alice");
    for (name, ct) in PHOTOS {
        let bytes = testdata(name);
        let created = app.create(&token, photo_request(name, ct, &bytes)).await;
        assert_eq!(created.status, 201, "{name}: {}", created.text);
        let c = &created.body;
        assert_eq!(c["status"], "pending");
        assert_eq!(c["mode"], "put");
        assert_eq!(c["grant"]["method"], "PUT");
        assert!(c["server_time"].is_string());
        let key = c["key"].as_str().unwrap();
        assert!(key.starts_with("u/alice/file/"), "{key}");
        assert_eq!(c["grant"]["headers"]["content-type"], ct);
        if app.if_none_match {
            assert_eq!(c["grant"]["headers"]["if-none-match"], "*");
        } else {
            assert!(
                key.ends_with(".upload")
                    || c["grant"]["url"].as_str().unwrap().contains(".upload?")
            );
        }

        let put = app.put_grant(c, bytes.clone(), |_| {}).await;
        assert_eq!(put.status, 200, "{name}: {}", put.text);

        let id = c["id"].as_str().unwrap();
        let done = app.complete(&token, id).await;
        assert_eq!(done.status, 200, "{name}: {}", done.text);
        assert_eq!(done.body["status"], "committed");
        assert!(done.body["etag"].is_string());
        assert!(done.body["committed_at"].is_string());

        let dl = app
            .call(
                reqwest::Method::GET,
                &format!("/v1/uploads/{id}/download"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(dl.status, 200, "{}", dl.text);
        let got = app
            .http
            .get(dl.body["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(
            got.bytes().await.unwrap().as_ref(),
            bytes.as_slice(),
            "{name}"
        );
    }

    let list = app
        .call(
            reqwest::Method::GET,
            "/v1/uploads?limit=3",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 3);
    let cursor = list.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads?limit=10&cursor={cursor}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        rest.body["items"].as_array().unwrap().len(),
        PHOTOS.len() - 3
    );
    assert!(rest.body["next_cursor"].is_null());
}

#[tokio::test]
async fn grant_requests_are_checked_against_the_profile() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let svg = app
        .create(
            &token,
            json!({"filename": "x.svg", "content_type": "image/svg+xml", "size": 95}),
        )
        .await;
    assert_eq!(svg.status, 400);
    assert_eq!(svg.body["code"], "type_not_allowed");
    assert_eq!(svg.headers["content-type"], "application/problem+json");

    let big = app
        .create(
            &token,
            json!({"filename": "x.jpg", "content_type": "image/jpeg", "size": 52428801u64}),
        )
        .await;
    assert_eq!(big.status, 400);
    assert_eq!(big.body["code"], "too_large");

    for (body, code) in [
        (
            json!({"filename": "x.jpg", "content_type": "image/jpeg", "size": -1}),
            "invalid_request",
        ),
        (
            json!({"filename": "x.jpg", "content_type": "image/jpeg", "size": 0}),
            "too_small",
        ),
        (
            json!({"profile": "nope", "filename": "x", "content_type": "image/jpeg", "size": 1}),
            "unknown_profile",
        ),
        (
            json!({"filename": "x", "content_type": "image/jpeg", "size": 1, "mode": "ftp"}),
            "invalid_request",
        ),
        (
            json!({"filename": "x", "content_type": "image/jpeg", "size": 1, "evil": true}),
            "invalid_request",
        ),
        (
            json!({"filename": "x", "content_type": "not a type", "size": 1}),
            "invalid_request",
        ),
        (
            json!({"filename": "x", "content_type": "image/jpeg", "size": 1, "sha256": "zz"}),
            "invalid_request",
        ),
    ] {
        let res = app.create(&token, body.clone()).await;
        assert_eq!(res.status, 400, "{body}: {}", res.text);
        assert_eq!(res.body["code"], code, "{body}");
    }

    // The file profile takes any type; the key's extension still comes from
    // the type, never from the client's filename.
    let any = app
        .create(
            &token,
            json!({"profile": "file", "filename": "../../a.jpg.php", "content_type": "application/x-php", "size": 3}),
        )
        .await;
    assert_eq!(any.status, 201, "{}", any.text);
    assert!(!any.body["key"].as_str().unwrap().contains("php"));
    assert_eq!(any.body["filename"], "a.jpg.php");
}

#[tokio::test]
async fn idempotency_key_returns_the_same_grant() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let body = photo_request("a.jpg", "image/jpeg", &bytes);
    let send = |b: serde_json::Value| {
        app.http
            .post(format!("{}/v1/uploads", app.base))
            .bearer_auth(&token)
            .header("idempotency-key", "retry-1")
            .json(&b)
            .send()
    };
    let a: serde_json::Value = send(body.clone()).await.unwrap().json().await.unwrap();
    let b: serde_json::Value = send(body.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["grant"], b["grant"]);

    let mut other = body.clone();
    other["size"] = json!(1);
    let res = send(other).await.unwrap();
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn time_and_health_answer() {
    let app = spawn_app().await;
    let t = app.call(reqwest::Method::GET, "/v1/time", None, None).await;
    assert_eq!(t.status, 200);
    assert!(t.body["now"].as_str().unwrap().ends_with('Z'));
    assert!(t.headers.contains_key("date"));
    assert_eq!(
        app.call(reqwest::Method::GET, "/healthz", None, None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.call(reqwest::Method::GET, "/readyz", None, None)
            .await
            .status,
        200
    );
    let missing = app.call(reqwest::Method::GET, "/nope", None, None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["code"], "not_found");
}
