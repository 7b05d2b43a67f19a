//! Tokens that must be refused, each with a 401 problem.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use crate::common::spawn_app;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn hs256(secret: &str, claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_tokens_get_401_problems() {
    let app = spawn_app().await;
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(json!({"sub": "alice", "exp": now() + 3600}).to_string()),
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        (
            "expired",
            Some(hs256(
                &app.jwt_secret,
                json!({"sub": "alice", "exp": now() - 3600}),
            )),
        ),
        (
            "not yet valid",
            Some(hs256(
                &app.jwt_secret,
                json!({"sub": "alice", "exp": now() + 7200, "nbf": now() + 3600}),
            )),
        ),
        (
            "other secret",
            Some(hs256(
                "not-the-secret",
                json!({"sub": "alice", "exp": now() + 3600}),
            )),
        ),
        (
            "no sub",
            Some(hs256(&app.jwt_secret, json!({"exp": now() + 3600}))),
        ),
        ("alg none", Some(alg_none)),
        ("garbage", Some("garbage".into())),
        ("huge", Some("a".repeat(20_000))),
    ];
    for (what, token) in cases {
        for path in [
            "/v1/uploads",
            "/v1/uploads/0195f0c4aaaa7bbb8ccc000000000000",
        ] {
            let res = app
                .call(reqwest::Method::GET, path, token.as_deref(), None)
                .await;
            assert_eq!(res.status, 401, "{what} on {path}: {}", res.text);
            assert_eq!(res.body["code"], "unauthorized", "{what}");
            assert_eq!(res.headers["content-type"], "application/problem+json");
        }
    }
    let ok = app
        .call(
            reqwest::Method::GET,
            "/v1/uploads",
            Some(&app.token("alice")),
            None,
        )
        .await;
    assert_eq!(ok.status, 200);
}
