//! Quotas count pending reservations, so a burst of grant requests can never
//! exceed them; and grant creation is rate limited per user.

use futures::future::join_all;
use serde_json::json;

use crate::common::spawn_app_with;

#[tokio::test]
async fn concurrent_grants_never_exceed_the_quota() {
    let app = spawn_app_with("[profiles.tiny]\nquota_count = 3\nquota_bytes = 1000\n").await;
    let token = app.token("alice");
    let body =
        json!({"profile": "tiny", "filename": "a.txt", "content_type": "text/plain", "size": 100});
    let answers = join_all((0..20).map(|_| app.create(&token, body.clone()))).await;
    let granted = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(
        granted,
        3,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for a in answers.iter().filter(|a| a.status != 201) {
        assert_eq!(a.status, 429);
        assert_eq!(a.body["code"], "quota_exceeded");
    }
    // Another user has a quota of their own; bytes count too.
    let bob = app.token("bob");
    let big =
        json!({"profile": "tiny", "filename": "a.txt", "content_type": "text/plain", "size": 1001});
    assert_eq!(app.create(&bob, big).await.body["code"], "quota_exceeded");
    assert_eq!(app.create(&bob, body.clone()).await.status, 201);

    // Aborting a reservation frees it.
    let first = answers.iter().find(|a| a.status == 201).unwrap();
    let id = first.body["id"].as_str().unwrap();
    let del = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(del.body["status"], "aborted");
    assert_eq!(app.create(&token, body).await.status, 201);
}

#[tokio::test]
async fn grant_creation_is_rate_limited_per_user() {
    let app = spawn_app_with("[limits]\ngrants_per_minute = 60\ngrant_burst = 5\n").await;
    let token = app.token("alice");
    let body =
        json!({"profile": "file", "filename": "a.txt", "content_type": "text/plain", "size": 1});
    for _ in 0..5 {
        assert_eq!(app.create(&token, body.clone()).await.status, 201);
    }
    let limited = app.create(&token, body.clone()).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert_eq!(limited.body["code"], "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(
        app.create(&app.token("bob"), body).await.status,
        201,
        "per user"
    );
}
