//! `/openapi.json` serves the committed `docs/openapi.json` (the unit tests
//! in latchkey-api keep that file in step with the code).

use serde_json::Value;

use crate::common::spawn_app;

#[tokio::test]
async fn served_openapi_is_the_committed_one() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let served: Value = res.json().await.unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        served == committed,
        "the served /openapi.json differs from docs/openapi.json; \
         run `UPDATE_OPENAPI=1 cargo test -p latchkey-api openapi` to refresh it"
    );
    assert_eq!(served["openapi"], "3.1.0");
}
