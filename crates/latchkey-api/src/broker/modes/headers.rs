//! `headers`: the broker signs every header of one PUT (SigV4 header auth)
//! and the client sends them verbatim with the body. The payload hash in the
//! signature (`x-amz-content-sha256`) is the sha256 the client declared, so
//! the store itself refuses any other bytes; `content-type` and
//! `content-length` are signed too, as are `x-amz-checksum-sha256` and
//! `If-None-Match: *` where the store honours them.
//!
//! The signature carries `x-amz-date` = the row's creation time (the
//! broker's clock, so a phone with a wrong clock still succeeds, and a
//! repeated Idempotency-Key yields the same headers). Stores refuse a
//! header-signed request more than 15 minutes from their clock (AWS and the
//! embedded store; Garage does not), so the grant lives at most that long.

use latchkey_domain::Upload;
use time::{Duration, OffsetDateTime};

use crate::broker::grant::{Grant, upload_target};
use crate::error::ApiError;
use crate::state::AppState;

/// How long after `x-amz-date` AWS (and s3s) still accept a header-signed
/// request.
pub const MAX_SIGNATURE_AGE: Duration = Duration::minutes(15);

/// When a grant signed at `created_at` for a row expiring at `expires_at`
/// stops working.
pub(crate) fn header_expiry(
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> OffsetDateTime {
    expires_at.min(created_at + MAX_SIGNATURE_AGE)
}

/// Checked before the row is inserted: without the client's sha256 there is
/// no payload hash to sign.
pub fn prepare(upload: &Upload) -> Result<(), ApiError> {
    if upload.sha256.is_none() {
        return Err(ApiError::InvalidRequest(
            "headers mode needs sha256: the signature covers the body's hash".into(),
        ));
    }
    Ok(())
}

pub fn grant(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
    let Some(sha) = upload.sha256 else {
        return Err(ApiError::InvalidRequest("headers mode needs sha256".into()));
    };
    let caps = state.store.capabilities();
    let mut headers: Vec<(String, String)> = vec![
        ("content-type".into(), upload.content_type.to_string()),
        ("content-length".into(), upload.size.to_string()),
    ];
    if caps.checksum_sha256 {
        // Redundant with the payload hash for enforcement, but it makes the
        // store record the checksum, which commit then compares.
        headers.push(("x-amz-checksum-sha256".into(), sha.to_base64()));
    }
    if caps.if_none_match {
        headers.push(("if-none-match".into(), "*".into()));
    }
    let url = state
        .endpoint
        .object_url(upload_target(state, upload).as_str());
    let to_sign: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let auth = state
        .signer
        .sign_headers("PUT", &url, &to_sign, &sha.to_hex(), upload.created_at)
        .map_err(|e| ApiError::Internal(format!("sign headers: {e}")))?;
    headers.extend(auth);
    Ok(Grant {
        method: "PUT",
        url,
        headers,
        expires_at: Some(header_expiry(upload.created_at, upload.expires_at)),
        ..Grant::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_live_at_most_fifteen_minutes() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            header_expiry(t0, t0 + Duration::minutes(1)),
            t0 + Duration::minutes(1)
        );
        assert_eq!(
            header_expiry(t0, t0 + Duration::days(1)),
            t0 + Duration::minutes(15)
        );
    }
}
