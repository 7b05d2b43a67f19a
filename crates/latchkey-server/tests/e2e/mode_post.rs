//! `post` mode: the browser form a web page sends (multipart/form-data, the
//! grant's fields then the file). The store enforces the policy: exact key,
//! exact type, exact size, the checksum, expiry, no extra fields. Every
//! refused form leaves the row pending and `complete` commits nothing.

use serde_json::{Value, json};

use crate::common::{Res, TestApp, on_s3, photo_request, spawn_app, spawn_app_with, testdata};

fn post_request(name: &str, content_type: &str, bytes: &[u8]) -> Value {
    let mut req = photo_request(name, content_type, bytes);
    req["mode"] = json!("post");
    req
}

/// Sends the grant's form as a browser would: every field, then the file.
/// `tweak` edits the fields first (to tamper with them).
async fn post_form(
    app: &TestApp,
    created: &Value,
    file: Vec<u8>,
    tweak: impl FnOnce(&mut Vec<(String, String)>),
) -> Res {
    let grant = &created["grant"];
    let mut fields: Vec<(String, String)> = grant["fields"]
        .as_object()
        .unwrap_or_else(|| panic!("no fields in {created}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    tweak(&mut fields);
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k, v);
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name("photo.jpg"),
    );
    let res = app
        .http
        .post(grant["url"].as_str().unwrap())
        .multipart(form)
        .send()
        .await
        .unwrap();
    Res {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        text: res.text().await.unwrap(),
        body: Value::Null,
    }
}

async fn assert_still_pending(app: &TestApp, token: &str, id: &str) {
    let done = app.complete(token, id).await;
    assert_eq!(done.status, 409, "{}", done.text);
    assert_eq!(done.body["code"], "object_missing");
    let row = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(row.body["status"], "pending");
}

/// A refusal of a policy violation: 403 as on AWS and the embedded store;
/// Garage refuses these with 400.
fn assert_denied(res: &Res, what: &str) {
    assert!(
        res.status == 403 || (on_s3() && res.status == 400),
        "{what}: {} {}",
        res.status,
        res.text
    );
}

async fn download(app: &TestApp, token: &str, id: &str) -> Vec<u8> {
    let dl = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}/download"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(dl.status, 200, "{}", dl.text);
    let got = app
        .http
        .get(dl.body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    got.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn a_form_upload_round_trips_byte_for_byte() {
    let app = spawn_app().await;
    let token = app.token("alice");
    for (name, ct) in [("small-gps.jpg", "image/jpeg"), ("photo.png", "image/png")] {
        let bytes = testdata(name);
        let created = app.create(&token, post_request(name, ct, &bytes)).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let c = &created.body;
        assert_eq!(c["mode"], "post");
        assert!(c["server_time"].is_string());
        let grant = &c["grant"];
        assert_eq!(grant["method"], "POST");
        assert!(grant["expires_at"].is_string());
        assert!(
            grant
                .get("headers")
                .is_none_or(|h| h.as_object().unwrap().is_empty())
        );
        let url = grant["url"].as_str().unwrap();
        assert!(
            !url.contains('?'),
            "the form action is not presigned: {url}"
        );
        let fields = &grant["fields"];
        let key = c["key"].as_str().unwrap();
        if app.if_none_match {
            assert_eq!(fields["key"], key);
        } else {
            assert_eq!(fields["key"], format!("{key}.upload"));
        }
        assert_eq!(fields["Content-Type"], ct);
        assert_eq!(fields["success_action_status"], "201");
        assert_eq!(fields["x-amz-meta-upload-id"], c["id"]);
        assert_eq!(fields["x-amz-algorithm"], "AWS4-HMAC-SHA256");
        for f in [
            "policy",
            "x-amz-signature",
            "x-amz-credential",
            "x-amz-date",
        ] {
            assert!(fields[f].is_string(), "{f} missing: {fields}");
        }
        // The policy the store will check says exactly this.
        let policy = base64_decode(fields["policy"].as_str().unwrap());
        let policy: Value = serde_json::from_slice(&policy).unwrap();
        let size = bytes.len() as u64;
        assert!(
            policy["conditions"].as_array().unwrap().contains(&json!([
                "content-length-range",
                size,
                size
            ])),
            "{policy}"
        );

        let res = post_form(&app, c, bytes.clone(), |_| {}).await;
        assert_eq!(res.status, 201, "{name}: {}", res.text);
        // AWS and the embedded store say <PostResponse>, Garage <PostObject>.
        assert!(
            res.text
                .contains(&format!("<Key>{}</Key>", fields["key"].as_str().unwrap())),
            "{}",
            res.text
        );
        assert!(res.text.contains("<ETag>"), "{}", res.text);

        let id = c["id"].as_str().unwrap();
        let done = app.complete(&token, id).await;
        assert_eq!(done.status, 200, "{}", done.text);
        assert_eq!(done.body["status"], "committed");
        assert_eq!(download(&app, &token, id).await, bytes, "{name}");
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn forms_that_break_the_policy_are_refused_and_nothing_commits() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let create = || app.create(&token, post_request("a.jpg", "image/jpeg", &bytes));

    // One byte more than the grant: content-length-range refuses it.
    let c = create().await.body;
    let mut longer = bytes.clone();
    longer.push(0);
    let res = post_form(&app, &c, longer, |_| {}).await;
    assert_eq!(res.status, 400, "longer file: {}", res.text);
    if !on_s3() {
        assert!(res.text.contains("EntityTooLarge"), "{}", res.text);
    }
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;

    // One byte fewer.
    let c = create().await.body;
    let res = post_form(&app, &c, bytes[..bytes.len() - 1].to_vec(), |_| {}).await;
    assert_eq!(res.status, 400, "shorter file: {}", res.text);
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;

    // Other bytes of the same length: the checksum in the policy refuses them.
    let c = create().await.body;
    let mut flipped = bytes.clone();
    flipped[100] ^= 0xff;
    let res = post_form(&app, &c, flipped, |_| {}).await;
    assert_eq!(res.status, 400, "other bytes: {}", res.text);
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;

    // A field the policy does not cover.
    for (name, value) in [
        ("x-amz-meta-owner", "mallory"),
        ("acl", "public-read"),
        ("x-amz-server-side-encryption", "AES256"),
    ] {
        let c = create().await.body;
        let res = post_form(&app, &c, bytes.clone(), |f| {
            f.push((name.into(), value.into()));
        })
        .await;
        assert_denied(&res, name);
        assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;
    }

    // A key outside the grant, with the grant's valid policy and signature.
    let c = create().await.body;
    let res = post_form(&app, &c, bytes.clone(), |f| {
        for (k, v) in f.iter_mut() {
            if k == "key" {
                *v = v
                    .replace("/u/alice/", "/u/mallory/")
                    .replace("u/alice/", "u/mallory/");
            }
        }
    })
    .await;
    assert_denied(&res, "other key");
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;

    // Another content type.
    let c = create().await.body;
    let res = post_form(&app, &c, bytes.clone(), |f| {
        for (k, v) in f.iter_mut() {
            if k == "Content-Type" {
                *v = "text/html".into();
            }
        }
    })
    .await;
    assert_denied(&res, "other type");
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;

    // A tampered signature.
    let c = create().await.body;
    let res = post_form(&app, &c, bytes.clone(), |f| {
        for (k, v) in f.iter_mut() {
            if k == "x-amz-signature" {
                let flip = if v.starts_with('0') { "1" } else { "0" };
                v.replace_range(0..1, flip);
            }
        }
    })
    .await;
    assert_eq!(res.status, 403, "tampered signature: {}", res.text);
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;

    // A tampered policy (a wider size range) under the old signature.
    let c = create().await.body;
    let res = post_form(&app, &c, bytes.clone(), |f| {
        for (k, v) in f.iter_mut() {
            if k == "policy" {
                let policy = String::from_utf8(base64_decode(v)).unwrap();
                let size = bytes.len();
                let wider = policy.replace(
                    &format!("[\"content-length-range\",{size},{size}]"),
                    &format!("[\"content-length-range\",0,{}]", size * 10),
                );
                assert_ne!(wider, policy);
                use base64::Engine as _;
                *v = base64::engine::general_purpose::STANDARD.encode(wider);
            }
        }
    })
    .await;
    assert_eq!(res.status, 403, "tampered policy: {}", res.text);
    assert_still_pending(&app, &token, c["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn an_expired_form_is_refused_by_the_store() {
    let app = spawn_app_with("[profiles.short]\ngrant_ttl = \"1s\"\n").await;
    let token = app.token("alice");
    let bytes = b"hello".to_vec();
    let c = app
        .create(
            &token,
            json!({"profile": "short", "filename": "a.txt", "content_type": "text/plain",
                   "size": 5, "mode": "post"}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let res = post_form(&app, &c.body, bytes, |_| {}).await;
    assert_denied(&res, "expired form");
    assert_still_pending(&app, &token, c.body["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn form_grants_never_outlive_fifteen_minutes() {
    let app = spawn_app_with("[profiles.long]\ngrant_ttl = \"2h\"\n").await;
    let token = app.token("alice");
    let c = app
        .create(
            &token,
            json!({"profile": "long", "filename": "a.txt", "content_type": "text/plain",
                   "size": 5, "mode": "post"}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let grant_expiry = parse(&c.body["grant"]["expires_at"]);
    let server_time = parse(&c.body["server_time"]);
    assert!(grant_expiry <= server_time + time::Duration::minutes(15));
    assert!(grant_expiry > server_time + time::Duration::minutes(14));
}
