//! `PUT /v1/uploads/{id}/content` (proxy mode): the upload's bytes, streamed
//! through the broker to the store. The global JSON body limit is lifted
//! for this one route (see `routes()`); the broker enforces the declared
//! size itself while the body streams.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use futures::TryStreamExt;

use crate::auth::AuthUser;
use crate::broker::modes::proxy::{self, ProxyBody};
use crate::dto::UploadView;
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;

/// Send a proxy upload's bytes.
///
/// Streams the body to the store while checking it against the upload:
/// `Content-Length` must be the declared size, `Content-Type` the declared
/// type, and the SHA-256 (computed on the fly) the declared one. On success
/// the upload is committed and returned.
#[utoipa::path(
    put,
    path = "/v1/uploads/{id}/content",
    operation_id = "putContent",
    tag = "uploads",
    params(("id" = String, Path, description = "Upload id")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes, with the declared Content-Type and Content-Length"),
    responses(
        (status = 200, description = "The committed upload", body = UploadView),
        (status = 400, description = "`invalid_request`: a shorter body than declared", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`checksum_mismatch` (the upload is rejected), `invalid_state`: not a pending proxy upload", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`expired`", body = Problem, content_type = "application/problem+json"),
        (status = 411, description = "`length_required`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`too_large`: more bytes than declared", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`type_mismatch`: not the declared Content-Type", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn put(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadView>, ApiError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let content_length = match text(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::InvalidRequest("Content-Length is not a number".into()))?,
        ),
    };
    let body = ProxyBody {
        content_type: text(header::CONTENT_TYPE).map(str::to_owned),
        content_length,
        body: Box::pin(body.into_data_stream().map_err(std::io::Error::other)),
    };
    let row = proxy::receive(&state, &user, &id, body).await?;
    Ok(Json(UploadView::from(&row)))
}
