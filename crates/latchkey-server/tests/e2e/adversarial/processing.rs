//! Processing: every hostile file in `../shared/testdata/`, declared as
//! the image type a client would lie with, fails its own upload with the
//! stated reason, is never served, and leaves no bytes in the bucket;
//! what the pipeline accepts is served rewritten.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{id, keys, problem};
use crate::common::{TestApp, sha256_hex, spawn_app, testdata};

async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..1200 {
        let row = super::row(app, token, id).await;
        if row.body["status"] != "processing" {
            return row.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("upload {id} is still processing");
}

fn photo(name: &str, ct: &str, bytes: &[u8]) -> Value {
    json!({"profile": "photo", "filename": name, "content_type": ct,
           "size": bytes.len(), "sha256": sha256_hex(bytes)})
}

#[tokio::test]
async fn hostile_files_fail_only_their_own_upload() {
    let app = spawn_app().await;
    let alice = app.token("alice");
    // (file, the type the client claims, the reasons the pipeline may give)
    let hostile: &[(&str, &str, &[&str])] = &[
        ("bomb-900mp.png", "image/png", &["too_many_pixels"]),
        (
            "bomb-header-65500.jpg",
            "image/jpeg",
            &["too_many_pixels", "decode_failed"],
        ),
        ("truncated.jpg", "image/jpeg", &["decode_failed"]),
        ("html-as-jpg.jpg", "image/jpeg", &["not_an_image"]),
        ("html-as-jpg.jpg", "image/png", &["not_an_image"]),
        ("script.svg", "image/png", &["not_an_image"]),
        // A real JPEG declared as PNG: the magic bytes must match.
        (
            "small-gps.jpg",
            "image/png",
            &["not_an_image", "type_mismatch"],
        ),
    ];
    let mut ids = Vec::new();
    for (name, ct, _) in hostile {
        let bytes = testdata(name);
        let c = app.create(&alice, photo(name, ct, &bytes)).await;
        assert_eq!(c.status, 201, "{name}: {}", c.text);
        assert_eq!(
            app.put_grant(&c.body, bytes, |_| {}).await.status,
            200,
            "{name}"
        );
        let done = app.complete(&alice, id(&c.body)).await;
        assert_eq!(done.status, 200, "{name}: {}", done.text);
        ids.push((
            id(&c.body).to_owned(),
            c.body["key"].as_str().unwrap().to_owned(),
        ));
    }
    // A good photo beside them is not held up by them.
    let good = testdata("small-gps.jpg");
    let c = app
        .create(&alice, photo("ok.jpg", "image/jpeg", &good))
        .await
        .body;
    assert_eq!(app.put_grant(&c, good, |_| {}).await.status, 200);
    assert_eq!(app.complete(&alice, id(&c)).await.status, 200);
    assert_eq!(settled(&app, &alice, id(&c)).await["status"], "committed");

    for ((name, ct, reasons), (id, key)) in hostile.iter().zip(&ids) {
        let row = settled(&app, &alice, id).await;
        assert_eq!(row["status"], "rejected", "{name} as {ct}: {row}");
        let reason = row["reason"].as_str().unwrap();
        assert!(reasons.contains(&reason), "{name} as {ct}: {reason}");
        let again = app.complete(&alice, id).await;
        assert_eq!(again.body["code"], reason, "{name}: {}", again.text);
        let dl = app
            .call(
                Method::GET,
                &format!("/v1/uploads/{id}/download"),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(dl.status, 409, "{name}: nothing rejected is served");
        let stem = key.rsplit_once('.').map_or(key.as_str(), |(s, _)| s);
        let left: Vec<String> = keys(&app)
            .await
            .into_iter()
            .filter(|k| k.starts_with(stem))
            .collect();
        assert!(
            left.is_empty(),
            "{name}: rejected bytes left in the bucket: {left:?}"
        );
    }
}

#[tokio::test]
async fn svg_and_polyglots_never_reach_a_browser_as_uploaded() {
    let app = spawn_app().await;
    let alice = app.token("alice");
    let svg = testdata("script.svg");
    let res = app
        .create(&alice, photo("x.svg", "image/svg+xml", &svg))
        .await;
    problem(&res, 400, "type_not_allowed", "svg as a photo");

    let poly = testdata("polyglot.jpg");
    let c = app
        .create(&alice, photo("p.jpg", "image/jpeg", &poly))
        .await
        .body;
    assert_eq!(app.put_grant(&c, poly.clone(), |_| {}).await.status, 200);
    assert_eq!(app.complete(&alice, id(&c)).await.status, 200);
    assert_eq!(settled(&app, &alice, id(&c)).await["status"], "committed");
    let dl = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{}/download", id(&c)),
            Some(&alice),
            None,
        )
        .await;
    let got = app
        .http
        .get(dl.body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], "image/jpeg");
    let served = got.bytes().await.unwrap();
    assert!(served.len() < poly.len());
    assert!(
        !served.windows(5).any(|w| w == b"<?php"),
        "the PHP trailer is gone"
    );
    assert!(
        !served.windows(4).any(|w| w == b"PK\x03\x04"),
        "the ZIP trailer is gone"
    );

    // A file upload (no processing) of HTML is downloaded as an attachment,
    // never rendered inline from the store's origin.
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let c = app
        .create(
            &alice,
            json!({"profile": "file", "filename": "x.html", "content_type": "text/html",
                               "size": html.len(), "sha256": sha256_hex(&html)}),
        )
        .await
        .body;
    assert_eq!(app.put_grant(&c, html, |_| {}).await.status, 200);
    assert_eq!(
        app.complete(&alice, id(&c)).await.body["status"],
        "committed"
    );
    let dl = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{}/download", id(&c)),
            Some(&alice),
            None,
        )
        .await;
    let got = app
        .http
        .get(dl.body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "text/html");
    let disposition = got
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        disposition
            .as_deref()
            .is_some_and(|d| d.starts_with("attachment")),
        "{disposition:?}"
    );
}
