//! The Companion S3 routes `@uppy/aws-s3`'s `companionEndpoint` mode calls,
//! over ledger rows (see `broker::uppy`). Uppy's `uploadId` is our upload
//! id; its `key` is the upload's key.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use latchkey_domain::Mode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{UppyCaller, UppyError, param};
use crate::broker::modes::credentials;
use crate::broker::uppy::{self, UppyFile};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::openapi::Problem;
use crate::state::AppState;

/// A browser POST form for one file.
#[derive(Debug, Serialize, ToSchema)]
pub struct FormParams {
    /// Always `POST`.
    pub method: String,
    /// The bucket URL to post the form to.
    pub url: String,
    /// Fields to send before the file field, as given.
    #[schema(value_type = BTreeMap<String, String>)]
    pub fields: BTreeMap<latchkey_sigv4::FieldName, String>,
    /// Seconds the form stays valid.
    pub expires: u64,
}

#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    pub key: Option<String>,
}

fn split_query(
    query: Vec<(String, String)>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut plain = BTreeMap::new();
    let mut meta = BTreeMap::new();
    for (k, v) in query {
        match k
            .strip_prefix("metadata[")
            .and_then(|r| r.strip_suffix(']'))
        {
            Some(name) => {
                meta.insert(name.to_owned(), v);
            }
            None => {
                plain.insert(k, v);
            }
        }
    }
    (plain, meta)
}

/// A POST form for a single-request upload (Companion's `getUploadParameters`).
///
/// Creates a `post` upload for the caller: the profile comes from
/// `metadata[profile]` (or the token's, or the default), the size from
/// `metadata[size]` (required: Uppy does not send it otherwise).
#[utoipa::path(
    get,
    path = "/s3/params",
    operation_id = "uppyParams",
    tag = "uppy",
    params(
        ("filename" = String, Query, description = "The file's name (metadata only)"),
        ("type" = String, Query, description = "Content type"),
        ("metadata[size]" = u64, Query, description = "The file size in bytes"),
        ("metadata[profile]" = Option<String>, Query, description = "Profile"),
    ),
    responses(
        (status = 200, description = "The form to post", body = FormParams),
        (status = 400, description = "`invalid_request`, `too_large`, `type_not_allowed`, `mode_not_supported`…", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn params(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<FormParams>, UppyError> {
    let (plain, metadata) = split_query(query);
    let file = UppyFile {
        filename: plain.get("filename").cloned().unwrap_or_default(),
        content_type: plain.get("type").cloned().unwrap_or_default(),
        metadata,
    };
    let (upload, grant) = uppy::create(&state, &caller, file, Mode::Post).await?;
    Ok(Json(FormParams {
        method: "POST".into(),
        url: grant.url,
        fields: grant.fields.into_iter().collect(),
        expires: uppy::remaining_secs(&upload),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateMultipart {
    pub filename: Option<String>,
    #[serde(rename = "type")]
    pub content_type: Option<String>,
    /// Uppy's file meta; `size` is required, `profile` optional.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedMultipart {
    /// The upload's key.
    pub key: String,
    /// The upload's id (not the store's multipart upload id).
    pub upload_id: String,
    pub bucket: String,
}

/// Start a multipart upload (Companion's `createMultipartUpload`).
#[utoipa::path(
    post,
    path = "/s3/multipart",
    operation_id = "uppyCreateMultipart",
    tag = "uppy",
    request_body = CreateMultipart,
    responses(
        (status = 200, description = "The upload", body = CreatedMultipart),
        (status = 400, description = "`invalid_request`, `too_large`, `type_not_allowed`…", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create_multipart(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    ApiJson(req): ApiJson<CreateMultipart>,
) -> Result<Json<CreatedMultipart>, UppyError> {
    let metadata = req
        .metadata
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect();
    let file = UppyFile {
        filename: req.filename.unwrap_or_default(),
        content_type: req.content_type.unwrap_or_default(),
        metadata,
    };
    let (upload, _) = uppy::create(&state, &caller, file, Mode::Multipart).await?;
    Ok(Json(CreatedMultipart {
        key: upload.key.as_str().to_owned(),
        upload_id: upload.id.to_string(),
        bucket: state.endpoint.bucket().to_owned(),
    }))
}

/// A part the store holds, as Companion answers it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StoredPart {
    pub part_number: u32,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
}

/// The parts uploaded so far (Companion's `listParts`, for resuming).
#[utoipa::path(
    get,
    path = "/s3/multipart/{uploadId}",
    operation_id = "uppyListParts",
    tag = "uppy",
    params(("uploadId" = String, Path), ("key" = String, Query)),
    responses(
        (status = 200, description = "Parts", body = Vec<StoredPart>),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list_parts(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<Vec<StoredPart>>, UppyError> {
    let upload = uppy::owned(
        &state,
        &caller.user,
        param(&params, "uploadId")?,
        q.key.as_deref(),
    )
    .await?;
    let parts = uppy::stored_parts(&state, &upload).await?;
    Ok(Json(
        parts
            .into_iter()
            .map(|p| StoredPart {
                part_number: p.number,
                etag: format!("\"{}\"", p.etag),
                size: p.size,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct BatchQuery {
    pub key: Option<String>,
    #[serde(rename = "partNumbers")]
    pub part_numbers: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresignedBatch {
    /// Part number → presigned `UploadPart` URL.
    pub presigned_urls: BTreeMap<String, String>,
}

/// URLs for several parts (Companion's `prepareUploadParts`).
#[utoipa::path(
    get,
    path = "/s3/multipart/{uploadId}/batch",
    operation_id = "uppyBatch",
    tag = "uppy",
    params(("uploadId" = String, Path), ("key" = String, Query), ("partNumbers" = String, Query, description = "Comma-separated part numbers")),
    responses(
        (status = 200, description = "URLs", body = PresignedBatch),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn batch(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<BatchQuery>,
) -> Result<Json<PresignedBatch>, UppyError> {
    let upload = uppy::owned(
        &state,
        &caller.user,
        param(&params, "uploadId")?,
        q.key.as_deref(),
    )
    .await?;
    let numbers = q
        .part_numbers
        .split(',')
        .map(|n| n.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::InvalidRequest("partNumbers must be numbers".into()))?;
    let urls = uppy::part_urls(&state, &upload, &numbers)?;
    Ok(Json(PresignedBatch {
        presigned_urls: urls.into_iter().map(|(n, u)| (n.to_string(), u)).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartUrl {
    pub url: String,
    /// Seconds the URL stays valid.
    pub expires: u64,
}

/// The URL for one part (Companion's `signPart`).
#[utoipa::path(
    get,
    path = "/s3/multipart/{uploadId}/{partNumber}",
    operation_id = "uppySignPart",
    tag = "uppy",
    params(("uploadId" = String, Path), ("partNumber" = u32, Path), ("key" = String, Query)),
    responses(
        (status = 200, description = "URL", body = PartUrl),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn sign_part(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<PartUrl>, UppyError> {
    let upload = uppy::owned(
        &state,
        &caller.user,
        param(&params, "uploadId")?,
        q.key.as_deref(),
    )
    .await?;
    let number = param(&params, "partNumber")?
        .parse::<u32>()
        .map_err(|_| ApiError::InvalidRequest("partNumber must be a number".into()))?;
    let (_, url) = uppy::part_urls(&state, &upload, &[number])?.remove(0);
    Ok(Json(PartUrl {
        url,
        expires: uppy::remaining_secs(&upload),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CompleteParts {
    pub parts: Vec<ClientPart>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ClientPart {
    pub part_number: u32,
    #[serde(rename = "ETag")]
    pub etag: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Completed {
    /// The object's URL on the store (reading it needs a download grant).
    pub location: String,
    pub key: String,
    pub bucket: String,
    /// The upload's status: `committed`, or `processing` for photos.
    pub status: String,
}

/// Assemble the parts and commit (Companion's `completeMultipartUpload`).
///
/// The parts must be 1..n with the store's ETags and add up to the
/// declared size; the upload then commits through the one commit path.
#[utoipa::path(
    post,
    path = "/s3/multipart/{uploadId}/complete",
    operation_id = "uppyComplete",
    tag = "uppy",
    params(("uploadId" = String, Path), ("key" = String, Query)),
    request_body = CompleteParts,
    responses(
        (status = 200, description = "Committed (or processing)", body = Completed),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`parts_incomplete`, `size_mismatch`, `invalid_state`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn complete(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
    ApiJson(req): ApiJson<CompleteParts>,
) -> Result<Json<Completed>, UppyError> {
    let upload = uppy::owned(
        &state,
        &caller.user,
        param(&params, "uploadId")?,
        q.key.as_deref(),
    )
    .await?;
    let parts: Vec<(u32, String)> = req
        .parts
        .into_iter()
        .map(|p| (p.part_number, p.etag))
        .collect();
    let row = uppy::complete(&state, upload, &parts).await?;
    Ok(Json(Completed {
        location: state.endpoint.object_url(row.key.as_str()),
        key: row.key.as_str().to_owned(),
        bucket: state.endpoint.bucket().to_owned(),
        status: row.status.to_string(),
    }))
}

/// Abort a multipart upload (Companion's `abortMultipartUpload`).
#[utoipa::path(
    delete,
    path = "/s3/multipart/{uploadId}",
    operation_id = "uppyAbort",
    tag = "uppy",
    params(("uploadId" = String, Path), ("key" = String, Query)),
    responses(
        (status = 204, description = "Aborted"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn abort(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
) -> Result<StatusCode, UppyError> {
    let upload = uppy::owned(
        &state,
        &caller.user,
        param(&params, "uploadId")?,
        q.key.as_deref(),
    )
    .await?;
    uppy::abort(&state, &caller.user, &upload).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct ProfileQuery {
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// RFC 3339.
    pub expiration: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StsResponse {
    pub credentials: StsCredentials,
    pub bucket: String,
    pub region: String,
    /// Keys written with these credentials must start with this (unlike
    /// Companion's bucket-wide credentials).
    pub prefix: String,
    pub endpoint: String,
}

/// Temporary credentials, Companion's shape (`getTemporarySecurityCredentials`).
///
/// Scoped to the caller's prefix in the profile (`?profile=`, or the
/// token's, or the default); what is written with them is adopted.
#[utoipa::path(
    get,
    path = "/s3/sts",
    operation_id = "uppySts",
    tag = "uppy",
    params(("profile" = Option<String>, Query)),
    responses(
        (status = 200, description = "Credentials", body = StsResponse),
        (status = 400, description = "`mode_not_supported` (no STS), `mode_not_allowed`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn sts(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Query(q): Query<ProfileQuery>,
) -> Result<Json<StsResponse>, UppyError> {
    let profile = caller.profile.as_deref().or(q.profile.as_deref());
    let g = credentials::for_profile(&state, &caller.user, profile).await?;
    Ok(Json(StsResponse {
        credentials: StsCredentials {
            access_key_id: g.access_key_id,
            secret_access_key: g.secret_access_key.expose().to_owned(),
            session_token: g.session_token.expose().to_owned(),
            expiration: rfc3339(g.expiration),
        },
        bucket: g.bucket,
        region: g.region,
        prefix: g.prefix,
        endpoint: g.endpoint,
    }))
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
