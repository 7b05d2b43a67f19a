//! One user can never reach another's uploads; the answer is 404, not 403,
//! so ids cannot be probed.

use crate::common::{photo_request, spawn_app, testdata};

#[tokio::test]
async fn other_users_get_404_everywhere() {
    let app = spawn_app().await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(&alice, photo_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    let id = c["id"].as_str().unwrap();
    assert_eq!(app.put_grant(&c, bytes, |_| {}).await.status, 200);

    use reqwest::Method;
    let routes = [
        (Method::GET, format!("/v1/uploads/{id}")),
        (Method::POST, format!("/v1/uploads/{id}/complete")),
        (Method::GET, format!("/v1/uploads/{id}/download")),
        (Method::DELETE, format!("/v1/uploads/{id}")),
    ];
    for (m, path) in &routes {
        let res = app
            .call(m.clone(), path, Some(&bob), Some(serde_json::json!({})))
            .await;
        assert_eq!(res.status, 404, "{m} {path}: {}", res.text);
        assert_eq!(res.body["code"], "not_found");
    }
    let list = app.call(Method::GET, "/v1/uploads", Some(&bob), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 0);

    // Bob's probing changed nothing: Alice can still commit and delete.
    assert_eq!(app.complete(&alice, id).await.body["status"], "committed");
    let del = app
        .call(
            Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(del.body["status"], "deleted");
    let dl = app
        .call(
            Method::GET,
            &format!("/v1/uploads/{id}/download"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(dl.status, 409);

    // Malformed and unknown ids are 404 too.
    for bad in [
        "nope",
        "../../etc/passwd",
        "0195f0c4aaaa7bbb8ccc000000000000",
    ] {
        let res = app
            .call(
                Method::GET,
                &format!("/v1/uploads/{bad}"),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(res.status, 404, "{bad}");
    }
}

#[tokio::test]
async fn abort_removes_a_pending_upload() {
    let app = spawn_app().await;
    let alice = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(&alice, photo_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    let id = c["id"].as_str().unwrap();
    let del = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(del.status, 200);
    assert_eq!(del.body["status"], "aborted");
    let again = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/uploads/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(again.body["status"], "aborted");
    let done = app.complete(&alice, id).await;
    assert_eq!(done.status, 409);
}
