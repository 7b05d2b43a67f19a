//! `/v1/uploads/{id}/parts` (multipart mode): presigned URLs for more parts,
//! and the list of parts the store holds, for resuming an upload.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use crate::auth::AuthUser;
use crate::broker::modes::multipart;
use crate::dto::{PartNumbersRequest, PartUrlList, PartView, StoredPartList, StoredPartView};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::openapi::Problem;
use crate::state::AppState;

/// Presigned URLs for more parts of a multipart upload.
///
/// Each URL is a presigned `UploadPart` that signs its part's exact
/// `content-length` (the last part is smaller); send the listed headers
/// with it. The URLs expire with the grant.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/parts",
    operation_id = "signParts",
    tag = "uploads",
    params(("id" = String, Path, description = "Upload id")),
    request_body = PartNumbersRequest,
    responses(
        (status = 200, description = "One URL per part asked for", body = PartUrlList),
        (status = 400, description = "`invalid_request`: no numbers, too many, or one out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`: not a pending multipart upload", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`expired`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn sign(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PartNumbersRequest>,
) -> Result<Json<PartUrlList>, ApiError> {
    let parts = multipart::part_urls(&state, &user, &id, &req.numbers).await?;
    Ok(Json(PartUrlList {
        parts: parts.into_iter().map(PartView::from).collect(),
    }))
}

/// The parts the store holds for a pending multipart upload.
///
/// For resuming: upload only the parts missing here (or of the wrong size),
/// then complete.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}/parts",
    operation_id = "listParts",
    tag = "uploads",
    params(("id" = String, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The parts uploaded so far, by number", body = StoredPartList),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`: not a pending multipart upload, or already assembled", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`expired`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<StoredPartList>, ApiError> {
    let (part_size, part_count, parts) = multipart::stored_parts(&state, &user, &id).await?;
    Ok(Json(StoredPartList {
        part_size,
        part_count,
        parts: parts
            .into_iter()
            .map(|p| StoredPartView {
                number: p.number,
                size: p.size,
                etag: p.etag,
            })
            .collect(),
    }))
}
