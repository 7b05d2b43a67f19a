//! Operational routes: time, health, readiness, and the 404 fallback.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::dto::TimeView;
use crate::error::ApiError;
use crate::state::AppState;

/// Lets clients with a wrong clock compute their offset.
pub async fn time() -> Json<TimeView> {
    Json(TimeView {
        now: OffsetDateTime::now_utc(),
    })
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready only when both the ledger and the store answer.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state.ledger.ping().await?;
    state.store.ping().await?;
    Ok(Json(json!({"status": "ready"})))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
