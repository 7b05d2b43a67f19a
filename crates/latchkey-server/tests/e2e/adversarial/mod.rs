//! The adversarial suite (issue 8): hostile clients, one module per area.
//! Every case asserts the exact outcome — status and problem `code`, what
//! the store answered, the row's state, the bytes in the bucket — and runs
//! in both matrix passes (embedded store + SQLite, Garage + PostgreSQL).
//! Where the stores differ, the difference is one DESIGN §9 documents and
//! the case says so.

mod grant_requests;
mod headers;
mod ownership;
mod processing;
mod store_tampering;
mod tokens;

use serde_json::Value;

use crate::common::{Res, TestApp, on_s3};

/// Asserts a problem+json refusal with this status and code.
#[track_caller]
pub fn problem(res: &Res, status: u16, code: &str, what: &str) {
    assert_eq!(res.status, status, "{what}: {}", res.text);
    assert_eq!(res.body["code"], code, "{what}: {}", res.text);
    assert_eq!(
        res.headers["content-type"], "application/problem+json",
        "{what}"
    );
}

pub async fn row(app: &TestApp, token: &str, id: &str) -> Res {
    app.call(
        reqwest::Method::GET,
        &format!("/v1/uploads/{id}"),
        Some(token),
        None,
    )
    .await
}

/// The row is still pending and `complete` finds nothing to commit.
pub async fn still_pending(app: &TestApp, token: &str, id: &str) {
    let done = app.complete(token, id).await;
    problem(
        &done,
        409,
        "object_missing",
        "complete after a refused write",
    );
    assert_eq!(row(app, token, id).await.body["status"], "pending");
}

/// How many uploads the user has, in any state.
pub async fn count(app: &TestApp, token: &str) -> usize {
    let list = app
        .call(reqwest::Method::GET, "/v1/uploads", Some(token), None)
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    list.body["items"].as_array().map_or(0, Vec::len)
}

/// The committed object's bytes, through a download grant.
pub async fn download(app: &TestApp, token: &str, id: &str) -> Vec<u8> {
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

pub fn id(created: &Value) -> &str {
    created["id"].as_str().unwrap()
}

/// The bucket as its owner sees it (the broker's own store credentials).
pub fn admin(app: &TestApp) -> aws_sdk_s3::Client {
    let key_id = if on_s3() {
        std::env::var("LATCHKEY_TEST_S3_ACCESS_KEY").unwrap()
    } else {
        latchkey_server::secrets::load_or_create(&app.data_dir)
            .unwrap()
            .store_access_key_id
    };
    client(app, &key_id, &app.store_secret, None)
}

pub fn client(app: &TestApp, key: &str, secret: &str, token: Option<String>) -> aws_sdk_s3::Client {
    let region = if on_s3() {
        std::env::var("LATCHKEY_TEST_S3_REGION").unwrap()
    } else {
        "us-east-1".to_owned()
    };
    let creds = aws_credential_types::Credentials::new(key, secret, token, None, "test");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(region))
        .endpoint_url(&app.store)
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Every key in the bucket.
pub async fn keys(app: &TestApp) -> Vec<String> {
    let out = admin(app)
        .list_objects_v2()
        .bucket(&app.bucket)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}
