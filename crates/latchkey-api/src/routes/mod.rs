//! The HTTP surface: one module per group of routes.

pub(crate) mod attach;
pub(crate) mod content;
pub(crate) mod credentials;
pub(crate) mod events;
pub(crate) mod ops;
pub(crate) mod parts;
pub(crate) mod tus;
pub(crate) mod uploads;
pub(crate) mod uppy;
pub(crate) mod web;

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

use crate::metrics;
use crate::state::AppState;

/// The router with the list of what it serves: every route is added through
/// [`Routes::add`], so the OpenAPI test can check that each one is
/// documented (and nothing else is).
pub(crate) struct Routes {
    pub router: Router<Arc<AppState>>,
    pub registered: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
        // Adding a path again merges its methods (axum panics on a duplicate).
        self.router = self.router.route(path, on(filter, handler));
        self.registered.push((method, path));
        self
    }
}

pub(crate) fn routes() -> Routes {
    Routes {
        router: Router::new(),
        registered: Vec::new(),
    }
    .add(Method::GET, "/v1/time", ops::time)
    .add(Method::POST, "/v1/uploads", uploads::create)
    .add(Method::GET, "/v1/uploads", uploads::list)
    .add(Method::GET, "/v1/uploads/{id}", uploads::show)
    .add(Method::DELETE, "/v1/uploads/{id}", uploads::remove)
    .add(Method::POST, "/v1/uploads/{id}/complete", uploads::complete)
    .add(Method::GET, "/v1/uploads/{id}/download", uploads::download)
    .add(Method::POST, "/v1/uploads/{id}/parts", parts::sign)
    .add(Method::GET, "/v1/uploads/{id}/parts", parts::list)
    // Proxied bodies are as large as the profile allows: the JSON limit
    // does not apply, the broker enforces the declared size while streaming.
    .add(
        Method::PUT,
        "/v1/uploads/{id}/content",
        content::put.layer(axum::extract::DefaultBodyLimit::disable()),
    )
    .add(Method::POST, "/v1/uploads/{id}/attach", attach::attach)
    .add(Method::POST, "/v1/credentials", credentials::create)
    .add(Method::POST, "/v1/events/s3", events::s3)
    .add(Method::GET, "/healthz", ops::healthz)
    .add(Method::GET, "/readyz", ops::readyz)
    .add(Method::GET, "/metrics", ops::metrics)
    .add(Method::GET, "/openapi.json", ops::openapi_json)
    // tus 1.0: every handler behind the Tus-Resumable guard; bodies are
    // as large as the upload, counted by the broker while they stream.
    .add(
        Method::POST,
        "/tus/",
        tus::create
            .layer(axum::middleware::from_fn(tus::guard))
            .layer(axum::extract::DefaultBodyLimit::disable()),
    )
    .add(
        Method::OPTIONS,
        "/tus/",
        tus::options.layer(axum::middleware::from_fn(tus::guard)),
    )
    .add(
        Method::HEAD,
        "/tus/{id}",
        tus::head.layer(axum::middleware::from_fn(tus::guard)),
    )
    .add(
        Method::PATCH,
        "/tus/{id}",
        tus::patch
            .layer(axum::middleware::from_fn(tus::guard))
            .layer(axum::extract::DefaultBodyLimit::disable()),
    )
    .add(
        Method::DELETE,
        "/tus/{id}",
        tus::delete.layer(axum::middleware::from_fn(tus::guard)),
    )
    .add(
        Method::OPTIONS,
        "/tus/{id}",
        tus::options_upload.layer(axum::middleware::from_fn(tus::guard)),
    )
    .uppy()
}

impl Routes {
    /// Uppy's backend contracts (`routes::uppy`) and the demo page.
    fn uppy(self) -> Self {
        use uppy::{companion, sign, token};
        let mut r = self
            .add(Method::POST, "/v1/uppy-token", token::create)
            .add(Method::POST, "/v1/dev/token", token::dev)
            .add(Method::POST, "/s3/sign", sign::sign)
            .add(Method::GET, "/s3/credentials", sign::credentials)
            .add(Method::GET, "/", web::index)
            .add(Method::GET, "/web/{file}", web::asset);
        // Each Companion route twice: bearer/cookie, and token in the path.
        for prefix in ["", "/uppy/{token}"] {
            let p = |s: &str| -> &'static str { format!("{prefix}{s}").leak() };
            r = r
                .add(Method::GET, p("/s3/params"), companion::params)
                .add(
                    Method::POST,
                    p("/s3/multipart"),
                    companion::create_multipart,
                )
                .add(
                    Method::GET,
                    p("/s3/multipart/{uploadId}"),
                    companion::list_parts,
                )
                .add(
                    Method::DELETE,
                    p("/s3/multipart/{uploadId}"),
                    companion::abort,
                )
                .add(
                    Method::GET,
                    p("/s3/multipart/{uploadId}/batch"),
                    companion::batch,
                )
                .add(
                    Method::GET,
                    p("/s3/multipart/{uploadId}/{partNumber}"),
                    companion::sign_part,
                )
                .add(
                    Method::POST,
                    p("/s3/multipart/{uploadId}/complete"),
                    companion::complete,
                )
                .add(
                    Method::POST,
                    p("/s3/multipart/{uploadId}/initiate"),
                    sign::initiate,
                )
                .add(
                    Method::POST,
                    p("/s3/multipart/{uploadId}/assemble"),
                    sign::assemble,
                )
                .add(Method::GET, p("/s3/sts"), companion::sts);
        }
        r
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.json_body_bytes;
    // `layer` (not `route_layer`) so the 404 fallback is counted too; the
    // matched route is known inside either.
    let track = metrics::TrackLayer {
        metrics: state.metrics.clone(),
    };
    routes()
        .router
        .fallback(ops::not_found)
        // One `Router::layer` for both: axum boxes each layer into a route
        // of its own, a boxed clone and a boxed future per request each.
        .layer(
            tower::ServiceBuilder::new()
                .layer(track)
                .layer(axum::extract::DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}
