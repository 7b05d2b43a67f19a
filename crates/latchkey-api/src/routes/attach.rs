//! `POST /v1/uploads/{id}/attach`: for app backends (API key).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Backend;
use crate::broker;
use crate::dto::UploadView;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// The app's own record this upload now belongs to, e.g. `post:42`.
    #[serde(rename = "ref")]
    pub reference: String,
}

/// Attach a committed upload to one of the app's records.
///
/// API keys only. Attaching again with the same ref is a no-op; another ref
/// is refused. With `X-Latchkey-User`, only that user's uploads are found.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/attach",
    operation_id = "attachUpload",
    tag = "uploads",
    params(("id" = String, Path, description = "Upload id")),
    request_body = AttachRequest,
    responses(
        (status = 200, description = "The attached upload", body = UploadView),
        (status = 400, description = "Invalid ref", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown API key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an API key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not committed, or attached elsewhere", body = crate::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn attach(
    State(state): State<Arc<AppState>>,
    backend: Backend,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AttachRequest>,
) -> Result<Json<UploadView>, ApiError> {
    let row = broker::attach(&state, backend.acting_for.as_ref(), &id, &req.reference).await?;
    Ok(Json(UploadView::from(&row)))
}
