//! `/tus/`: the tus 1.0 resumable upload protocol (core, creation,
//! creation-with-upload, termination, expiration, checksum), for clients
//! such as tus-js-client, TUSKit and tus-android-client. This module is
//! the wire format only: headers in, headers out. The upload itself is a
//! ledger upload of mode `tus` (`broker::modes::tus`), authenticated with
//! the same bearer token as the rest of the API.
//!
//! Every response carries `Tus-Resumable: 1.0.0` ([`guard`], layered on
//! each handler, also answers 412 to a request without it). OPTIONS is
//! answered here only for requests that are not CORS preflights: the
//! server's CORS layer answers those (latchkey-server's `http.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::TryStreamExt;
use latchkey_domain::Upload;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::auth::AuthUser;
use crate::broker::modes::tus::{
    self, Algorithm, Checksum, NewTusUpload, Patch, Progress, max_size,
};
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;

pub const VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
/// The body type of PATCH (and of a creation with upload).
const OFFSET_STREAM: &str = "application/offset+octet-stream";

const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
const TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");

/// The tus headers a browser client must be allowed to send and to read
/// (the server's CORS layer lists them).
pub const REQUEST_HEADERS: &[&str] = &[
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-checksum",
    "upload-defer-length",
    "upload-concat",
    "x-http-method-override",
];
pub const RESPONSE_HEADERS: &[&str] = &[
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-metadata",
    "upload-expires",
];

/// Checks `Tus-Resumable` on every request but OPTIONS (412 otherwise)
/// and stamps `Tus-Resumable` on every response, errors included.
pub async fn guard(req: Request, next: Next) -> Response {
    let supported = req.method() == axum::http::Method::OPTIONS
        || req
            .headers()
            .get(&TUS_RESUMABLE)
            .is_some_and(|v| v.as_bytes() == VERSION.as_bytes());
    let mut res = if supported {
        next.run(req).await
    } else {
        let mut res = ApiError::TusVersion(format!(
            "send Tus-Resumable: {VERSION}, the version this server speaks"
        ))
        .into_response();
        res.headers_mut()
            .insert(TUS_VERSION, HeaderValue::from_static(VERSION));
        res
    };
    res.headers_mut()
        .insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    res
}

fn text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| ApiError::InvalidRequest(format!("{name} is not ASCII")))
        })
        .transpose()
}

fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    text(headers, name)?
        .map(|v| {
            // Digits only: `+1` and `-0` parse in Rust but not in tus.
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| ApiError::InvalidRequest(format!("{name} must be a whole number")))
        })
        .transpose()
}

fn http_date(t: OffsetDateTime) -> HeaderValue {
    let f = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let s = t
        .to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default();
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `key base64,key base64,…` → the keys tus clients use for latchkey's
/// fields (`profile`, `filename` or `name`, `filetype` or `type`) and the
/// rest as the upload's metadata (keys that cannot be metadata keys are
/// left out).
fn parse_metadata(raw: Option<&str>) -> Result<(BTreeMap<String, String>, Fields), ApiError> {
    let mut all = BTreeMap::new();
    for pair in raw.unwrap_or("").split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.split_once(' ') {
            Some((k, v)) => (k, v.trim()),
            None => (pair, ""),
        };
        let value = STANDARD
            .decode(value)
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!(
                    "Upload-Metadata: the value of {key:?} is not base64 of UTF-8 text"
                ))
            })?;
        all.insert(key.to_owned(), value);
    }
    let mut take = |names: &[&str]| {
        let mut found = None;
        for n in names {
            if let Some(v) = all.remove(*n)
                && found.is_none()
                && !v.is_empty()
            {
                found = Some(v);
            }
        }
        found
    };
    let fields = Fields {
        profile: take(&["profile"]),
        filename: take(&["filename", "name"]),
        filetype: take(&["filetype", "type"]),
    };
    all.retain(|k, _| {
        !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    Ok((all, fields))
}

struct Fields {
    profile: Option<String>,
    filename: Option<String>,
    filetype: Option<String>,
}

fn metadata_header(upload: &Upload) -> Option<HeaderValue> {
    let mut pairs = vec![
        format!("profile {}", STANDARD.encode(upload.profile.as_str())),
        format!("filename {}", STANDARD.encode(&upload.filename)),
        format!("filetype {}", STANDARD.encode(upload.content_type.as_str())),
    ];
    for (k, v) in &upload.metadata {
        pairs.push(format!("{k} {}", STANDARD.encode(v)));
    }
    HeaderValue::from_str(&pairs.join(",")).ok()
}

fn parse_checksum(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    let Some(raw) = text(headers, &UPLOAD_CHECKSUM)? else {
        return Ok(None);
    };
    let (alg, digest) = raw.split_once(' ').ok_or_else(|| {
        ApiError::InvalidRequest("Upload-Checksum must be `<algorithm> <base64 digest>`".into())
    })?;
    let algorithm = match alg.to_ascii_lowercase().as_str() {
        "sha1" => Algorithm::Sha1,
        "sha256" => Algorithm::Sha256,
        other => {
            return Err(ApiError::ChecksumAlgorithm(format!(
                "checksum algorithm {other:?} is not supported; use one of {CHECKSUM_ALGORITHMS}"
            )));
        }
    };
    let digest = STANDARD.decode(digest.trim()).map_err(|_| {
        ApiError::InvalidRequest("Upload-Checksum: the digest is not base64".into())
    })?;
    Ok(Some(Checksum { algorithm, digest }))
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_STREAM))
}

fn patch_of(headers: &HeaderMap, offset: u64, body: Body) -> Result<Patch, ApiError> {
    Ok(Patch {
        offset,
        content_length: number(headers, &header::CONTENT_LENGTH)?,
        checksum: parse_checksum(headers)?,
        body: Box::pin(body.into_data_stream().map_err(std::io::Error::other)),
    })
}

fn location(state: &AppState, upload: &Upload) -> String {
    format!(
        "{}/tus/{}",
        state.public_url.trim_end_matches('/'),
        upload.id
    )
}

/// `Upload-Offset` and, while the upload can still change, `Upload-Expires`.
fn progress_headers(res: &mut Response, p: &Progress) {
    let h = res.headers_mut();
    h.insert(UPLOAD_OFFSET, HeaderValue::from(p.offset));
    if p.upload.status == latchkey_domain::UploadStatus::Pending {
        h.insert(UPLOAD_EXPIRES, http_date(p.upload.expires_at));
    }
}

/// Create a tus upload.
///
/// tus creation: `Upload-Length` is the file's size, `Upload-Metadata`
/// carries `profile`, `filename` and `filetype` (base64, as tus encodes
/// metadata; `name` and `type` are accepted too). With
/// `Content-Type: application/offset+octet-stream` the body is the start
/// of the file (creation-with-upload). Answers `Location`, the upload's
/// URL.
#[utoipa::path(
    post,
    path = "/tus/",
    operation_id = "tusCreate",
    tag = "tus",
    params(
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Length" = u64, Header, description = "The file's size in bytes"),
        ("Upload-Metadata" = Option<String>, Header, description = "`profile`, `filename`, `filetype` (and app metadata) as `key base64value` pairs, comma-separated"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream", description = "Optional: the first bytes of the file"),
    responses(
        (status = 201, description = "Created", headers(
            ("Location" = String, description = "The upload's URL"),
            ("Upload-Offset" = u64, description = "Bytes received"),
            ("Upload-Expires" = String, description = "When the unfinished upload expires"),
        )),
        (status = 400, description = "`invalid_request`, `unknown_profile`, `mode_not_allowed`, `mode_not_supported`, `type_not_allowed`, `too_small`, `metadata_too_large`, `unsupported_checksum_algorithm`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`unsupported_version`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`too_large`: more than the profile allows", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`quota_exceeded`, `rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 460, description = "`checksum_mismatch`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if headers.contains_key(&UPLOAD_DEFER_LENGTH) {
        return Err(ApiError::InvalidRequest(
            "Upload-Defer-Length is not supported: send Upload-Length".into(),
        ));
    }
    let length = number(&headers, &UPLOAD_LENGTH)?
        .ok_or_else(|| ApiError::InvalidRequest("Upload-Length is required".into()))?;
    let (metadata, fields) = parse_metadata(text(&headers, &UPLOAD_METADATA)?)?;
    let with_upload = is_offset_stream(&headers);
    let patch = if with_upload {
        let patch = patch_of(&headers, 0, body)?;
        if patch.content_length.is_some_and(|n| n > length) {
            return Err(ApiError::BodyTooLarge(format!(
                "the body is longer than Upload-Length ({length})"
            )));
        }
        Some(patch)
    } else {
        None
    };
    let new = NewTusUpload {
        profile: fields.profile,
        filename: fields.filename.unwrap_or_else(|| "upload".into()),
        content_type: fields.filetype,
        length,
        metadata,
    };
    let progress = tus::create(&state, &user, new, patch).await?;
    let url = location(&state, &progress.upload);
    let mut res = StatusCode::CREATED.into_response();
    progress_headers(&mut res, &progress);
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&url).map_err(|e| ApiError::Internal(format!("location: {e}")))?,
    );
    Ok(res)
}

/// Where a tus upload stands.
///
/// tus core: `Upload-Offset` (the byte to resume from) and
/// `Upload-Length`. A finished upload reports its full length.
#[utoipa::path(
    head,
    path = "/tus/{id}",
    operation_id = "tusHead",
    tag = "tus",
    params(
        ("id" = String, Path, description = "Upload id"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
    ),
    responses(
        (status = 200, description = "The upload's progress", headers(
            ("Upload-Offset" = u64, description = "Bytes received"),
            ("Upload-Length" = u64, description = "The file's size"),
            ("Upload-Metadata" = String, description = "As created"),
            ("Upload-Expires" = String, description = "When the unfinished upload expires"),
            ("Cache-Control" = String, description = "`no-store`"),
        )),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`expired`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`unsupported_version`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn head(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let progress = tus::status(&state, &user, &id).await?;
    let mut res = StatusCode::OK.into_response();
    progress_headers(&mut res, &progress);
    let h = res.headers_mut();
    h.insert(UPLOAD_LENGTH, HeaderValue::from(progress.upload.size));
    if let Some(m) = metadata_header(&progress.upload) {
        h.insert(UPLOAD_METADATA, m);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Append to a tus upload.
///
/// tus core: the body goes at `Upload-Offset`, which must be where the
/// upload stands (409 otherwise). With `Upload-Checksum` (sha1 or sha256)
/// the body counts only if it matches (460 otherwise). The last byte
/// commits the upload. One PATCH at a time per upload (423 otherwise).
#[utoipa::path(
    patch,
    path = "/tus/{id}",
    operation_id = "tusPatch",
    tag = "tus",
    params(
        ("id" = String, Path, description = "Upload id"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Offset" = u64, Header, description = "Where the body goes"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of the body"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Received", headers(
            ("Upload-Offset" = u64, description = "Bytes received"),
            ("Upload-Expires" = String, description = "When the unfinished upload expires"),
        )),
        (status = 400, description = "`invalid_request`, `unsupported_checksum_algorithm`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`offset_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`expired`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`unsupported_version`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`too_large`: past the upload's length", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`type_mismatch`: not application/offset+octet-stream", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`locked`: another request is writing", body = Problem, content_type = "application/problem+json"),
        (status = 460, description = "`checksum_mismatch`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !is_offset_stream(&headers) {
        return Err(ApiError::BodyTypeMismatch(format!(
            "send Content-Type: {OFFSET_STREAM}"
        )));
    }
    let offset = number(&headers, &UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::InvalidRequest("Upload-Offset is required".into()))?;
    let progress = tus::write(&state, &user, &id, patch_of(&headers, offset, body)?).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    progress_headers(&mut res, &progress);
    Ok(res)
}

/// Terminate a tus upload.
///
/// tus termination: an unfinished upload is cancelled (its parts
/// removed), a finished one deleted.
#[utoipa::path(
    delete,
    path = "/tus/{id}",
    operation_id = "tusDelete",
    tag = "tus",
    params(
        ("id" = String, Path, description = "Upload id"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
    ),
    responses(
        (status = 204, description = "Terminated"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`unsupported_version`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    tus::terminate(&state, &user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn discovery(state: &AppState) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(TUS_VERSION, HeaderValue::from_static(VERSION));
    h.insert(TUS_EXTENSION, HeaderValue::from_static(EXTENSIONS));
    h.insert(TUS_MAX_SIZE, HeaderValue::from(max_size(state)));
    h.insert(
        TUS_CHECKSUM_ALGORITHM,
        HeaderValue::from_static(CHECKSUM_ALGORITHMS),
    );
    res
}

/// What this tus server supports.
///
/// tus discovery: `Tus-Version`, `Tus-Extension`, `Tus-Max-Size` (the
/// largest profile that allows tus) and `Tus-Checksum-Algorithm`. No
/// authentication. (A CORS preflight is answered by the CORS layer.)
#[utoipa::path(
    options,
    path = "/tus/",
    operation_id = "tusOptions",
    tag = "tus",
    responses(
        (status = 204, description = "Capabilities", headers(
            ("Tus-Version" = String, description = "`1.0.0`"),
            ("Tus-Extension" = String, description = "creation,creation-with-upload,termination,expiration,checksum"),
            ("Tus-Max-Size" = u64, description = "Largest upload, in bytes"),
            ("Tus-Checksum-Algorithm" = String, description = "sha1,sha256"),
        )),
    ),
)]
pub async fn options(State(state): State<Arc<AppState>>) -> Response {
    discovery(&state)
}

/// What this tus server supports (the same as `OPTIONS /tus/`).
#[utoipa::path(
    options,
    path = "/tus/{id}",
    operation_id = "tusOptionsUpload",
    tag = "tus",
    params(("id" = String, Path, description = "Upload id")),
    responses(
        (status = 204, description = "Capabilities, as for `OPTIONS /tus/`"),
    ),
)]
pub async fn options_upload(State(state): State<Arc<AppState>>) -> Response {
    discovery(&state)
}

/// The header parsers above, reachable from outside the crate for the
/// fuzz targets in `fuzz/` (re-exported hidden as
/// `latchkey_api::tus_header_parsers`; not an API).
pub mod fuzzing {
    use std::collections::BTreeMap;

    use axum::http::{HeaderMap, HeaderValue};

    use crate::broker::modes::tus::Checksum;
    use crate::error::ApiError;

    /// `Upload-Metadata`: the metadata kept, and the profile, filename and
    /// type it names.
    pub type Metadata = (BTreeMap<String, String>, [Option<String>; 3]);

    pub fn metadata(raw: &str) -> Result<Metadata, ApiError> {
        let (meta, f) = super::parse_metadata(Some(raw))?;
        Ok((meta, [f.profile, f.filename, f.filetype]))
    }

    pub fn checksum(raw: HeaderValue) -> Result<Option<Checksum>, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(super::UPLOAD_CHECKSUM, raw);
        super::parse_checksum(&h)
    }

    /// `Upload-Offset` (`Upload-Length` is read the same way).
    pub fn offset(raw: HeaderValue) -> Result<Option<u64>, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(super::UPLOAD_OFFSET, raw);
        super::number(&h, &super::UPLOAD_OFFSET)
    }
}

#[cfg(test)]
#[path = "tus_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_maps_tus_keys_to_fields() {
        let raw = format!(
            "profile {},filename {},filetype {},is_confidential,note {}",
            STANDARD.encode("file"),
            STANDARD.encode("cat.jpg"),
            STANDARD.encode("image/jpeg"),
            STANDARD.encode("hi"),
        );
        let (meta, f) = parse_metadata(Some(&raw)).unwrap();
        assert_eq!(f.profile.as_deref(), Some("file"));
        assert_eq!(f.filename.as_deref(), Some("cat.jpg"));
        assert_eq!(f.filetype.as_deref(), Some("image/jpeg"));
        assert_eq!(meta.get("note").map(String::as_str), Some("hi"));
        assert_eq!(meta.get("is_confidential").map(String::as_str), Some(""));
        assert!(parse_metadata(Some("filename !!!")).is_err());
        // Uppy's names.
        let raw = format!(
            "name {},type {}",
            STANDARD.encode("a.bin"),
            STANDARD.encode("x/y")
        );
        let (_, f) = parse_metadata(Some(&raw)).unwrap();
        assert_eq!(f.filename.as_deref(), Some("a.bin"));
        assert_eq!(f.filetype.as_deref(), Some("x/y"));
    }

    #[test]
    fn expiry_is_an_http_date() {
        let t = time::macros::datetime!(2024-03-05 07:08:09 UTC);
        assert_eq!(http_date(t), "Tue, 05 Mar 2024 07:08:09 GMT");
    }

    #[test]
    fn checksums_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            UPLOAD_CHECKSUM,
            HeaderValue::from_static("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
        );
        let c = parse_checksum(&h).unwrap().unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha1);
        assert_eq!(c.digest.len(), 20);
        h.insert(UPLOAD_CHECKSUM, HeaderValue::from_static("md5 AAAA"));
        assert!(matches!(
            parse_checksum(&h),
            Err(ApiError::ChecksumAlgorithm(_))
        ));
    }
}
