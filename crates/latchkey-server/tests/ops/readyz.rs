//! `/readyz` checks the ledger and the store; `/healthz` only the process.

use crate::common::{spawn_app, spawn_app_with};

#[tokio::test]
async fn ready_when_ledger_and_store_answer() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), r#"{"status":"ready"}"#);
}

#[tokio::test]
async fn not_ready_when_the_store_is_down() {
    // A loopback port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = spawn_app_with(&format!(
        "[store]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
         access_key_id = \"AKIDOPS\"\nsecret_access_key = \"ops-secret-key\"\n"
    ))
    .await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "alive even when not ready");

    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(res.headers().contains_key("retry-after"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "store_unavailable");
    assert_eq!(body["status"], 503);
    assert!(
        !body.to_string().contains(&port.to_string()),
        "the problem says nothing about internals: {body}"
    );
}
