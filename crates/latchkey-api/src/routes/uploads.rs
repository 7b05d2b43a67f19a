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
use crate::state::AppState;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::InvalidRequest(e.body_text()))
}

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
    let body = CreatedUpload {
        upload: UploadView::from(&row),
        server_time: OffsetDateTime::now_utc(),
        grant: grant.into(),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<UploadView>, ApiError> {
    let row = broker::get_owned(&state, &user, &id).await?;
    Ok(Json(UploadView::from(&row)))
}

pub async fn complete(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<UploadView>, ApiError> {
    // The body is optional (plain uploads send none); when present it must
    // be a valid request, so typos are not silently ignored.
    if !body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<CompleteRequest>(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("complete body: {e}")))?;
    }
    let row = broker::complete(&state, &user, &id).await?;
    Ok(Json(UploadView::from(&row)))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<UploadView>, ApiError> {
    let row = broker::delete(&state, &user, &id).await?;
    Ok(Json(UploadView::from(&row)))
}

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
