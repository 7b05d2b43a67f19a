//! `multipart` mode end to end: the broker creates the multipart upload,
//! hands out part URLs that sign each part's length, checks the parts
//! before completing, and aborts on DELETE.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Res, TestApp, sha256_hex, spawn_app_with};

const MIB: usize = 1024 * 1024;
/// 5 MiB parts (S3's minimum), so a 12 MiB file has three.
const SMALL_PARTS: &str = "[limits]\npart_size = \"5MiB\"\n";

/// Deterministic, incompressible-looking bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Whether the store under test was configured without multipart.
fn multipart_supported() -> bool {
    !std::env::var("LATCHKEY_TEST_S3_CAPABILITIES")
        .unwrap_or_default()
        .contains("multipart = false")
}

fn request(data: &[u8]) -> Value {
    json!({
        "profile": "file",
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": data.len(),
        "sha256": sha256_hex(data),
        "mode": "multipart",
    })
}

/// A new multipart upload, or `None` (after checking the refusal) where the
/// store cannot do multipart.
async fn create(app: &TestApp, token: &str, data: &[u8]) -> Option<Value> {
    let created = app.create(token, request(data)).await;
    if !multipart_supported() {
        assert_eq!(created.status, 400, "{}", created.text);
        assert_eq!(created.body["code"], "mode_not_supported");
        return None;
    }
    assert_eq!(created.status, 201, "{}", created.text);
    Some(created.body)
}

/// PUTs one part as a client would: the URL and its signed headers.
async fn put_part(app: &TestApp, part: &Value, body: Vec<u8>) -> (u16, Option<String>) {
    let mut req = app.http.put(part["url"].as_str().unwrap());
    for (k, v) in part["headers"].as_object().unwrap() {
        if k != "content-length" {
            req = req.header(k, v.as_str().unwrap());
        }
    }
    // A store may refuse before reading the whole body and close the
    // connection (Garage does): that is a refusal too.
    let res = match req.body(body).send().await {
        Ok(res) => res,
        Err(_) => return (499, None),
    };
    let etag = res
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_owned());
    (res.status().as_u16(), etag)
}

fn slice(data: &[u8], part_size: usize, n: u64) -> Vec<u8> {
    let start = (n as usize - 1) * part_size;
    data[start..(start + part_size).min(data.len())].to_vec()
}

async fn parts_for(app: &TestApp, token: &str, id: &str, numbers: &[u64]) -> Res {
    app.call(
        Method::POST,
        &format!("/v1/uploads/{id}/parts"),
        Some(token),
        Some(json!({ "numbers": numbers })),
    )
    .await
}

async fn complete_with(app: &TestApp, token: &str, id: &str, body: Value) -> Res {
    app.call(
        Method::POST,
        &format!("/v1/uploads/{id}/complete"),
        Some(token),
        Some(body),
    )
    .await
}

async fn read_back(app: &TestApp, token: &str, id: &str) -> Vec<u8> {
    let dl = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}/download"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(dl.status, 200, "{}", dl.text);
    let res = app
        .http
        .get(dl.body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn parts_uploaded_in_any_order_assemble_the_file() {
    let app = spawn_app_with(SMALL_PARTS).await;
    let token = app.token("alice");
    let data = noise(12 * MIB + 12_345, 1);
    let Some(c) = create(&app, &token, &data).await else {
        return;
    };
    assert_eq!(c["mode"], "multipart");
    let mp = &c["grant"]["multipart"];
    let part_size = mp["part_size"].as_u64().unwrap() as usize;
    assert_eq!(part_size, 5 * MIB);
    assert_eq!(mp["part_count"], 3);
    let parts = mp["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        parts[2]["headers"]["content-length"],
        (2 * MIB + 12_345).to_string()
    );
    let id = c["id"].as_str().unwrap();

    // The same URLs come back from `POST …/parts`.
    let more = parts_for(&app, &token, id, &[3, 1]).await;
    assert_eq!(more.status, 200, "{}", more.text);
    assert_eq!(more.body["parts"][0]["url"], parts[2]["url"]);

    let mut etags = Vec::new();
    for part in parts.iter().rev() {
        let n = part["number"].as_u64().unwrap();
        let (status, etag) = put_part(&app, part, slice(&data, part_size, n)).await;
        assert_eq!(status, 200);
        etags.push(json!({"number": n, "etag": etag.unwrap()}));
    }
    let done = complete_with(&app, &token, id, json!({ "parts": etags })).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "committed");
    assert_eq!(done.body["size"], data.len());
    assert!(read_back(&app, &token, id).await == data, "bytes differ");

    // Completing again is idempotent.
    let again = app.complete(&token, id).await;
    assert_eq!(again.status, 200, "{}", again.text);
}

#[tokio::test]
async fn part_numbers_are_checked() {
    let app = spawn_app_with(SMALL_PARTS).await;
    let token = app.token("alice");
    let data = noise(6 * MIB, 2);
    let Some(c) = create(&app, &token, &data).await else {
        return;
    };
    let id = c["id"].as_str().unwrap();
    for bad in [json!([0]), json!([3]), json!([])] {
        let res = app
            .call(
                Method::POST,
                &format!("/v1/uploads/{id}/parts"),
                Some(&token),
                Some(json!({ "numbers": bad })),
            )
            .await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
        assert_eq!(res.body["code"], "invalid_request");
    }
    // Another user sees nothing.
    let other = parts_for(&app, &app.token("bob"), id, &[1]).await;
    assert_eq!(other.status, 404);
}

#[tokio::test]
async fn a_part_larger_than_signed_is_refused_by_the_store() {
    let app = spawn_app_with(SMALL_PARTS).await;
    let token = app.token("alice");
    let data = noise(6 * MIB, 3);
    let Some(c) = create(&app, &token, &data).await else {
        return;
    };
    let part = &c["grant"]["multipart"]["parts"][0];
    let mut bigger = slice(&data, 5 * MIB, 1);
    bigger.push(0);
    let (status, _) = put_part(&app, part, bigger).await;
    assert!((400..500).contains(&status), "store answered {status}");
    let id = c["id"].as_str().unwrap();
    let listed = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}/parts"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body["parts"], json!([]));
    let done = app.complete(&token, id).await;
    assert_eq!(done.status, 409);
    assert_eq!(done.body["code"], "parts_incomplete");
}

#[tokio::test]
async fn a_missing_part_or_wrong_etag_is_refused_then_resumed() {
    let app = spawn_app_with(SMALL_PARTS).await;
    let token = app.token("alice");
    let data = noise(12 * MIB, 4);
    let Some(c) = create(&app, &token, &data).await else {
        return;
    };
    let id = c["id"].as_str().unwrap();
    let parts = c["grant"]["multipart"]["parts"].as_array().unwrap().clone();
    let mut etags = Vec::new();
    for part in &parts[..2] {
        let n = part["number"].as_u64().unwrap();
        let (status, etag) = put_part(&app, part, slice(&data, 5 * MIB, n)).await;
        assert_eq!(status, 200);
        etags.push(json!({"number": n, "etag": etag.unwrap()}));
    }

    // Part 3 is missing.
    let done = app.complete(&token, id).await;
    assert_eq!(done.status, 409, "{}", done.text);
    assert_eq!(done.body["code"], "parts_incomplete");
    let row = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(row.body["status"], "pending");

    // Resume: the store lists what it holds.
    let listed = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}/parts"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let held = listed.body["parts"].as_array().unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[0]["number"], 1);
    assert_eq!(held[0]["size"], 5 * MIB);
    assert_eq!(held[1]["etag"], etags[1]["etag"]);

    let again = parts_for(&app, &token, id, &[3]).await;
    let (status, etag) = put_part(&app, &again.body["parts"][0], slice(&data, 5 * MIB, 3)).await;
    assert_eq!(status, 200);
    etags.push(json!({"number": 3, "etag": etag.unwrap()}));

    // A wrong ETag is refused and nothing is committed.
    let mut wrong = etags.clone();
    wrong[0]["etag"] = json!("0123456789abcdef0123456789abcdef");
    let done = complete_with(&app, &token, id, json!({ "parts": wrong })).await;
    assert_eq!(done.status, 409, "{}", done.text);
    assert_eq!(done.body["code"], "parts_incomplete");
    // So is a list without every part.
    let done = complete_with(&app, &token, id, json!({ "parts": &etags[..2] })).await;
    assert_eq!(done.status, 409, "{}", done.text);
    let row = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(row.body["status"], "pending");

    let done = complete_with(&app, &token, id, json!({ "parts": etags })).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "committed");
    assert!(read_back(&app, &token, id).await == data, "bytes differ");
}

#[tokio::test]
async fn delete_aborts_the_store_multipart_upload() {
    let app = spawn_app_with(SMALL_PARTS).await;
    let token = app.token("alice");
    let data = noise(12 * MIB, 5);
    let Some(c) = create(&app, &token, &data).await else {
        return;
    };
    let id = c["id"].as_str().unwrap();
    let parts = c["grant"]["multipart"]["parts"].as_array().unwrap();
    let (status, _) = put_part(&app, &parts[0], slice(&data, 5 * MIB, 1)).await;
    assert_eq!(status, 200);

    let gone = app
        .call(
            Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(gone.body["status"], "aborted");
    // The store no longer knows the upload: a still-valid part URL fails
    // (404 NoSuchUpload; Garage may drop the connection instead), and the
    // broker's part listing finds no upload on the store.
    let (status, _) = put_part(&app, &parts[1], slice(&data, 5 * MIB, 2)).await;
    assert!(
        status == 404 || status == 499,
        "the multipart upload outlived its DELETE ({status})"
    );
    let listed = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}/parts"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(listed.status, 409);
}

#[tokio::test]
async fn a_wrong_declared_sha256_rejects_the_assembled_object() {
    let app = spawn_app_with(SMALL_PARTS).await;
    let token = app.token("alice");
    let data = noise(6 * MIB, 6);
    let mut req = request(&data);
    req["sha256"] = json!(sha256_hex(b"something else"));
    let created = app.create(&token, req).await;
    if !multipart_supported() {
        assert_eq!(created.status, 400);
        return;
    }
    let c = created.body;
    let id = c["id"].as_str().unwrap();
    for part in c["grant"]["multipart"]["parts"].as_array().unwrap() {
        let n = part["number"].as_u64().unwrap();
        let (status, _) = put_part(&app, part, slice(&data, 5 * MIB, n)).await;
        assert_eq!(status, 200);
    }
    let done = app.complete(&token, id).await;
    assert_eq!(done.status, 409, "{}", done.text);
    assert_eq!(done.body["code"], "checksum_mismatch");
    let row = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(row.body["status"], "rejected");
}
