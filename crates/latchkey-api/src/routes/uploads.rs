//! `/v1/uploads…`: create a grant, complete, list, show, delete, download.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use latchkey_domain::{ProfileName, UploadId, UploadStatus};
use latchkey_ledger::ListFilter;
use time::OffsetDateTime;

use crate::auth::AuthUser;
use crate::broker::{self, NewUpload};
use crate::dto::{
    CompleteRequest, CreateUploadRequest, CreatedUpload, DownloadQuery, DownloadView, ListQuery,
    UploadList, UploadView,
};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::metrics;
use crate::openapi::Problem;
use crate::state::AppState;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::InvalidRequest(e.body_text()))
}

/// Reserve an upload and get its grant.
///
/// Checks the request against its profile, reserves the upload (quota
/// included) and returns a grant: the presigned request to send the bytes
/// with. A repeated `Idempotency-Key` returns the same upload and grant.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    operation_id = "createUpload",
    tag = "uploads",
    request_body = CreateUploadRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1-255 visible ASCII characters; a retry with the same key and body returns the same upload")),
    responses(
        (status = 201, description = "Upload reserved; send the bytes as `grant` says", body = CreatedUpload),
        (status = 400, description = "`invalid_request`, `unknown_profile`, `mode_not_allowed`, `mode_not_supported`, `type_not_allowed`, `too_large`, `too_small`, `metadata_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`quota_exceeded`, `rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`: the key was used for an upload that has moved on", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_mismatch`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateUploadRequest>,
) -> Result<(StatusCode, Json<CreatedUpload>), ApiError> {
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::InvalidRequest("Idempotency-Key must be ASCII".into()))
        })
        .transpose()?;
    let new = NewUpload {
        profile: req.profile,
        filename: req.filename,
        content_type: req.content_type,
        size: req.size,
        sha256: req.sha256,
        mode: req.mode,
        metadata: req.metadata.unwrap_or_default(),
        idempotency_key,
    };
    let (row, grant) = broker::create_upload(&state, &user, new).await?;
    metrics::grant_issued(&row.profile.to_string(), &row.mode.to_string());
    let body = CreatedUpload {
        upload: UploadView::from(&row),
        server_time: OffsetDateTime::now_utc(),
        grant: grant.into(),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// One of the caller's uploads.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}",
    operation_id = "getUpload",
    tag = "uploads",
    params(("id" = String, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The upload", body = UploadView),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found` (also for another user's upload)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<UploadView>, ApiError> {
    let row = broker::get_owned(&state, &user, &id).await?;
    Ok(Json(UploadView::from(&row)))
}

/// Commit an upload whose bytes are in the store.
///
/// Checks the stored object against the grant (size, type, checksum) and
/// commits the upload. Idempotent: completing a committed upload returns it
/// again. An object that breaks the grant is removed and the upload rejected.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    operation_id = "completeUpload",
    tag = "uploads",
    params(("id" = String, Path, description = "Upload id")),
    request_body(content = Option<CompleteRequest>, description = "Optional; `{}` or no body. Multipart uploads may list their parts with ETags"),
    responses(
        (status = 200, description = "The committed upload", body = UploadView),
        (status = 400, description = "`invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`object_missing`, `size_mismatch`, `type_mismatch`, `checksum_mismatch`, `invalid_state`; multipart: `parts_incomplete` (a part is missing, has the wrong size or another ETag; the upload stays pending)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`expired`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn complete(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<UploadView>, ApiError> {
    // The body is optional (plain uploads send none); when present it must
    // be a valid request, so typos are not silently ignored.
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        CompleteRequest::default()
    } else {
        serde_json::from_slice::<CompleteRequest>(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("complete body: {e}")))?
    };
    let parts: Option<Vec<broker::modes::multipart::ClientPart>> = req.parts.map(|ps| {
        ps.into_iter()
            .map(|p| broker::modes::multipart::ClientPart {
                number: p.number,
                etag: p.etag,
            })
            .collect()
    });
    let row = broker::complete(&state, &user, &id, parts.as_deref()).await?;
    Ok(Json(UploadView::from(&row)))
}

/// Abort a pending upload or delete a committed one.
///
/// Repeating it on an upload that is already gone answers with the upload as
/// it stands.
#[utoipa::path(
    delete,
    path = "/v1/uploads/{id}",
    operation_id = "deleteUpload",
    tag = "uploads",
    params(("id" = String, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The upload as it now stands", body = UploadView),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<UploadView>, ApiError> {
    let row = broker::delete(&state, &user, &id).await?;
    Ok(Json(UploadView::from(&row)))
}

/// A presigned GET for a committed upload.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}/download",
    operation_id = "downloadUpload",
    tag = "uploads",
    params(("id" = String, Path, description = "Upload id"), DownloadQuery),
    responses(
        (status = 200, description = "A presigned GET", body = DownloadView),
        (status = 400, description = "`invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`, `variant_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`: not committed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn download(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    q: Result<Query<DownloadQuery>, QueryRejection>,
) -> Result<Json<DownloadView>, ApiError> {
    let q = query(q)?;
    let (url, expires_at) = broker::download(&state, &user, &id, q.variant.as_deref()).await?;
    Ok(Json(DownloadView { url, expires_at }))
}

/// The caller's uploads, newest first.
#[utoipa::path(
    get,
    path = "/v1/uploads",
    operation_id = "listUploads",
    tag = "uploads",
    params(ListQuery),
    responses(
        (status = 200, description = "The caller's uploads, newest first", body = UploadList),
        (status = 400, description = "`invalid_request`, `unknown_profile`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<UploadList>, ApiError> {
    let q = query(q)?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<UploadStatus>)
        .transpose()
        .map_err(ApiError::InvalidRequest)?;
    let profile = q
        .profile
        .as_deref()
        .map(|p| ProfileName::parse(p).ok_or_else(|| ApiError::UnknownProfile(p.to_owned())))
        .transpose()?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            UploadId::parse(c).map_err(|_| ApiError::InvalidRequest("malformed cursor".into()))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, state.limits.max_page);
    let filter = ListFilter {
        status,
        profile,
        after,
        limit,
    };
    let rows = state.ledger.list(&user, &filter).await?;
    let next_cursor = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(UploadList {
        items: rows.iter().map(UploadView::from).collect(),
        next_cursor,
    }))
}
