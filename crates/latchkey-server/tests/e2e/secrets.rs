//! Invariant I5: no response and no log line carries a secret.

use serde_json::json;

use crate::common::{logs, photo_request, spawn_app, testdata};

#[tokio::test]
async fn no_secret_in_any_response_or_log_line() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    // A tour of success and failure paths.
    let c = app
        .create(&token, photo_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    let id = c["id"].as_str().unwrap();
    app.complete(&token, id).await;
    let mut bad = bytes.clone();
    bad[10] ^= 1;
    app.put_grant(&c, bad, |_| {}).await;
    app.put_grant(&c, bytes.clone(), |_| {}).await;
    app.complete(&token, id).await;
    app.call(
        reqwest::Method::GET,
        &format!("/v1/uploads/{id}/download"),
        Some(&token),
        None,
    )
    .await;
    app.call(reqwest::Method::GET, "/v1/uploads", Some(&token), None)
        .await;
    app.create(
        &token,
        json!({"filename": "x", "content_type": "image/svg+xml", "size": 1}),
    )
    .await;
    app.call(reqwest::Method::GET, "/v1/uploads", Some("garbage"), None)
        .await;
    app.call(
        reqwest::Method::DELETE,
        &format!("/v1/uploads/{id}"),
        Some(&token),
        None,
    )
    .await;

    let bodies = app.bodies.lock().unwrap().join("\n");
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
    assert!(!logs.is_empty(), "the suite captures logs");
    for (name, secret) in [
        ("store secret", &app.store_secret),
        ("jwt secret", &app.jwt_secret),
    ] {
        assert!(
            !bodies.contains(secret.as_str()),
            "{name} in a response body"
        );
        assert!(!logs.contains(secret.as_str()), "{name} in the logs");
    }
    let leaked: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("X-Amz-Signature="))
        .collect();
    assert!(
        leaked.is_empty(),
        "a presigned URL reached the logs: {leaked:#?}"
    );
}
