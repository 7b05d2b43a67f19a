//! `post`: a browser form upload. The grant is the form's action URL (the
//! bucket) plus the fields to send before the file; the only signed thing is
//! the policy document among them, so everything the store must enforce is a
//! condition in it:
//! - exact `key`: the upload target (its staging key where the store ignores
//!   `If-None-Match`, as for `put`);
//! - exact `Content-Type`;
//! - `content-length-range` = [size, size];
//! - `x-amz-meta-upload-id` = the upload's id, so the object names its row;
//! - `success_action_status` = 201, so the store answers with the XML body
//!   (location, key, ETag) rather than an empty 204;
//! - the declared sha256 as `x-amz-checksum-sha256` where the store verifies
//!   it (plus `x-amz-checksum-algorithm`, which Garage needs to look at it);
//! - the expiration.
//!
//! A form field the policy does not cover is refused by the store, so a
//! client cannot add ACLs, other metadata or another key.

use latchkey_domain::Upload;
use latchkey_sigv4::PostPolicy;
use time::{Duration, OffsetDateTime};

use crate::broker::grant::{Grant, upload_target};
use crate::error::ApiError;
use crate::state::AppState;

/// The longest a POST form lives. AWS only compares the policy's
/// `expiration` with its clock, but s3s (the embedded store) also refuses a
/// form whose `x-amz-date` is more than 15 minutes from its clock, as it
/// does for header-signed requests. The form is signed at the row's
/// creation time (so a repeated Idempotency-Key yields the same form), so
/// beyond 15 minutes it would fail there: the grant says so honestly.
pub const MAX_FORM_LIFETIME: Duration = Duration::minutes(15);

/// When a grant signed at `created_at` for a row expiring at `expires_at`
/// stops working.
pub(crate) fn form_expiry(
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> OffsetDateTime {
    expires_at.min(created_at + MAX_FORM_LIFETIME)
}

pub fn grant(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
    let caps = state.store.capabilities();
    let expires_at = form_expiry(upload.created_at, upload.expires_at);
    let mut extra_fields: Vec<(String, String)> = vec![
        ("success_action_status".into(), "201".into()),
        ("x-amz-meta-upload-id".into(), upload.id.to_string()),
    ];
    if let (Some(sha), true) = (upload.sha256, caps.checksum_sha256) {
        extra_fields.push(("x-amz-checksum-algorithm".into(), "SHA256".into()));
        extra_fields.push(("x-amz-checksum-sha256".into(), sha.to_base64()));
    }
    let policy = PostPolicy {
        bucket: state.endpoint.bucket().to_owned(),
        key: upload_target(state, upload).as_str().to_owned(),
        expiration: expires_at,
        content_type: Some(upload.content_type.to_string()),
        // The row declares an exact size (quota reserves it, commit checks
        // it), so the form allows exactly that many bytes: the store then
        // refuses a short or long file instead of commit finding it later.
        content_length_range: Some((upload.size, upload.size)),
        extra_fields,
    };
    let form = state
        .signer
        .post_policy(&policy, upload.created_at)
        .map_err(|e| ApiError::Internal(format!("post policy: {e}")))?;
    Ok(Grant {
        method: "POST",
        url: state.endpoint.bucket_url(),
        fields: form.fields,
        expires_at: Some(expires_at),
        ..Grant::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_live_at_most_fifteen_minutes() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            form_expiry(t0, t0 + Duration::minutes(5)),
            t0 + Duration::minutes(5)
        );
        assert_eq!(
            form_expiry(t0, t0 + Duration::hours(2)),
            t0 + Duration::minutes(15)
        );
    }
}
