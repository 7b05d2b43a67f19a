//! Middleware around the API: request ids, request logging, CORS for
//! browser clients, security headers on every response, and the log line
//! for internal errors.
//!
//! Request logs name the matched route (`/v1/uploads/{id}`) and the path,
//! never the query string: a presigned URL's query is its signature.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request as AxumRequest};
use axum::http::HeaderValue;
use axum::http::{HeaderName, Method, Request, Response};
use axum::routing::Route;
use latchkey_api::{InternalDetail, ProblemCode};
use tower_http::cors::{AllowOrigin, Any, Cors, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id that is kept.
const MAX_REQUEST_ID: usize = 128;

/// What the middleware needs from the configuration.
pub struct HttpPolicy {
    /// `server.cors_origins`: exact origins, or `["*"]` for any.
    pub cors_origins: Vec<String>,
    /// The store's origin as browsers reach it: the demo page uploads to it
    /// and shows thumbnails from it, so its CSP must name it.
    pub store_origin: String,
}

impl HttpPolicy {
    fn allow_origin(&self) -> anyhow::Result<AllowOrigin> {
        if self.cors_origins.iter().any(|o| o == "*") {
            return Ok(AllowOrigin::from(Any));
        }
        let origins = self
            .cors_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .map_err(|_| anyhow::anyhow!("server.cors_origins: {o:?} is not an origin"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AllowOrigin::list(origins))
    }

    /// The demo page's Content-Security-Policy: its own script and style
    /// only (no inline code, no eval), network and images from itself and
    /// the store, no frames, no plugins, no `<base>` rewriting.
    fn page_csp(&self) -> anyhow::Result<HeaderValue> {
        let store = origin_of(&self.store_origin);
        HeaderValue::from_str(&format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; \
             img-src 'self' data: blob: {store}; connect-src 'self' {store}; \
             form-action 'self' {store}; base-uri 'none'; frame-ancestors 'none'; \
             object-src 'none'"
        ))
        .map_err(|_| anyhow::anyhow!("store URL {store:?} cannot go in a CSP header"))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

pub fn layers(router: Router, policy: &HttpPolicy) -> anyhow::Result<Router> {
    let csp = policy.page_csp()?;
    let cors = CorsLayer::new()
        .allow_origin(policy.allow_origin()?)
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
                path = %logged_path(req.uri().path()),
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
    // every layer below. One `Router::layer` for the whole stack: axum
    // boxes each layer it is given into a route of its own, and a request
    // then clones a boxed service and boxes a future at every level. For
    // the same reason tower's plain map layers, not axum's
    // `map_request`/`map_response`. In the stack the first layer runs
    // first: the request id is checked, then set, then the request is
    // logged with it. CORS, added after, runs before all of them.
    let plain = router.layer(
        tower::ServiceBuilder::new()
            .layer(tower::util::MapRequestLayer::new(drop_unusable_request_id))
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
            .layer(trace)
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
            .layer(tower::util::MapResponseLayer::new(move |res| {
                security_headers(res, &csp)
            })),
    );
    Ok(tus_discovery_past_cors(plain, cors))
}

/// `nosniff` and `no-referrer` on every response (a response is never
/// to be read as another type, and URLs — some carry ids — never leak in
/// `Referer`); HTML (the demo page) also gets its CSP and may not be framed.
fn security_headers(mut res: Response<Body>, csp: &HeaderValue) -> Response<Body> {
    use axum::http::header;
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if html {
        h.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    res
}

fn header_names(names: &'static [&'static str]) -> impl Iterator<Item = HeaderName> {
    names.iter().map(|n| HeaderName::from_static(n))
}

/// tower-http's CORS layer answers every OPTIONS request itself, as a
/// preflight. A tus client's OPTIONS to `/tus/…` without
/// `Access-Control-Request-Method` is no preflight but tus discovery
/// (`Tus-Version`, `Tus-Extension`…), so it goes past CORS to the route.
///
/// A layer on each route (as CORS itself is), not a router in front: a
/// router in front cost every request a second dispatch, a boxed future
/// and a clone of a boxed service.
fn tus_discovery_past_cors(plain: Router, cors: CorsLayer) -> Router {
    plain.layer(tower::layer::layer_fn(move |route: Route| {
        CorsUnlessTusDiscovery(tower::Layer::layer(&cors, route))
    }))
}

/// The route behind CORS; tus discovery goes to the route itself
/// (`Cors::get_mut`), so a request clones one route, not two.
#[derive(Clone)]
struct CorsUnlessTusDiscovery(Cors<Route>);

impl tower::Service<AxumRequest> for CorsUnlessTusDiscovery {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::Either<
        <Route as tower::Service<AxumRequest>>::Future,
        <Cors<Route> as tower::Service<AxumRequest>>::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Cors is ready when its route is, whichever of the two is called.
        <Cors<Route> as tower::Service<AxumRequest>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: AxumRequest) -> Self::Future {
        let discovery = req.method() == Method::OPTIONS
            && req.uri().path().starts_with("/tus/")
            && !req
                .headers()
                .contains_key(axum::http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if discovery {
            futures::future::Either::Left(self.0.get_mut().call(req))
        } else {
            futures::future::Either::Right(self.0.call(req))
        }
    }
}

/// A client's `x-request-id` is kept (so a trace can cross services) only
/// when it is short and plain; anything else is replaced by a fresh UUID,
/// so clients cannot push arbitrary text into every log line.
fn drop_unusable_request_id(mut req: AxumRequest) -> AxumRequest {
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

/// The path as logged: the upload token of `/uppy/{token}/…` is a
/// credential, so it is left out.
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/uppy/") {
        Some(rest) => {
            let tail = rest.find('/').map_or("", |i| &rest[i..]);
            std::borrow::Cow::Owned(format!("/uppy/[redacted]{tail}"))
        }
        None => std::borrow::Cow::Borrowed(path),
    }
}
