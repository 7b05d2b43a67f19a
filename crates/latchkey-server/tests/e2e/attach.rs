//! App backends: API keys acting for a user, attach, and the sweep that
//! deletes uploads left unattached where a profile requires attach.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::{TestApp, photo_request, spawn_app_with, testdata};

const KEY: &str = "lk_test_backend_key_0123456789abcdef";

fn config(extra: &str) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(KEY.as_bytes()));
    format!("[auth]\napi_keys = [\"sha256:{hash}\"]\n{extra}")
}

async fn backend(
    app: &TestApp,
    method: Method,
    path: &str,
    user: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = app
        .http
        .request(method, format!("{}{}", app.base, path))
        .bearer_auth(KEY)
        .json(&body);
    if let Some(u) = user {
        req = req.header("x-latchkey-user", u);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

async fn committed(app: &TestApp, user: &str, profile: &str) -> String {
    let token = app.token(user);
    let bytes = testdata("small-gps.jpg");
    let mut req = photo_request("a.jpg", "image/jpeg", &bytes);
    req["profile"] = json!(profile);
    let c = app.create(&token, req).await.body;
    assert_eq!(app.put_grant(&c, bytes, |_| {}).await.status, 200);
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(app.complete(&token, &id).await.body["status"], "committed");
    id
}

#[tokio::test]
async fn backends_attach_with_api_keys() {
    let app = spawn_app_with(&config("")).await;
    let id = committed(&app, "alice", "file").await;
    let path = format!("/v1/uploads/{id}/attach");

    // A user token cannot attach; an unknown key cannot either.
    let user = app
        .call(
            Method::POST,
            &path,
            Some(&app.token("alice")),
            Some(json!({"ref": "post:1"})),
        )
        .await;
    assert_eq!(user.status, 403);
    assert_eq!(user.body["code"], "forbidden");
    let bad = app
        .call(
            Method::POST,
            &path,
            Some("lk_not_a_key"),
            Some(json!({"ref": "post:1"})),
        )
        .await;
    assert_eq!(bad.status, 401);

    // Acting for another user, the upload does not exist.
    let (s, b) = backend(
        &app,
        Method::POST,
        &path,
        Some("bob"),
        json!({"ref": "post:1"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));

    let (s, row) = backend(
        &app,
        Method::POST,
        &path,
        Some("alice"),
        json!({"ref": "post:1"}),
    )
    .await;
    assert_eq!(s, 200, "{row}");
    assert_eq!(row["attached_ref"], "post:1");
    let (s, _) = backend(&app, Method::POST, &path, None, json!({"ref": "post:1"})).await;
    assert_eq!(s, 200, "attaching again with the same ref is a no-op");
    let (s, b) = backend(&app, Method::POST, &path, None, json!({"ref": "post:2"})).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("already_attached")));
    let (s, b) = backend(&app, Method::POST, &path, None, json!({"ref": ""})).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_request")));

    // The backend acts for a user on the user routes too.
    let (s, list) = backend(&app, Method::GET, "/v1/uploads", Some("alice"), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(list["items"][0]["id"], json!(id));
    let (s, b) = backend(&app, Method::GET, "/v1/uploads", None, json!({})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_request")),
        "a key needs X-Latchkey-User there"
    );

    // Attaching a pending upload is refused.
    let token = app.token("alice");
    let pending = app
        .create(
            &token,
            photo_request("b.jpg", "image/jpeg", &testdata("small-gps.jpg")),
        )
        .await
        .body;
    let (s, b) = backend(
        &app,
        Method::POST,
        &format!("/v1/uploads/{}/attach", pending["id"].as_str().unwrap()),
        None,
        json!({"ref": "post:3"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (409, Some("invalid_state")));
}

#[tokio::test]
async fn unattached_uploads_are_deleted_where_attach_is_required() {
    let app = spawn_app_with(&config(
        "[profiles.avatar]\ncontent_types = [\"image/jpeg\"]\nrequire_attach = true\nunattached_ttl = \"1s\"\n\
         [reconciler]\nevery = \"200ms\"\ngrace = \"0s\"\n",
    ))
    .await;
    let kept = committed(&app, "alice", "avatar").await;
    let dropped = committed(&app, "alice", "avatar").await;
    let (s, _) = backend(
        &app,
        Method::POST,
        &format!("/v1/uploads/{kept}/attach"),
        None,
        json!({"ref": "user:alice"}),
    )
    .await;
    assert_eq!(s, 200);

    let token = app.token("alice");
    let mut status = String::new();
    for _ in 0..100 {
        let row = app
            .call(
                Method::GET,
                &format!("/v1/uploads/{dropped}"),
                Some(&token),
                None,
            )
            .await;
        status = row.body["status"].as_str().unwrap().to_owned();
        if status == "deleted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "deleted");
    let kept_row = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{kept}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(kept_row.body["status"], "committed");
    let dl = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{dropped}/download"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(dl.status, 409);
}
