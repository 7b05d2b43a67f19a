//! Operational routes: time, health, readiness, metrics, the API's own
//! description, and the 404 fallback.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use time::OffsetDateTime;

use crate::dto::{StatusView, TimeView};
use crate::error::ApiError;
use crate::openapi::{self, Problem};
use crate::state::AppState;

/// The broker's clock.
///
/// Lets clients with a wrong clock compute their offset.
#[utoipa::path(
    get,
    path = "/v1/time",
    operation_id = "getTime",
    tag = "ops",
    responses((status = 200, description = "The broker's clock", body = TimeView)),
)]
pub async fn time() -> Json<TimeView> {
    Json(TimeView {
        now: OffsetDateTime::now_utc(),
    })
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "ops",
    responses((status = 200, description = "Alive", body = StatusView)),
)]
pub async fn healthz() -> Json<StatusView> {
    Json(StatusView { status: "ok" })
}

/// Readiness.
///
/// Ready only when both the ledger and the store answer.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ledger and store answer", body = StatusView),
        (status = 500, description = "`internal`: the ledger does not answer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<StatusView>, ApiError> {
    state.ledger.ping().await?;
    state.store.ping().await?;
    Ok(Json(StatusView { status: "ready" }))
}

/// Prometheus text exposition of this broker's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4")),
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This document: the OpenAPI description of the API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", content_type = "application/json")),
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::json(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
