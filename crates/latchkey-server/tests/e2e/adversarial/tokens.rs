//! Tokens: every forged, stale, misdirected or malformed credential is a
//! 401 `unauthorized` problem (with `WWW-Authenticate: Bearer`), and an API
//! key only reaches what API keys may.
//!
//! The RSA keys under `fixtures/` are test-only keys made for this suite
//! (`jwks.json` is the public half of `rsa-private.pem`; `rsa-other.pem` is
//! a key the broker does not know).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::problem;
use crate::common::{TestApp, spawn_app_with};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/e2e/adversarial/fixtures"
);
const ISSUER: &str = "https://auth.example.test/";
const AUDIENCE: &str = "latchkey-adversarial";
const API_KEY: &str = "lk_adversarial_test_key_0123456789";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 3600, "iss": ISSUER, "aud": AUDIENCE})
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    if v.is_null() {
        c.as_object_mut().unwrap().remove(key);
    } else {
        c[key] = v;
    }
    c
}

fn rs256(pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_owned);
    encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(&fixture(pem)).unwrap(),
    )
    .unwrap()
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// An app that verifies RS256 tokens from a JWKS only, with issuer and
/// audience checked, and knows one API key.
async fn jwks_app() -> TestApp {
    let hash = crate::common::sha256_hex(API_KEY.as_bytes());
    spawn_app_with(&format!(
        "[auth]\njwks_file = {:?}\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\napi_keys = [\"sha256:{hash}\"]\n",
        format!("{FIXTURES}/jwks.json"),
    ))
    .await
}

async fn get_with_header(app: &TestApp, path: &str, auth: Option<&str>) -> crate::common::Res {
    let mut req = app.http.get(format!("{}{path}", app.base));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    crate::common::Res {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

#[tokio::test]
async fn forged_stale_and_misdirected_tokens_are_401() {
    let app = jwks_app().await;
    let good = rs256("rsa-private.pem", Some("test-1"), &claims());
    let public_pem = fixture("rsa-public.pem");
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims().to_string()),
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                rs256(
                    "rsa-private.pem",
                    None,
                    &with(claims(), "exp", json!(now() - 3600))
                )
            )),
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                rs256(
                    "rsa-private.pem",
                    None,
                    &with(claims(), "nbf", json!(now() + 3600))
                )
            )),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                rs256(
                    "rsa-private.pem",
                    None,
                    &with(claims(), "iss", json!("https://evil.example/"))
                )
            )),
        ),
        (
            "no issuer",
            Some(format!(
                "Bearer {}",
                rs256("rsa-private.pem", None, &with(claims(), "iss", Value::Null))
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                rs256(
                    "rsa-private.pem",
                    None,
                    &with(claims(), "aud", json!("other-app"))
                )
            )),
        ),
        (
            "no audience",
            Some(format!(
                "Bearer {}",
                rs256("rsa-private.pem", None, &with(claims(), "aud", Value::Null))
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                rs256("rsa-private.pem", None, &with(claims(), "sub", Value::Null))
            )),
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                rs256("rsa-other.pem", None, &claims())
            )),
        ),
        (
            "wrong key under the known kid",
            Some(format!(
                "Bearer {}",
                rs256("rsa-other.pem", Some("test-1"), &claims())
            )),
        ),
        (
            "unknown kid",
            Some(format!(
                "Bearer {}",
                rs256("rsa-private.pem", Some("nope"), &claims())
            )),
        ),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "HS256 signed with the JWKS public key (RS/HS confusion)",
            Some(format!("Bearer {}", hs256(&public_pem, &claims()))),
        ),
        (
            "signature stripped",
            Some(format!("Bearer {}.", good.rsplit_once('.').unwrap().0)),
        ),
        ("huge", Some(format!("Bearer {}", "a".repeat(60_000)))),
        ("garbage", Some("Bearer !!!.???.***".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("basic scheme", Some("Basic YWxpY2U6cGFzcw==".into())),
        ("unknown API key", Some("Bearer lk_not_a_key".into())),
    ];
    for (what, auth) in cases {
        let res = get_with_header(&app, "/v1/uploads", auth.as_deref()).await;
        problem(&res, 401, "unauthorized", what);
        assert_eq!(res.headers["www-authenticate"], "Bearer", "{what}");
        assert!(!res.text.contains("alice"), "{what}: {}", res.text);
    }
    // The control: the right key, issuer and audience.
    let ok = get_with_header(&app, "/v1/uploads", Some(&format!("Bearer {good}"))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn api_keys_only_reach_what_api_keys_may() {
    let app = jwks_app().await;
    let user = rs256("rsa-private.pem", None, &claims());
    let key = format!("Bearer {API_KEY}");

    // An API key on a user route must say which user it acts for.
    let res = get_with_header(&app, "/v1/uploads", Some(&key)).await;
    problem(
        &res,
        400,
        "invalid_request",
        "API key without X-Latchkey-User",
    );
    // … and a user it names must be a valid user id.
    let res = app
        .http
        .get(format!("{}/v1/uploads", app.base))
        .header("authorization", &key)
        .header("x-latchkey-user", "ali\tce")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // A user token on the backend-only route is forbidden, whatever the id.
    let attach = app
        .call(
            reqwest::Method::POST,
            "/v1/uploads/0195f0c4aaaa7bbb8ccc000000000000/attach",
            Some(&user),
            Some(json!({"ref": "post:1"})),
        )
        .await;
    problem(&attach, 403, "forbidden", "user token on attach");

    // A backend acting for bob sees none of alice's uploads.
    let created = app
        .create(
            &user,
            json!({"profile": "file", "filename": "a.txt", "content_type": "text/plain", "size": 1}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    let res = app
        .http
        .get(format!("{}/v1/uploads/{id}", app.base))
        .header("authorization", &key)
        .header("x-latchkey-user", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .http
        .get(format!("{}/v1/uploads/{id}", app.base))
        .header("authorization", &key)
        .header("x-latchkey-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
