//! Bad days: the store is down when the client completes (503, the row
//! stays pending, and it commits once the store is back), and a broker
//! restart keeps Idempotency-Keys.

use latchkey_s3local::{LocalStore, LocalStoreConfig};
use serde_json::json;

use crate::common::{spawn_app_with, testdata};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn complete_waits_out_a_store_outage() {
    let port = free_port();
    let app = spawn_app_with(&format!(
        "[store]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\nbucket = \"latchkey\"\n\
         access_key_id = \"OUTAGEKEY\"\nsecret_access_key = \"outage-secret\"\n[reconciler]\nenabled = false\n"
    ))
    .await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(
            &token,
            json!({"profile": "file", "filename": "a.jpg", "content_type": "image/jpeg",
                   "size": bytes.len()}),
        )
        .await;
    assert_eq!(c.status, 201, "granting needs no store call: {}", c.text);
    let id = c.body["id"].as_str().unwrap().to_owned();

    let down = app.complete(&token, &id).await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(down.body["code"], "store_unavailable");
    assert!(down.headers.contains_key("retry-after"));
    let row = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(row.body["status"], "pending", "an outage rejects nothing");

    // The store comes back on the same address.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(
        LocalStoreConfig {
            root: dir.path().to_path_buf(),
            bucket: "latchkey".into(),
            region: "us-east-1".into(),
            access_key_id: "OUTAGEKEY".into(),
            secret_access_key: latchkey_domain::Secret::new("outage-secret"),
        },
        None,
    )
    .await
    .unwrap();
    let _running = store.serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    assert_eq!(app.put_grant(&c.body, bytes, |_| {}).await.status, 200);
    let done = app.complete(&token, &id).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "committed");
}
