//! The background workers end to end: webhooks reach a real receiver,
//! signed and retried; the reconciler commits what a crashed client left
//! and expires what never arrived; the sweep removes objects nobody owns.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{photo_request, spawn_app_with, testdata};

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// An app backend that fails its first delivery, then accepts.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let mut v = s.lock().unwrap();
                v.push((headers, body));
                if v.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Polls until `f` is true; the suite never asserts on elapsed time.
async fn eventually(mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn committed_uploads_are_announced_by_signed_webhook_with_retry() {
    let (url, seen) = receiver().await;
    let key = base64::engine::general_purpose::STANDARD.encode(b"test-webhook-key-32-bytes-long!!");
    let app = spawn_app_with(&format!(
        "[webhooks]\nurl = {url:?}\nsecret = \"whsec_{key}\"\npoll = \"100ms\"\nretry_base = \"200ms\"\n"
    ))
    .await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(&token, photo_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    assert_eq!(app.put_grant(&c, bytes, |_| {}).await.status, 200);
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(app.complete(&token, &id).await.status, 200);
    app.complete(&token, &id).await;

    eventually(async || seen.lock().unwrap().len() >= 2).await;
    let seen = seen.lock().unwrap().clone();
    let (h0, b0) = &seen[0];
    let (h1, b1) = &seen[1];
    assert_eq!(
        h0["webhook-id"], h1["webhook-id"],
        "a retry keeps its message id"
    );
    assert_eq!(b0, b1);
    for (h, body) in &seen {
        let msg = h["webhook-id"].to_str().unwrap();
        let ts = h["webhook-timestamp"].to_str().unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"test-webhook-key-32-bytes-long!!").unwrap();
        mac.update(format!("{msg}.{ts}.{body}").as_bytes());
        let want = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(h["webhook-signature"].to_str().unwrap(), want);
    }
    let event: Value = serde_json::from_str(b1).unwrap();
    assert_eq!(event["type"], "upload.committed");
    assert_eq!(event["data"]["id"], json!(id));
    // Two completes, one transition, one event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<Value> = seen
        .iter()
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect();
    assert!(
        bodies
            .iter()
            .all(|b| b["data"]["id"] == json!(id) && b["type"] == "upload.committed")
    );
}

#[tokio::test]
async fn reconciler_commits_what_arrived_and_expires_what_did_not() {
    // Grants start at a whole second (X-Amz-Date has no fraction) and the
    // row's `expires_at` with them, so a 1 s grant may have only a few ms
    // left when the client gets it: 2 s leaves at least one for the PUT.
    let app = spawn_app_with(
        "[profiles.short]\ngrant_ttl = \"2s\"\n[reconciler]\nevery = \"200ms\"\ngrace = \"0s\"\n",
    )
    .await;
    let token = app.token("alice");
    let body =
        json!({"profile": "short", "filename": "a.txt", "content_type": "text/plain", "size": 5});
    // The client PUT its bytes and crashed before completing.
    let crashed = app.create(&token, body.clone()).await.body;
    assert_eq!(
        app.put_grant(&crashed, b"hello".to_vec(), |_| {})
            .await
            .status,
        200
    );
    // The client never uploaded at all.
    let never = app.create(&token, body).await.body;

    let status = |id: String| {
        let app = &app;
        let token = token.clone();
        async move {
            app.call(
                reqwest::Method::GET,
                &format!("/v1/uploads/{id}"),
                Some(&token),
                None,
            )
            .await
            .body["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let crashed_id = crashed["id"].as_str().unwrap().to_owned();
    let never_id = never["id"].as_str().unwrap().to_owned();
    eventually(async || status(crashed_id.clone()).await == "committed").await;
    eventually(async || status(never_id.clone()).await == "expired").await;
    let done = app.complete(&token, &never_id).await;
    assert_eq!(done.status, 410);
    assert_eq!(done.body["code"], "expired");
}

#[tokio::test]
async fn the_reconciler_aborts_multipart_uploads_nobody_owns() {
    let app =
        spawn_app_with("[reconciler]\nevery = \"200ms\"\ngrace = \"0s\"\norphan_grace = \"1s\"\n")
            .await;
    let s3 = crate::adversarial::admin(&app);
    // A multipart upload under a managed prefix that no row owns, as a broker
    // that crashed mid-proxy would leave one.
    let stray = s3
        .create_multipart_upload()
        .bucket(&app.bucket)
        .key("u/alice/file/stray.bin")
        .send()
        .await
        .unwrap();
    let open = || async {
        s3.list_multipart_uploads()
            .bucket(&app.bucket)
            .prefix("u/")
            .send()
            .await
            .unwrap()
            .uploads()
            .iter()
            .filter_map(|u| u.upload_id().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert!(
        open()
            .await
            .contains(&stray.upload_id().unwrap().to_owned())
    );
    eventually(async || open().await.is_empty()).await;
}

#[tokio::test]
async fn the_sweep_removes_every_object_no_live_upload_owns() {
    let app =
        spawn_app_with("[reconciler]\nevery = \"200ms\"\ngrace = \"0s\"\norphan_grace = \"1s\"\n")
            .await;
    let s3 = crate::adversarial::admin(&app);
    // A committed upload: its object is owned and must stay.
    let token = app.token("alice");
    let body =
        json!({"profile": "file", "filename": "a.txt", "content_type": "text/plain", "size": 5});
    let grant = app.create(&token, body).await.body;
    assert_eq!(
        app.put_grant(&grant, b"hello".to_vec(), |_| {})
            .await
            .status,
        200
    );
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(app.complete(&token, &id).await.status, 200);
    let owned = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Objects under a managed prefix that no row owns, several of them, so
    // one pass removes them together (one DeleteObjects for the page). Not
    // under a profile's prefix: there a `credentials`-mode profile would
    // adopt them as uploads.
    let strays: Vec<String> = (0..5)
        .map(|i| format!("u/alice/no-such-profile/stray-{i}.bin"))
        .collect();
    for key in &strays {
        s3.put_object()
            .bucket(&app.bucket)
            .key(key)
            .body(b"stray".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let keys = || async {
        s3.list_objects_v2()
            .bucket(&app.bucket)
            .prefix("u/")
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let before = keys().await;
    assert!(strays.iter().all(|s| before.contains(s)), "{before:?}");
    eventually(async || keys().await == vec![owned.clone()]).await;
}
