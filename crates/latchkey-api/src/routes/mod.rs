//! The HTTP surface: one module per group of routes.

mod ops;
mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.json_body_bytes;
    Router::new()
        .route("/v1/time", get(ops::time))
        .route("/v1/uploads", post(uploads::create).get(uploads::list))
        .route(
            "/v1/uploads/{id}",
            get(uploads::show).delete(uploads::remove),
        )
        .route("/v1/uploads/{id}/complete", post(uploads::complete))
        .route("/v1/uploads/{id}/download", get(uploads::download))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(ops::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
