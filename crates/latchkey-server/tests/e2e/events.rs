//! Store event notifications as a commit path: AWS S3 (direct and through
//! SNS, with the subscription handshake) and MinIO. Duplicates and events
//! for unknown keys are harmless.

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, photo_request, spawn_app_with, testdata};

const TOKEN: &str = "evt-shared-secret";

fn s3_event(bucket: &str, key: &str) -> Value {
    // S3 sends keys form-urlencoded.
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'/' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b if b.is_ascii_alphanumeric() => (b as char).to_string(),
            b' ' => "+".to_owned(),
            b => format!("%{b:02X}"),
        })
        .collect();
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": encoded, "size": 1}}
    }]})
}

async fn post(app: &TestApp, body: String, token: Option<&str>, sns: Option<&str>) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/events/s3", app.base))
        .body(body);
    if let Some(t) = token {
        req = req.query(&[("token", t)]);
    }
    if let Some(s) = sns {
        req = req.header("x-amz-sns-message-type", s);
    }
    let res = req.send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// A pending upload whose bytes are in the store; returns (id, stored key).
async fn uploaded_not_completed(app: &TestApp, token: &str) -> (String, String) {
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(token, photo_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    assert_eq!(app.put_grant(&c, bytes, |_| {}).await.status, 200);
    let url = reqwest::Url::parse(c["grant"]["url"].as_str().unwrap()).unwrap();
    // The key the grant wrote: the path after the bucket (staging or not).
    let path = percent_encoding::percent_decode_str(url.path())
        .decode_utf8()
        .unwrap()
        .into_owned();
    let key = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap()
        .1
        .to_owned();
    (c["id"].as_str().unwrap().to_owned(), key)
}

async fn status(app: &TestApp, token: &str, id: &str) -> String {
    let row = app
        .call(Method::GET, &format!("/v1/uploads/{id}"), Some(token), None)
        .await;
    row.body["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn s3_and_minio_events_commit_uploads() {
    // Only this notification may commit: no reconciler, and on the
    // embedded store no in-process hook (that path is tested on its own).
    let quiet_store = if crate::common::on_s3() {
        ""
    } else {
        "[store]\nnotify = false\nlisten = \"127.0.0.1:0\"\n"
    };
    let app = spawn_app_with(&format!(
        "[events]\ntoken = \"{TOKEN}\"\n[reconciler]\nenabled = false\n{quiet_store}"
    ))
    .await;
    let token = app.token("alice");

    let (id, key) = uploaded_not_completed(&app, &token).await;
    let event = s3_event(&app.bucket, &key).to_string();
    assert_eq!(post(&app, event.clone(), None, None).await.0, 401);
    assert_eq!(post(&app, event.clone(), Some("wrong"), None).await.0, 401);
    let (s, body) = post(&app, event.clone(), Some(TOKEN), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["committed"], 1);
    assert_eq!(status(&app, &token, &id).await, "committed");
    // A duplicate changes nothing.
    let (_, again) = post(&app, event, Some(TOKEN), None).await;
    assert_eq!(again["committed"], 0);
    assert_eq!(again["ignored"], 1);

    // Wrapped in SNS.
    let (id, key) = uploaded_not_completed(&app, &token).await;
    let sns = json!({"Type": "Notification", "MessageId": "m1", "Message": s3_event(&app.bucket, &key).to_string()});
    let (s, body) = post(&app, sns.to_string(), Some(TOKEN), Some("Notification")).await;
    assert_eq!((s, body["committed"].as_u64()), (200, Some(1)));
    assert_eq!(status(&app, &token, &id).await, "committed");

    // MinIO's webhook shape.
    let (id, key) = uploaded_not_completed(&app, &token).await;
    let mut minio = s3_event(&app.bucket, &key);
    minio["EventName"] = json!("s3:ObjectCreated:Put");
    minio["Records"][0]["eventName"] = json!("s3:ObjectCreated:Put");
    let (s, body) = post(&app, minio.to_string(), Some(TOKEN), None).await;
    assert_eq!((s, body["committed"].as_u64()), (200, Some(1)));
    assert_eq!(status(&app, &token, &id).await, "committed");

    // An event that arrives before the bytes, another bucket, an unknown
    // key, and garbage: none commits anything, none is an error but the last.
    let pending = app
        .create(
            &token,
            photo_request("b.jpg", "image/jpeg", &testdata("small-gps.jpg")),
        )
        .await
        .body;
    let early = s3_event(&app.bucket, pending["key"].as_str().unwrap()).to_string();
    assert_eq!(post(&app, early, Some(TOKEN), None).await.1["committed"], 0);
    assert_eq!(
        status(&app, &token, pending["id"].as_str().unwrap()).await,
        "pending"
    );
    let other = s3_event("another-bucket", &key).to_string();
    assert_eq!(post(&app, other, Some(TOKEN), None).await.1["ignored"], 0);
    let unknown = s3_event(&app.bucket, "u/nobody/photo/none.jpg").to_string();
    assert_eq!(post(&app, unknown, Some(TOKEN), None).await.1["ignored"], 1);
    let (s, body) = post(&app, "{not json".into(), Some(TOKEN), None).await;
    assert_eq!((s, body["code"].as_str()), (400, Some("invalid_request")));
}

#[tokio::test]
async fn sns_subscription_is_confirmed_only_for_trusted_hosts() {
    let hits = Arc::new(Mutex::new(0));
    let h = hits.clone();
    let router = axum::Router::new().route(
        "/confirm",
        axum::routing::get(move || {
            let h = h.clone();
            async move {
                *h.lock().unwrap() += 1;
                "<ConfirmSubscriptionResponse/>"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let confirm_url = format!(
        "http://{}/confirm?Token=abc",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let app = spawn_app_with(&format!(
        "[events]\ntoken = \"{TOKEN}\"\nsubscribe_hosts = [\"127.0.0.1\"]\n"
    ))
    .await;
    let msg = json!({"Type": "SubscriptionConfirmation", "SubscribeURL": confirm_url}).to_string();
    let (s, body) = post(&app, msg, Some(TOKEN), Some("SubscriptionConfirmation")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["subscription_confirmed"], true);
    assert_eq!(*hits.lock().unwrap(), 1);

    let evil = json!({"Type": "SubscriptionConfirmation", "SubscribeURL": "https://attacker.example/confirm"});
    let (s, _) = post(
        &app,
        evil.to_string(),
        Some(TOKEN),
        Some("SubscriptionConfirmation"),
    )
    .await;
    assert_eq!(s, 400);

    let closed = spawn_app_with("").await;
    let (s, body) = post(&closed, "{}".into(), Some(TOKEN), None).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("forbidden")));
}

#[tokio::test]
async fn the_embedded_store_commits_in_process_without_complete() {
    if crate::common::on_s3() {
        // Only the embedded store can tell the broker in-process; on other
        // stores notifications and the reconciler do it (tested above).
        return;
    }
    let app = spawn_app_with("[reconciler]\nenabled = false\n").await;
    let token = app.token("alice");
    let (id, _) = uploaded_not_completed(&app, &token).await;
    let mut last = String::new();
    for _ in 0..100 {
        last = status(&app, &token, &id).await;
        if last == "committed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(last, "committed", "the PUT alone commits the upload");
}
