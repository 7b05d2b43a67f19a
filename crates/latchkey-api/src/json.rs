//! A JSON body extractor whose rejections are problem+json like every other
//! error, instead of axum's plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::InvalidRequest(
                "expected a JSON body with content-type: application/json".into(),
            )),
            // The body limit (`limits.json_body`): refused as soon as the
            // declared or received length passes it, never read whole.
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::RequestTooLarge(
                    "the JSON body is larger than this server accepts (limits.json_body)".into(),
                ))
            }
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::InvalidRequest(
                "request body too large or unreadable".into(),
            )),
            Err(e) => Err(ApiError::InvalidRequest(e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::http::header;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Req {
        name: String,
        #[allow(dead_code)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        #[allow(dead_code)]
        size: u64,
    }

    async fn extract(content_type: Option<&str>, body: &str) -> Result<Req, ApiError> {
        let mut req = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(Body::from(body.to_owned())).unwrap();
        ApiJson::<Req>::from_request(req, &())
            .await
            .map(|ApiJson(v)| v)
    }

    fn message(e: ApiError) -> String {
        match e {
            ApiError::InvalidRequest(m) => m,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_json_media_type_parses() {
        for ct in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/vnd.api+json",
        ] {
            let v = extract(Some(ct), r#"{"name":"a"}"#).await.unwrap();
            assert_eq!(v.name, "a", "{ct}");
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_refused_alike_whatever_the_json_media_type() {
        for ct in [None, Some("text/plain")] {
            let m = message(extract(ct, r#"{"name":"a"}"#).await.unwrap_err());
            assert!(m.contains("content-type: application/json"), "{m}");
        }
        let fast = message(extract(Some("application/json"), "{").await.unwrap_err());
        let slow = message(
            extract(Some("application/json; charset=utf-8"), "{")
                .await
                .unwrap_err(),
        );
        assert_eq!(fast, slow);
        assert!(fast.contains("parse"), "{fast}");
    }

    #[tokio::test]
    async fn a_wrong_field_is_named_by_its_path_whatever_the_json_media_type() {
        let body = r#"{"name":"a","inner":{"size":"big"}}"#;
        let fast = message(extract(Some("application/json"), body).await.unwrap_err());
        let slow = message(
            extract(Some("application/json;charset=utf-8"), body)
                .await
                .unwrap_err(),
        );
        assert_eq!(fast, slow);
        assert!(fast.contains("inner.size"), "{fast}");
        let missing = message(extract(Some("application/json"), "{}").await.unwrap_err());
        assert!(missing.contains("missing field `name`"), "{missing}");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_too_large() {
        use tower::ServiceExt;
        async fn handler(ApiJson(v): ApiJson<Req>) -> String {
            v.name
        }
        let app = axum::Router::new()
            .route("/", axum::routing::post(handler))
            .layer(DefaultBodyLimit::max(16));
        let body = format!(r#"{{"name":"{}"}}"#, "x".repeat(64));
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
