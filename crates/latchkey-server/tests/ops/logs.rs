//! Request logs in JSON: method, route, status, latency and request id on
//! every line; the request id echoed to the client; query strings (where
//! presigned signatures live) never logged.

use serde_json::Value;

use crate::common::{log_lines, spawn_app};

/// The request log line (`message = "response"`) of one request id.
fn response_line(request_id: &str) -> Value {
    let lines = log_lines();
    lines
        .iter()
        .find(|l| l["span"]["request_id"] == request_id && l["message"] == "response")
        .cloned()
        .unwrap_or_else(|| panic!("no response line for {request_id} in {lines:#?}"))
}

#[tokio::test]
async fn request_logs_are_json_with_route_status_latency_and_request_id() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let res = app
        .http
        .get(app.url("/v1/uploads?X-Amz-Credential=ops-cred&X-Amz-Signature=ops-leaky-signature"))
        .bearer_auth(&token)
        .header("x-request-id", "ops-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["x-request-id"], "ops-test-1");

    let line = response_line("ops-test-1");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 400);
    assert_eq!(line["code"], "invalid_request");
    assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["route"], "/v1/uploads");
    assert_eq!(line["span"]["path"], "/v1/uploads");

    let all = String::from_utf8_lossy(&crate::common::logs().lock().unwrap()).to_string();
    for secret in ["ops-leaky-signature", "ops-cred", "X-Amz-Signature"] {
        assert!(!all.contains(secret), "{secret} reached the logs");
    }
}

#[tokio::test]
async fn a_request_id_is_generated_when_absent_or_unusable() {
    let app = spawn_app().await;
    let upload = "0196a3c4-0000-7000-8000-000000000000";
    for sent in [None, Some("has spaces and\ttabs"), Some(&*"x".repeat(200))] {
        let mut req = app
            .http
            .get(app.url(&format!("/v1/uploads/{upload}")))
            .bearer_auth(app.token("bob"));
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 404);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "a UUID, not {id:?}");
        assert_ne!(Some(id.as_str()), sent);
        let line = response_line(&id);
        assert_eq!(line["span"]["route"], "/v1/uploads/{id}");
        assert_eq!(line["span"]["path"], format!("/v1/uploads/{upload}"));
        assert_eq!(line["code"], "not_found");
    }
}
