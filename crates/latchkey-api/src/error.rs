//! Every way a request can fail, and the one table that maps each to an HTTP
//! status and a stable problem `code` (RFC 9457). Logging happens in the
//! trace middleware, never here; 5xx bodies say nothing about internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no such upload")]
    NotFound,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    #[error("{0}")]
    ModeNotAllowed(String),
    #[error("{0}")]
    ModeNotSupported(String),
    #[error("{0}")]
    TypeNotAllowed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    TooSmall(String),
    #[error("{0}")]
    MetadataTooLarge(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("too many grant requests; retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    #[error("no object has been uploaded for this grant yet")]
    ObjectMissing,
    #[error("{0}")]
    SizeMismatch(String),
    #[error("{0}")]
    TypeMismatch(String),
    #[error("{0}")]
    ChecksumMismatch(String),
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    AlreadyAttached(String),
    #[error("{0}")]
    VariantNotFound(String),
    /// Photo pipeline: the bytes are not an allowed image.
    #[error("{0}")]
    NotAnImage(String),
    /// Photo pipeline: too many pixels (from the header, before decoding).
    #[error("{0}")]
    TooManyPixels(String),
    /// Photo pipeline: an animation with too many frames.
    #[error("{0}")]
    TooManyFrames(String),
    /// Photo pipeline: broken, truncated, or the decoder failed.
    #[error("{0}")]
    DecodeFailed(String),
    /// Multipart: a part is missing, has the wrong size, or another ETag.
    #[error("{0}")]
    PartsIncomplete(String),
    /// Proxy: the body is longer than the upload declared.
    #[error("{0}")]
    BodyTooLarge(String),
    /// Proxy: the body's Content-Type is not the declared one.
    #[error("{0}")]
    BodyTypeMismatch(String),
    /// A JSON request body over `limits.json_body`.
    #[error("{0}")]
    RequestTooLarge(String),
    /// Proxy: the body came without a Content-Length.
    #[error("{0}")]
    LengthRequired(String),
    /// tus: another request is writing to the upload.
    #[error("{0}")]
    Locked(String),
    /// tus: the PATCH's `Upload-Offset` is not where the upload stands.
    #[error("{0}")]
    OffsetMismatch(String),
    /// tus: a missing or unsupported `Tus-Resumable`.
    #[error("{0}")]
    TusVersion(String),
    /// tus: an `Upload-Checksum` algorithm other than sha1 and sha256.
    #[error("{0}")]
    ChecksumAlgorithm(String),
    /// tus: the PATCH body does not match its `Upload-Checksum` (460).
    #[error("{0}")]
    BodyChecksumMismatch(String),
    #[error("the object store is unavailable; try again shortly")]
    StoreUnavailable,
    #[error("the ledger database is unavailable; try again shortly")]
    LedgerUnavailable,
    #[error("internal error")]
    Internal(String),
}

/// The problem+json body. `code` is the stable, machine-readable member.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
}

impl ApiError {
    /// The one mapping from error to (status, code, title).
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
            ),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            InvalidRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid request",
            ),
            UnknownProfile(_) => (
                StatusCode::BAD_REQUEST,
                "unknown_profile",
                "Unknown profile",
            ),
            ModeNotAllowed(_) => (
                StatusCode::BAD_REQUEST,
                "mode_not_allowed",
                "Mode not allowed",
            ),
            ModeNotSupported(_) => (
                StatusCode::BAD_REQUEST,
                "mode_not_supported",
                "Mode not supported by the store",
            ),
            TypeNotAllowed(_) => (
                StatusCode::BAD_REQUEST,
                "type_not_allowed",
                "Content type not allowed",
            ),
            TooLarge(_) => (StatusCode::BAD_REQUEST, "too_large", "Upload too large"),
            TooSmall(_) => (StatusCode::BAD_REQUEST, "too_small", "Upload too small"),
            MetadataTooLarge(_) => (
                StatusCode::BAD_REQUEST,
                "metadata_too_large",
                "Metadata too large",
            ),
            RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Rate limited",
            ),
            QuotaExceeded(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                "Quota exceeded",
            ),
            IdempotencyMismatch => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_mismatch",
                "Idempotency key reused",
            ),
            ObjectMissing => (StatusCode::CONFLICT, "object_missing", "Object missing"),
            SizeMismatch(_) => (StatusCode::CONFLICT, "size_mismatch", "Size mismatch"),
            TypeMismatch(_) => (
                StatusCode::CONFLICT,
                "type_mismatch",
                "Content type mismatch",
            ),
            ChecksumMismatch(_) => (
                StatusCode::CONFLICT,
                "checksum_mismatch",
                "Checksum mismatch",
            ),
            Expired(_) => (StatusCode::GONE, "expired", "Grant expired"),
            AlreadyAttached(_) => (StatusCode::CONFLICT, "already_attached", "Already attached"),
            InvalidState(_) => (StatusCode::CONFLICT, "invalid_state", "Invalid state"),
            VariantNotFound(_) => (
                StatusCode::NOT_FOUND,
                "variant_not_found",
                "No such variant",
            ),
            NotAnImage(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_an_image",
                "Not an image",
            ),
            TooManyPixels(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_pixels",
                "Too many pixels",
            ),
            TooManyFrames(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_frames",
                "Too many frames",
            ),
            DecodeFailed(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "decode_failed",
                "Image could not be decoded",
            ),
            PartsIncomplete(_) => (StatusCode::CONFLICT, "parts_incomplete", "Parts incomplete"),
            BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", "Body too large"),
            BodyTypeMismatch(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "type_mismatch",
                "Content type mismatch",
            ),
            RequestTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
            ),
            LengthRequired(_) => (
                StatusCode::LENGTH_REQUIRED,
                "length_required",
                "Content-Length required",
            ),
            Locked(_) => (StatusCode::LOCKED, "locked", "Upload locked"),
            OffsetMismatch(_) => (StatusCode::CONFLICT, "offset_mismatch", "Offset mismatch"),
            TusVersion(_) => (
                StatusCode::PRECONDITION_FAILED,
                "unsupported_version",
                "Unsupported tus version",
            ),
            ChecksumAlgorithm(_) => (
                StatusCode::BAD_REQUEST,
                "unsupported_checksum_algorithm",
                "Unsupported checksum algorithm",
            ),
            // tus's own status for a checksum mismatch.
            BodyChecksumMismatch(_) => (
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                "checksum_mismatch",
                "Checksum mismatch",
            ),
            StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Store unavailable",
            ),
            LedgerUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                "Ledger unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl ApiError {
    /// The problem a rejected upload answers with, from the reason code its
    /// row recorded (the inverse of `parts()` for the rejection codes, kept
    /// beside it so the two tables change together).
    pub fn rejected(reason: Option<&str>) -> ApiError {
        use ApiError::*;
        match reason {
            Some("size_mismatch") => SizeMismatch("the uploaded object had the wrong size".into()),
            Some("type_mismatch") => TypeMismatch("the uploaded object had the wrong type".into()),
            Some("checksum_mismatch") => {
                ChecksumMismatch("the uploaded bytes had another sha256".into())
            }
            Some("not_an_image") => {
                NotAnImage("the uploaded bytes are not an allowed image".into())
            }
            Some("too_many_pixels") => TooManyPixels("the image has too many pixels".into()),
            Some("too_many_frames") => TooManyFrames("the animation has too many frames".into()),
            Some("decode_failed") => DecodeFailed("the image could not be decoded".into()),
            _ => InvalidState("the upload was rejected".into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        // Internal details go to the log (through the extension below), not
        // to the client.
        let detail = match &self {
            ApiError::Internal(_) => "an internal error occurred".to_owned(),
            other => other.to_string(),
        };
        let body = Problem {
            kind: format!("https://latchkey.dev/problems/{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
        };
        let mut res = (status, axum::Json(body)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::RateLimited { retry_after_secs } = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res.extensions_mut().insert(ProblemCode(code));
        if let ApiError::Internal(msg) = self {
            res.extensions_mut().insert(InternalDetail(msg));
        }
        res
    }
}

/// The stable `code` of a problem response, for metrics and logs.
#[derive(Clone, Copy, Debug)]
pub struct ProblemCode(pub &'static str);

/// Carries an internal error's cause to the logging middleware.
#[derive(Clone, Debug)]
pub struct InternalDetail(pub String);

impl From<latchkey_ledger::LedgerError> for ApiError {
    fn from(e: latchkey_ledger::LedgerError) -> Self {
        use latchkey_ledger::LedgerError;
        match e {
            LedgerError::NotFound => ApiError::NotFound,
            LedgerError::QuotaExceeded { what, limit, used } => ApiError::QuotaExceeded(format!(
                "{what:?} quota of {limit} would be exceeded ({used} already used or reserved)"
            )),
            // The database could not be reached or answer: like a store
            // outage, worth a retry rather than a 500.
            e if e.is_unavailable() => ApiError::LedgerUnavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<latchkey_store::StoreError> for ApiError {
    fn from(e: latchkey_store::StoreError) -> Self {
        match e {
            latchkey_store::StoreError::Unavailable(_) => ApiError::StoreUnavailable,
            latchkey_store::StoreError::Refused(code) => {
                ApiError::Internal(format!("store refused the broker: {code}"))
            }
        }
    }
}
