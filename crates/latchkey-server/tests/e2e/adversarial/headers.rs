//! Security headers on every answer, a strict CSP on the demo page, and
//! CORS limited to the configured origins.

use crate::common::spawn_app_with;

#[tokio::test]
async fn every_response_carries_security_headers_and_cors_is_exact() {
    let app = spawn_app_with("[server]\ncors_origins = [\"https://app.example\"]\n").await;
    let token = app.token("alice");
    for (path, auth) in [
        ("/v1/time", None),
        ("/v1/uploads", Some(&token)),
        ("/v1/uploads", None),
        ("/v1/uploads/nope", Some(&token)),
        ("/no/such/route", None),
        ("/", None),
    ] {
        let mut req = app.http.get(format!("{}{path}", app.base));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let html = h["content-type"].to_str().unwrap().starts_with("text/html");
        assert_eq!(html, path == "/", "{path}");
        if html {
            let csp = h["content-security-policy"].to_str().unwrap();
            for directive in [
                "default-src 'none'",
                "script-src 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ] {
                assert!(csp.contains(directive), "{csp}");
            }
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
                "{csp}"
            );
            assert!(
                csp.contains(app.store.trim_end_matches('/')),
                "the store is named: {csp}"
            );
            assert_eq!(h["x-frame-options"], "DENY");
        }
    }
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/v1/uploads", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let evil = preflight("https://evil.example").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}
