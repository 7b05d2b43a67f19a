//! `headers` mode: the broker signs every header of one PUT, the payload
//! hash included, so the store itself refuses any other bytes.

use serde_json::{Value, json};

use crate::common::{TestApp, photo_request, sha256_hex, spawn_app, spawn_app_with, testdata};

fn headers_request(name: &str, content_type: &str, bytes: &[u8]) -> Value {
    let mut req = photo_request(name, content_type, bytes);
    req["mode"] = json!("headers");
    req
}

async fn assert_still_pending(app: &TestApp, token: &str, id: &str) {
    let done = app.complete(token, id).await;
    assert_eq!(done.status, 409, "{}", done.text);
    assert_eq!(done.body["code"], "object_missing");
    let row = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(row.body["status"], "pending");
}

async fn download(app: &TestApp, token: &str, id: &str) -> Vec<u8> {
    let dl = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}/download"),
            Some(token),
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
    got.bytes().await.unwrap().to_vec()
}

fn parse_time(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[tokio::test]
async fn signed_headers_upload_round_trips_byte_for_byte() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let created = app
        .create(&token, headers_request("a.jpg", "image/jpeg", &bytes))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let c = &created.body;
    assert_eq!(c["mode"], "headers");
    let grant = &c["grant"];
    assert_eq!(grant["method"], "PUT");
    let url = grant["url"].as_str().unwrap();
    assert!(!url.contains('?'), "header-signed, not presigned: {url}");
    let h = &grant["headers"];
    assert_eq!(h["x-amz-content-sha256"], sha256_hex(&bytes));
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["content-length"], bytes.len().to_string());
    let auth = h["authorization"].as_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential="), "{auth}");
    for signed in [
        "content-length",
        "content-type",
        "x-amz-content-sha256",
        "x-amz-date",
    ] {
        assert!(auth.contains(signed), "{signed} not signed: {auth}");
    }
    // The signature carries the broker's time, which the response states.
    let date = h["x-amz-date"].as_str().unwrap();
    let server_time = parse_time(&c["server_time"]);
    let stamp =
        time::format_description::parse_borrowed::<2>("[year][month][day]T[hour][minute][second]Z")
            .unwrap();
    let signed_at = time::PrimitiveDateTime::parse(date, &stamp)
        .unwrap()
        .assume_utc();
    assert!(
        (server_time - signed_at).abs() <= time::Duration::seconds(5),
        "{date}"
    );
    assert!(parse_time(&grant["expires_at"]) <= server_time + time::Duration::minutes(15));

    let put = app.put_grant(c, bytes.clone(), |_| {}).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let id = c["id"].as_str().unwrap();
    let done = app.complete(&token, id).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "committed");
    assert_eq!(download(&app, &token, id).await, bytes);
}

#[tokio::test]
async fn headers_mode_needs_the_sha256() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let mut req = headers_request("a.jpg", "image/jpeg", b"abc");
    req.as_object_mut().unwrap().remove("sha256");
    let res = app.create(&token, req).await;
    assert_eq!(res.status, 400, "{}", res.text);
    assert_eq!(res.body["code"], "invalid_request");
    assert!(
        res.body["detail"].as_str().unwrap().contains("sha256"),
        "{}",
        res.text
    );
    // Nothing was reserved.
    let list = app
        .call(reqwest::Method::GET, "/v1/uploads", Some(&token), None)
        .await;
    assert_eq!(list.body["items"], json!([]), "{}", list.text);
}

#[tokio::test]
async fn other_bytes_or_another_type_are_refused_by_the_store() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");

    // Other bytes of the same length: the signed payload hash refuses them.
    let c = app
        .create(&token, headers_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    let mut flipped = bytes.clone();
    flipped[100] ^= 0xff;
    let res = app.put_grant(&c, flipped, |_| {}).await;
    assert_eq!(res.status, 400, "other bytes: {}", res.text);
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;

    // Another content type: the signature no longer matches.
    let c = app
        .create(&token, headers_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    let res = app
        .put_grant(&c, bytes.clone(), |h| {
            h.retain(|(k, _)| k != "content-type");
            h.push(("content-type".into(), "text/html".into()));
        })
        .await;
    assert_eq!(res.status, 403, "other type: {}", res.text);
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;

    // Another key under the same signature.
    let c = app
        .create(&token, headers_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    let mut moved = c.clone();
    moved["grant"]["url"] = json!(
        c["grant"]["url"]
            .as_str()
            .unwrap()
            .replace("/u/alice/", "/u/mallory/")
    );
    let res = app.put_grant(&moved, bytes.clone(), |_| {}).await;
    assert_eq!(res.status, 403, "other key: {}", res.text);
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn replaying_signed_headers_after_commit_changes_nothing() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(&token, headers_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    assert_eq!(app.put_grant(&c, bytes.clone(), |_| {}).await.status, 200);
    let id = c["id"].as_str().unwrap();
    assert_eq!(app.complete(&token, id).await.status, 200);

    // The signature binds the bytes, so a replay can only carry the same
    // ones; where the store honours If-None-Match it is refused outright,
    // elsewhere it lands on the staging key nobody reads.
    let replay = app.put_grant(&c, bytes.clone(), |_| {}).await;
    if app.if_none_match {
        assert_eq!(replay.status, 412, "{}", replay.text);
    } else {
        assert_eq!(replay.status, 200, "{}", replay.text);
    }
    let mut other = bytes.clone();
    other.reverse();
    let replay = app.put_grant(&c, other, |_| {}).await;
    assert!(
        replay.status == 400 || replay.status == 412,
        "{}",
        replay.text
    );
    assert_eq!(download(&app, &token, id).await, bytes);
    let again = app.complete(&token, id).await;
    assert_eq!(again.body["status"], "committed");
}

#[tokio::test]
async fn header_grants_never_outlive_fifteen_minutes() {
    let app = spawn_app_with("[profiles.long]\ngrant_ttl = \"2h\"\n").await;
    let token = app.token("alice");
    let c = app
        .create(
            &token,
            json!({"profile": "long", "filename": "a.txt", "content_type": "text/plain",
                   "size": 3, "sha256": sha256_hex(b"abc"), "mode": "headers"}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let server_time = parse_time(&c.body["server_time"]);
    let expiry = parse_time(&c.body["grant"]["expires_at"]);
    assert!(expiry <= server_time + time::Duration::minutes(15));
    assert!(expiry > server_time + time::Duration::minutes(14));
    let put = app.put_grant(&c.body, b"abc".to_vec(), |_| {}).await;
    assert_eq!(put.status, 200, "{}", put.text);
}
