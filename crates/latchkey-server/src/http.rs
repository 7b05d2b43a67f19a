//! Middleware around the API: request logging (paths only, never query
//! strings, which may carry signatures), CORS for browser clients, and the
//! log line for internal errors.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, Method, Request, Response};
use latchkey_api::InternalDetail;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

pub fn layers(router: Router) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
        ])
        .allow_headers([
            HeaderName::from_static("authorization"),
            HeaderName::from_static("content-type"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-latchkey-user"),
        ])
        .max_age(Duration::from_secs(600));
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<Body>| {
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
        })
        .on_request(())
        .on_response(|res: &Response<Body>, latency: Duration, _span: &Span| {
            if let Some(InternalDetail(detail)) = res.extensions().get::<InternalDetail>() {
                tracing::error!(status = res.status().as_u16(), ?latency, %detail, "request failed");
            } else {
                tracing::info!(status = res.status().as_u16(), ?latency, "response");
            }
        })
        .on_failure(());
    router.layer(trace).layer(cors)
}
