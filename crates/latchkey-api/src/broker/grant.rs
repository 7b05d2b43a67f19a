//! Turning a pending upload into the signed request a client sends to the
//! store. Grants are derived from the row (signing time = creation time), so
//! the same row always yields the same grant: that is how a repeated
//! `Idempotency-Key` returns the same grant without storing signatures.

use latchkey_domain::{Mode, ObjectKey, Upload};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug)]
pub struct Grant {
    pub method: &'static str,
    pub url: String,
    /// Headers the client must send exactly as given (they are signed).
    pub headers: Vec<(String, String)>,
    pub expires_at: OffsetDateTime,
}

/// The key a grant lets the client write: the upload's own key when the
/// store refuses overwrites, else its staging key (see `ObjectKey::staging`).
pub fn upload_target(state: &AppState, upload: &Upload) -> ObjectKey {
    if state.store.capabilities().if_none_match {
        upload.key.clone()
    } else {
        upload.key.staging()
    }
}

pub fn grant_for(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
    match upload.mode {
        Mode::Put => put_grant(state, upload),
        other => Err(ApiError::ModeNotAllowed(format!(
            "mode {other} is not available yet"
        ))),
    }
}

fn put_grant(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
    let caps = state.store.capabilities();
    let mut headers: Vec<(String, String)> = vec![
        ("content-type".into(), upload.content_type.to_string()),
        ("content-length".into(), upload.size.to_string()),
    ];
    if let (Some(sha), true) = (upload.sha256, caps.checksum_sha256) {
        headers.push(("x-amz-checksum-sha256".into(), sha.to_base64()));
    }
    if caps.if_none_match {
        headers.push(("if-none-match".into(), "*".into()));
    }
    let ttl = (upload.expires_at - upload.created_at)
        .whole_seconds()
        .max(1) as u64;
    let url = state
        .endpoint
        .object_url(upload_target(state, upload).as_str());
    let signed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let url = state
        .signer
        .presign("PUT", &url, &signed, &[], ttl, upload.created_at)
        .map_err(|e| ApiError::Internal(format!("presign: {e}")))?;
    Ok(Grant {
        method: "PUT",
        url,
        headers,
        expires_at: upload.expires_at,
    })
}
