//! `put`: one presigned PUT URL plus the headers it signed (content type,
//! length, the declared sha256, and `If-None-Match: *` where the store
//! honours it).

use latchkey_domain::Upload;

use crate::broker::grant::{Grant, upload_target};
use crate::error::ApiError;
use crate::state::AppState;

pub fn grant(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
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
        expires_at: Some(upload.expires_at),
        ..Grant::default()
    })
}
