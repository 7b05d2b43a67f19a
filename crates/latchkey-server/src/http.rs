//! Middleware around the API: request ids, request logging, CORS for
//! browser clients, and the log line for internal errors.
//!
//! Request logs name the matched route (`/v1/uploads/{id}`) and the path,
//! never the query string: a presigned URL's query is its signature.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request as AxumRequest};
use axum::http::{HeaderName, Method, Request, Response};
use latchkey_api::{InternalDetail, ProblemCode};
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id that is kept.
const MAX_REQUEST_ID: usize = 128;

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
        .allow_headers(
            [
                HeaderName::from_static("authorization"),
                HeaderName::from_static("content-type"),
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-latchkey-user"),
                X_REQUEST_ID,
            ]
            .into_iter()
            .chain(header_names(latchkey_api::TUS_REQUEST_HEADERS))
            .collect::<Vec<_>>(),
        )
        .expose_headers(
            std::iter::once(X_REQUEST_ID)
                .chain(header_names(latchkey_api::TUS_RESPONSE_HEADERS))
                .collect::<Vec<_>>(),
        )
        .max_age(Duration::from_secs(600));
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<Body>| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let request_id = req
                .headers()
                .get(X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                method = %req.method(),
                route,
                path = %req.uri().path(),
                request_id,
            )
        })
        .on_request(())
        .on_response(|res: &Response<Body>, latency: Duration, _span: &Span| {
            let status = res.status().as_u16();
            let latency_ms = latency.as_secs_f64() * 1000.0;
            let code = res.extensions().get::<ProblemCode>().map(|c| c.0);
            if let Some(InternalDetail(detail)) = res.extensions().get::<InternalDetail>() {
                tracing::error!(status, latency_ms, code, %detail, "request failed");
            } else {
                tracing::info!(status, latency_ms, code, "response");
            }
        })
        .on_failure(());
    // `Router::layer` wraps each route, so the matched route is known in
    // every layer below; the last one added runs first.
    let plain = router
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unusable_request_id));
    let with_cors = plain.clone().layer(cors);
    tus_discovery_past_cors(plain, with_cors)
}

fn header_names(names: &'static [&'static str]) -> impl Iterator<Item = HeaderName> {
    names.iter().map(|n| HeaderName::from_static(n))
}

/// tower-http's CORS layer answers every OPTIONS request itself, as a
/// preflight. A tus client's OPTIONS to `/tus/…` without
/// `Access-Control-Request-Method` is no preflight but tus discovery
/// (`Tus-Version`, `Tus-Extension`…), so it goes to the router directly.
fn tus_discovery_past_cors(plain: Router, with_cors: Router) -> Router {
    use tower::ServiceExt;
    Router::new().fallback_service(tower::service_fn(move |req: AxumRequest| {
        let discovery = req.method() == Method::OPTIONS
            && req.uri().path().starts_with("/tus/")
            && !req
                .headers()
                .contains_key(axum::http::header::ACCESS_CONTROL_REQUEST_METHOD);
        let router = if discovery { &plain } else { &with_cors };
        router.clone().oneshot(req)
    }))
}

/// A client's `x-request-id` is kept (so a trace can cross services) only
/// when it is short and plain; anything else is replaced by a fresh UUID,
/// so clients cannot push arbitrary text into every log line.
async fn drop_unusable_request_id(mut req: AxumRequest) -> AxumRequest {
    let usable = req.headers().get(X_REQUEST_ID).is_none_or(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
    });
    if !usable {
        req.headers_mut().remove(X_REQUEST_ID);
    }
    req
}
