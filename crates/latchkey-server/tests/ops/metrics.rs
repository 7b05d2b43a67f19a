//! `/metrics`: per-route request counts, business counters, store and
//! ledger timings — and one broker's counts never leak into another's.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::{file_request, spawn_app};

/// Series of a Prometheus text exposition: (name, labels) → value.
type Series = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse(text: &str) -> Series {
    let mut out = Series::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
            None => (series, BTreeMap::new()),
        };
        out.insert((name.to_owned(), labels), value.parse().unwrap());
    }
    out
}

/// `a="x",b="y"`; values may hold `{`, `}` and escaped quotes.
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("key=\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => value.push(chars.next().unwrap().1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

fn get(series: &Series, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    series.get(&(name.to_owned(), labels)).copied()
}

fn count(series: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    get(series, name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?}"))
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_the_upload_flow() {
    let app = spawn_app().await;
    let other = spawn_app().await;
    let token = app.token("alice");
    let bytes = b"hello, metrics".to_vec();

    let res = app.create(&token, &file_request(&bytes)).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    // Completing before the bytes arrive is a rejection with a code.
    let early = app
        .http
        .post(app.url(&format!("/v1/uploads/{id}/complete")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 409);
    assert_eq!(app.put_grant(&created, bytes.clone()).await, 200);
    for _ in 0..2 {
        let done = app
            .http
            .post(app.url(&format!("/v1/uploads/{id}/complete")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 200);
    }
    let shown = app
        .http
        .get(app.url(&format!("/v1/uploads/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200);
    let refused = app
        .create(
            &token,
            &json!({"profile": "photo", "filename": "x.svg", "content_type": "image/svg+xml", "size": 1}),
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(app.get_text("/no/such/route").await.0, 404);

    let (status, text) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    let m = parse(&text);
    let http = "latchkey_http_requests_total";
    let req = |method, route, status| [("method", method), ("route", route), ("status", status)];
    assert_eq!(count(&m, http, &req("POST", "/v1/uploads", "201")), 1.0);
    assert_eq!(count(&m, http, &req("POST", "/v1/uploads", "400")), 1.0);
    assert_eq!(
        count(&m, http, &req("POST", "/v1/uploads/{id}/complete", "200")),
        2.0
    );
    assert_eq!(
        count(&m, http, &req("POST", "/v1/uploads/{id}/complete", "409")),
        1.0
    );
    assert_eq!(count(&m, http, &req("GET", "/v1/uploads/{id}", "200")), 1.0);
    assert_eq!(count(&m, http, &req("GET", "unmatched", "404")), 1.0);
    assert!(
        !text.contains(id) && !text.contains("/no/such/route"),
        "raw paths in metrics:\n{text}"
    );
    assert_eq!(
        count(
            &m,
            "latchkey_http_request_duration_seconds_count",
            &req("POST", "/v1/uploads", "201")
        ),
        1.0
    );

    assert_eq!(
        count(
            &m,
            "latchkey_grants_total",
            &[("profile", "file"), ("mode", "put")]
        ),
        1.0
    );
    // Two successful completes, one commit.
    assert_eq!(
        count(&m, "latchkey_commits_total", &[("profile", "file")]),
        1.0
    );
    assert_eq!(
        count(&m, "latchkey_upload_bytes_total", &[("profile", "file")]),
        bytes.len() as f64
    );
    for code in ["object_missing", "type_not_allowed", "not_found"] {
        assert_eq!(
            count(&m, "latchkey_rejections_total", &[("code", code)]),
            1.0,
            "{code}"
        );
    }
    assert!(
        count(
            &m,
            "latchkey_store_request_duration_seconds_count",
            &[("op", "head")]
        ) >= 2.0
    );
    assert!(
        count(
            &m,
            "latchkey_store_request_duration_seconds_bucket",
            &[("op", "head"), ("le", "+Inf")]
        ) >= 2.0
    );
    assert_eq!(
        count(
            &m,
            "latchkey_ledger_request_duration_seconds_count",
            &[("op", "insert")]
        ),
        1.0
    );
    assert!(
        count(
            &m,
            "latchkey_ledger_request_duration_seconds_count",
            &[("op", "transition")]
        ) >= 1.0
    );
    assert!(text.contains("# HELP latchkey_commits_total"), "{text}");
    assert!(
        text.contains("# TYPE latchkey_http_request_duration_seconds histogram"),
        "{text}"
    );

    // The other broker in this process saw none of it.
    let (_, other_text) = other.get_text("/metrics").await;
    let o = parse(&other_text);
    assert!(
        get(
            &o,
            "latchkey_grants_total",
            &[("profile", "file"), ("mode", "put")]
        )
        .is_none()
    );
    assert!(get(&o, "latchkey_commits_total", &[("profile", "file")]).is_none());
    assert!(
        !other_text.contains("latchkey_http_requests_total{method=\"POST\""),
        "{other_text}"
    );
}

#[tokio::test]
async fn metrics_are_plain_text_and_need_no_token() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
}
