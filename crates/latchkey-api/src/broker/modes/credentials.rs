//! `credentials`: scoped temporary credentials (access key, secret, session
//! token) that allow only `PutObject` and the multipart calls on keys under
//! the caller's own prefix for one profile, `profile.key_template.user_prefix`
//! (e.g. `u/alice/photo/`), until the profile's grant TTL runs out. The
//! embedded store mints and checks them itself; AWS/MinIO/Ceph get them from
//! STS (`latchkey_store::temporary`).
//!
//! Two ways in:
//! - `POST /v1/credentials {profile}` ([`for_profile`]): credentials only, no
//!   ledger row. Whatever the client writes under the prefix is *adopted*
//!   (DESIGN §4): the store's event (embedded store in-process) creates the
//!   row, checks the object against the profile — type, size, quota — and
//!   commits it, or rejects it and deletes the object.
//! - `POST /v1/uploads` with `mode: "credentials"` ([`grant`]): a grant over
//!   the prefix *plus* a reservation for one declared file. The row's `key`
//!   (inside the prefix) is where that file goes; the grant's `url` is its
//!   unsigned object URL, for clients that sign requests themselves. The row
//!   commits through the ordinary paths (`complete`, the store's event, the
//!   reconciler) against what was declared, exactly like a `put` row. Other
//!   objects the client writes under the prefix with the same credentials
//!   are adopted as above.
//!
//! Nothing here is stored: a grant for a row is derived from the row (nonce =
//! upload id, expiry = the row's), so for the embedded store a repeated
//! `Idempotency-Key` re-issues the identical credentials. STS answers with
//! fresh ones each time, and never for less than 15 minutes: its expiry can
//! then be later than the row's.

use latchkey_domain::{Profile, Upload, UploadId, UserId};
use latchkey_store::temporary::CredentialRequest;
use time::OffsetDateTime;

use crate::broker::adopt::has_user_prefix;
use crate::broker::grant::{CredentialsGrant, Grant};
use crate::error::ApiError;
use crate::state::AppState;

/// The store's base URL as clients reach it (`scheme://host[:port]`, without
/// the bucket), which is what S3 clients take as their endpoint.
fn client_endpoint(state: &AppState) -> String {
    let e = &state.endpoint;
    let host = if e.path_style() {
        e.host()
    } else {
        e.host()
            .strip_prefix(e.bucket())
            .and_then(|h| h.strip_prefix('.'))
            .unwrap_or(e.host())
    };
    format!("{}://{host}", e.scheme())
}

/// Credentials for `user`'s prefix in `profile`, valid until `expires_at`.
async fn issue(
    state: &AppState,
    user: &UserId,
    profile: &Profile,
    expires_at: OffsetDateTime,
    nonce: &str,
) -> Result<CredentialsGrant, ApiError> {
    let prefix = profile
        .key_template
        .user_prefix(user, profile.name.as_str());
    if !has_user_prefix(&profile.key_template, profile.name.as_str()) {
        // A template such as `{user}-{id}` has no per-user folder: a prefix
        // grant would cover the whole bucket.
        return Err(ApiError::ModeNotSupported(format!(
            "profile {}'s key template has no per-user prefix to scope credentials to",
            profile.name
        )));
    }
    let now = OffsetDateTime::now_utc();
    let creds = state
        .store
        .temporary_credentials(&CredentialRequest {
            prefix: &prefix,
            expires_at,
            now,
            nonce,
        })
        .await?;
    Ok(CredentialsGrant {
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
        session_token: creds.session_token,
        expiration: creds.expiration,
        endpoint: client_endpoint(state),
        region: state.endpoint.region().to_owned(),
        bucket: state.endpoint.bucket().to_owned(),
        prefix,
    })
}

/// The grant for a `mode: credentials` row (see the module header).
pub async fn grant(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
    let profile = state
        .profiles
        .get(upload.profile.as_str())
        .ok_or_else(|| ApiError::UnknownProfile(upload.profile.to_string()))?;
    let creds = issue(
        state,
        &upload.user_id,
        profile,
        upload.expires_at,
        &upload.id.to_string(),
    )
    .await?;
    Ok(Grant {
        method: "credentials",
        url: state.endpoint.object_url(upload.key.as_str()),
        expires_at: Some(upload.expires_at),
        credentials: Some(creds),
        ..Grant::default()
    })
}

/// `POST /v1/credentials`: credentials for the caller's prefix in a profile
/// (the default profile when `profile` is `None`), with no ledger row.
pub async fn for_profile(
    state: &AppState,
    user: &UserId,
    profile: Option<&str>,
) -> Result<CredentialsGrant, ApiError> {
    let name = profile.unwrap_or(&state.default_profile);
    let profile = state
        .profiles
        .get(name)
        .ok_or_else(|| ApiError::UnknownProfile(name.to_owned()))?;
    let mode = latchkey_domain::Mode::Credentials;
    if !profile.allows_mode(mode) {
        return Err(ApiError::ModeNotAllowed(format!(
            "profile {} does not allow mode {mode}",
            profile.name
        )));
    }
    if let Some(why) = super::unsupported_reason(state, mode) {
        return Err(ApiError::ModeNotSupported(format!("mode {mode}: {why}")));
    }
    // A user already at their quota could only write objects that adoption
    // would reject: say so now instead.
    if profile.quota_bytes.is_some() || profile.quota_count.is_some() {
        let (bytes, count) = state.ledger.usage(user, &profile.name).await?;
        let full_count = profile.quota_count.is_some_and(|max| count >= max);
        let full_bytes = profile.quota_bytes.is_some_and(|max| bytes >= max.0);
        if full_count || full_bytes {
            return Err(ApiError::QuotaExceeded(format!(
                "the quota of profile {} is used up",
                profile.name
            )));
        }
    }
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    issue(
        state,
        user,
        profile,
        now + profile.grant_ttl,
        &UploadId::new().to_string(),
    )
    .await
}
