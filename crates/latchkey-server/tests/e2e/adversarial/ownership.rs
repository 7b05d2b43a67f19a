//! Ownership: every route that takes an upload id answers another user's
//! id exactly as it answers an id that does not exist (404 `not_found`), so
//! ids cannot be probed; and ids cannot be guessed from each other.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::json;

use super::{id, row};
use crate::common::{sha256_hex, spawn_app_with};

const API_KEY: &str = "lk_ownership_test_key_0123456789";

#[tokio::test]
async fn another_users_id_is_404_on_every_route() {
    let hash = sha256_hex(API_KEY.as_bytes());
    let app = spawn_app_with(&format!("[auth]\napi_keys = [\"sha256:{hash}\"]\n")).await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let mk = |mode: &str| {
        json!({"profile": "file", "filename": "a.txt", "content_type": "text/plain",
               "size": 4, "mode": mode})
    };
    let put = app.create(&alice, mk("put")).await.body;
    let multipart = app.create(&alice, mk("multipart")).await;
    let proxy = app.create(&alice, mk("proxy")).await.body;
    let mut ids = vec![id(&put).to_owned(), id(&proxy).to_owned()];
    if multipart.status == 201 {
        ids.push(id(&multipart.body).to_owned());
    }
    let key = put["key"].as_str().unwrap().to_owned();

    for target in &ids {
        let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
            (Method::GET, format!("/v1/uploads/{target}"), None),
            (Method::DELETE, format!("/v1/uploads/{target}"), None),
            (
                Method::POST,
                format!("/v1/uploads/{target}/complete"),
                Some(json!({})),
            ),
            (Method::GET, format!("/v1/uploads/{target}/download"), None),
            (Method::GET, format!("/v1/uploads/{target}/parts"), None),
            (
                Method::POST,
                format!("/v1/uploads/{target}/parts"),
                Some(json!({"numbers": [1]})),
            ),
            (
                Method::GET,
                format!("/s3/multipart/{target}?key={key}"),
                None,
            ),
            (
                Method::GET,
                format!("/s3/multipart/{target}/1?key={key}"),
                None,
            ),
            (
                Method::POST,
                format!("/s3/multipart/{target}/complete?key={key}"),
                Some(json!({"parts": []})),
            ),
            (
                Method::DELETE,
                format!("/s3/multipart/{target}?key={key}"),
                None,
            ),
        ];
        for (m, path, body) in routes {
            let res = app.call(m.clone(), &path, Some(&bob), body).await;
            assert_eq!(res.status, 404, "{m} {path}: {}", res.text);
        }
        // The proxy body route and tus, each with its own headers.
        let res = app
            .http
            .put(format!("{}/v1/uploads/{target}/content", app.base))
            .bearer_auth(&bob)
            .header("content-type", "text/plain")
            .body("abcd")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "PUT content");
        for m in [Method::HEAD, Method::PATCH, Method::DELETE] {
            let res = app
                .http
                .request(m.clone(), format!("{}/tus/{target}", app.base))
                .bearer_auth(&bob)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", "0")
                .header("content-type", "application/offset+octet-stream")
                .body(if m == Method::PATCH { "abcd" } else { "" })
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 404, "{m} /tus/{target}");
        }
        // A backend acting for bob cannot attach alice's upload.
        let res = app
            .http
            .post(format!("{}/v1/uploads/{target}/attach", app.base))
            .bearer_auth(API_KEY)
            .header("x-latchkey-user", "bob")
            .json(&json!({"ref": "post:1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "attach acting for bob");
        // Nothing bob did changed alice's row.
        assert_eq!(row(&app, &alice, target).await.body["status"], "pending");
    }
    let list = app.call(Method::GET, "/v1/uploads", Some(&bob), None).await;
    assert_eq!(list.body["items"], json!([]));
    // Alice can still finish hers.
    assert_eq!(
        app.put_grant(&put, b"abcd".to_vec(), |_| {}).await.status,
        200
    );
    assert_eq!(
        app.complete(&alice, id(&put)).await.body["status"],
        "committed"
    );
}

#[tokio::test]
async fn ids_are_not_guessable() {
    let app = spawn_app_with("[limits]\ngrants_per_minute = 0\n").await;
    let alice = app.token("alice");
    let body = json!({"profile": "file", "filename": "a", "content_type": "text/plain", "size": 1});
    let mut ids = Vec::new();
    for _ in 0..40 {
        let res = app.create(&alice, body.clone()).await;
        assert_eq!(res.status, 201, "{}", res.text);
        ids.push(id(&res.body).replace('-', ""));
    }
    // UUIDv7: 48 bits of time, then 74 random bits. Ids made in the same
    // millisecond share the time, never the random tail.
    let tails: HashSet<&str> = ids.iter().map(|i| &i[13..]).collect();
    assert_eq!(tails.len(), ids.len());
    // A neighbour of a real id (last digit changed) is nobody's upload,
    // not even the owner's: the random bits are the whole secret.
    for real in ids.iter().take(5) {
        let mut near = real.clone();
        let last = near.pop().unwrap();
        near.push(if last == '0' { '1' } else { '0' });
        let res = app
            .call(
                Method::GET,
                &format!("/v1/uploads/{near}"),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(res.status, 404, "{near}");
    }
    // The random tails differ in about half their bits.
    let bits = |a: &str, b: &str| -> u32 {
        let x = u128::from_str_radix(&a[13..], 16).unwrap();
        let y = u128::from_str_radix(&b[13..], 16).unwrap();
        (x ^ y).count_ones()
    };
    let mean: f64 = ids
        .windows(2)
        .map(|w| bits(&w[0], &w[1]) as f64)
        .sum::<f64>()
        / (ids.len() - 1) as f64;
    assert!(
        mean > 20.0,
        "random tails look correlated: {mean} bits differ on average"
    );
}
