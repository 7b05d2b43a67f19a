//! `@uppy/aws-s3`'s `signRequest` and `getCredentials` modes: `POST
//! /s3/sign` signs one S3 request of one of the caller's uploads;
//! `GET /s3/credentials` answers the camelCase credentials shape. Two
//! store-shaped XML routes stand in for the store where the broker keeps
//! control of a multipart upload (creating and completing it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::companion::{KeyQuery, ProfileQuery, rfc3339};
use super::{UppyBearer, UppyCaller, UppyError, param};
use crate::broker::modes::credentials;
use crate::broker::uppy::{self, LocalAction, SignRequest, Signed};
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignBody {
    /// `PUT`, `POST`, `GET` or `DELETE`.
    pub method: String,
    /// The object key: the key of one of your pending uploads (create it
    /// with `POST /v1/uploads` and use its `key` as Uppy's object key).
    pub key: String,
    /// The `uploadId` Uppy got when the multipart upload was created.
    pub upload_id: Option<String>,
    pub part_number: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedRequest {
    pub url: String,
    /// Headers to send as given (they are signed).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// For a POST form: the fields to send before the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub fields: Option<BTreeMap<latchkey_sigv4::FieldName, String>>,
}

/// Sign one S3 request of an upload (`signRequest`).
///
/// Only for keys of the caller's pending uploads, and only the requests an
/// upload needs: the single PUT (or POST form) of a `put`/`post`/`headers`
/// upload; and for a `multipart` upload, creating it, its parts, listing
/// them, completing and aborting. Creating and completing point at the
/// broker, which holds the store's multipart upload and commits.
#[utoipa::path(
    post,
    path = "/s3/sign",
    operation_id = "uppySign",
    tag = "uppy",
    request_body = SignBody,
    responses(
        (status = 200, description = "The request to send", body = SignedRequest),
        (status = 403, description = "`forbidden`: not a request an upload needs", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no pending upload of yours has this key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn sign(
    State(state): State<Arc<AppState>>,
    UppyBearer(user): UppyBearer,
    body: axum::body::Bytes,
) -> Result<Json<SignedRequest>, UppyError> {
    // Uppy's examples post JSON without a content type: accept either.
    let req: SignBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("sign request: {e}")))?;
    let signed = uppy::sign(
        &state,
        &user,
        &SignRequest {
            method: req.method,
            key: req.key.clone(),
            upload_id: req.upload_id,
            part_number: req.part_number,
        },
    )
    .await?;
    Ok(Json(match signed {
        Signed::Store {
            url,
            headers,
            fields,
        } => SignedRequest {
            url,
            headers: headers.into_iter().collect(),
            fields: (!fields.is_empty()).then(|| fields.into_iter().collect()),
        },
        Signed::Local { upload, action } => {
            let (token, _) = uppy::mint_token(&state, &user, None)?;
            let base = format!(
                "{}/uppy/{token}/s3/multipart/{upload}",
                state.public_url.trim_end_matches('/')
            );
            let key =
                percent_encoding::utf8_percent_encode(&req.key, percent_encoding::NON_ALPHANUMERIC);
            let url = match action {
                LocalAction::Initiate => format!("{base}/initiate?key={key}"),
                LocalAction::Complete => format!("{base}/assemble?key={key}"),
                LocalAction::Abort => format!("{base}?key={key}"),
            };
            SignedRequest {
                url,
                headers: BTreeMap::new(),
                fields: None,
            }
        }
    }))
}

fn xml(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/xml")], body)
}

/// The store-shaped answer to "create a multipart upload" for an upload the
/// broker already created (`signRequest` mode).
#[utoipa::path(
    post,
    path = "/s3/multipart/{uploadId}/initiate",
    operation_id = "uppyInitiateXml",
    tag = "uppy",
    params(("uploadId" = String, Path), ("key" = String, Query)),
    responses(
        (status = 200, description = "`InitiateMultipartUploadResult` XML; its `UploadId` is the upload's id", content_type = "application/xml", body = String),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn initiate(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
) -> Result<impl IntoResponse, UppyError> {
    let upload = uppy::owned(
        &state,
        &caller.user,
        param(&params, "uploadId")?,
        q.key.as_deref(),
    )
    .await?;
    uppy::stored_parts(&state, &upload).await?;
    Ok(xml(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
        uppy::xml_text(state.endpoint.bucket()),
        uppy::xml_text(upload.key.as_str()),
        upload.id
    )))
}

/// The store-shaped "complete multipart upload": takes S3's XML part list,
/// assembles, commits, and answers `CompleteMultipartUploadResult`.
#[utoipa::path(
    post,
    path = "/s3/multipart/{uploadId}/assemble",
    operation_id = "uppyAssembleXml",
    tag = "uppy",
    params(("uploadId" = String, Path), ("key" = String, Query)),
    request_body(content = String, content_type = "application/xml", description = "`CompleteMultipartUpload`"),
    responses(
        (status = 200, description = "`CompleteMultipartUploadResult` XML", content_type = "application/xml", body = String),
        (status = 409, description = "`parts_incomplete`, `size_mismatch`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn assemble(
    State(state): State<Arc<AppState>>,
    UppyCaller(caller): UppyCaller,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
    body: String,
) -> Result<impl IntoResponse, UppyError> {
    let upload = uppy::owned(
        &state,
        &caller.user,
        param(&params, "uploadId")?,
        q.key.as_deref(),
    )
    .await?;
    let parts = uppy::parse_complete_xml(&body)?;
    let row = uppy::complete(&state, upload, &parts).await?;
    let location = state.endpoint.object_url(row.key.as_str());
    Ok(xml(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
        uppy::xml_text(&location),
        uppy::xml_text(state.endpoint.bucket()),
        uppy::xml_text(row.key.as_str()),
        uppy::xml_text(&format!(
            "\"{}\"",
            row.etag.as_deref().unwrap_or_default().trim_matches('"')
        )),
    )))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CamelCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// RFC 3339.
    pub expiration: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UppyCredentials {
    pub credentials: CamelCredentials,
    pub region: String,
    pub bucket: String,
    /// Uppy's `generateObjectKey` must put every key under this.
    pub prefix: String,
    /// The store as clients reach it (Uppy's `s3Endpoint` is this plus the bucket).
    pub endpoint: String,
}

/// Temporary credentials in the shape `getCredentials` returns.
///
/// Scoped to the caller's prefix in the profile (`?profile=` or the
/// default); each object written with them is checked against the profile
/// and adopted as an upload of the caller, or rejected and deleted.
#[utoipa::path(
    get,
    path = "/s3/credentials",
    operation_id = "uppyCredentials",
    tag = "uppy",
    params(("profile" = Option<String>, Query)),
    responses(
        (status = 200, description = "Credentials", body = UppyCredentials),
        (status = 400, description = "`mode_not_supported` (no STS), `mode_not_allowed`, `unknown_profile`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn credentials(
    State(state): State<Arc<AppState>>,
    UppyBearer(user): UppyBearer,
    Query(q): Query<ProfileQuery>,
) -> Result<Json<UppyCredentials>, UppyError> {
    let g = credentials::for_profile(&state, &user, q.profile.as_deref()).await?;
    Ok(Json(UppyCredentials {
        credentials: CamelCredentials {
            access_key_id: g.access_key_id,
            secret_access_key: g.secret_access_key.expose().to_owned(),
            session_token: g.session_token.expose().to_owned(),
            expiration: rfc3339(g.expiration),
        },
        region: g.region,
        bucket: g.bucket,
        prefix: g.prefix,
        endpoint: g.endpoint,
    }))
}
