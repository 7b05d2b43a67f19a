//! `POST /v1/uploads`: check the request against its profile, reserve a row
//! in the ledger (quota included), and hand back a grant.

use std::collections::BTreeMap;

use latchkey_domain::{
    ContentType, Mode, ProfileName, Sha256Digest, Upload, UploadId, UploadStatus, UserId,
    extension_for, sanitize_filename,
};
use latchkey_ledger::{Inserted, Quota};
use time::OffsetDateTime;

use super::grant::{Grant, grant_for};
use super::modes;
use crate::error::ApiError;
use crate::state::AppState;

const MAX_METADATA_ENTRIES: usize = 16;
const MAX_METADATA_BYTES: usize = 2048;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A create request, parsed but not yet checked against a profile.
pub struct NewUpload {
    pub profile: Option<String>,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub mode: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
}

fn check_metadata(m: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if m.len() > MAX_METADATA_ENTRIES {
        return Err(ApiError::MetadataTooLarge(format!(
            "at most {MAX_METADATA_ENTRIES} metadata entries"
        )));
    }
    let total: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_METADATA_BYTES {
        return Err(ApiError::MetadataTooLarge(format!(
            "metadata may hold at most {MAX_METADATA_BYTES} bytes"
        )));
    }
    for (k, v) in m {
        let key_ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !key_ok {
            return Err(ApiError::InvalidRequest(format!(
                "metadata key {k:?} must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'"
            )));
        }
        if v.chars().any(char::is_control) {
            return Err(ApiError::InvalidRequest(format!(
                "metadata value for {k:?} has control characters"
            )));
        }
    }
    Ok(())
}

fn check_idempotency_key(k: &str) -> Result<(), ApiError> {
    if k.is_empty()
        || k.len() > MAX_IDEMPOTENCY_KEY
        || !k.bytes().all(|b| (0x21..0x7f).contains(&b))
    {
        return Err(ApiError::InvalidRequest(
            "Idempotency-Key must be 1-255 visible ASCII characters".into(),
        ));
    }
    Ok(())
}

/// The same Idempotency-Key must come with the same request.
fn same_request(existing: &Upload, wanted: &Upload) -> bool {
    existing.profile == wanted.profile
        && existing.mode == wanted.mode
        && existing.filename == wanted.filename
        && existing.content_type == wanted.content_type
        && existing.size == wanted.size
        && existing.sha256 == wanted.sha256
        && existing.metadata == wanted.metadata
}

pub async fn create_upload(
    state: &AppState,
    user: &UserId,
    req: NewUpload,
) -> Result<(Upload, Grant), ApiError> {
    if req.mode.as_deref().map(str::parse::<Mode>) == Some(Ok(Mode::Tus)) {
        // Checked before a row exists: a tus upload has no grant to give.
        return Err(ApiError::ModeNotSupported(
            "tus uploads are created at /tus/, not here".into(),
        ));
    }
    let row = insert_upload(state, user, req).await?;
    let grant = grant_for(state, &row).await?;
    Ok((row, grant))
}

/// Checks a request against its profile and inserts the pending row (or
/// finds the one its Idempotency-Key made): everything of a create but
/// the grant. The tus endpoint creates its uploads through this too.
pub(crate) async fn insert_upload(
    state: &AppState,
    user: &UserId,
    req: NewUpload,
) -> Result<Upload, ApiError> {
    if let Some(limiter) = &state.grant_limiter
        && let Err(wait) = limiter.check(user)
    {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let profile_name = req.profile.as_deref().unwrap_or(&state.default_profile);
    let profile = state
        .profiles
        .get(profile_name)
        .ok_or_else(|| ApiError::UnknownProfile(profile_name.to_owned()))?;
    let mode = match req.mode.as_deref() {
        None => Mode::Put,
        Some(m) => m
            .parse::<Mode>()
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
    };
    if !profile.allows_mode(mode) {
        return Err(ApiError::ModeNotAllowed(format!(
            "profile {} does not allow mode {mode}",
            profile.name
        )));
    }
    if let Some(why) = modes::unsupported_reason(state, mode) {
        return Err(ApiError::ModeNotSupported(format!("mode {mode}: {why}")));
    }
    let content_type = ContentType::parse(&req.content_type)
        .map_err(|e| ApiError::InvalidRequest(format!("content_type: {e}")))?;
    if !profile.allows_type(&content_type) {
        return Err(ApiError::TypeNotAllowed(format!(
            "{content_type} is not allowed for profile {}",
            profile.name
        )));
    }
    if req.size > profile.max_bytes.0 {
        return Err(ApiError::TooLarge(format!(
            "{} bytes is more than profile {} allows ({} bytes)",
            req.size, profile.name, profile.max_bytes.0
        )));
    }
    if req.size < profile.min_bytes.0 {
        return Err(ApiError::TooSmall(format!(
            "{} bytes is less than profile {} requires ({} bytes)",
            req.size, profile.name, profile.min_bytes.0
        )));
    }
    let sha256 = req
        .sha256
        .as_deref()
        .map(Sha256Digest::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(format!("sha256: {e}")))?;
    check_metadata(&req.metadata)?;
    if let Some(k) = &req.idempotency_key {
        check_idempotency_key(k)?;
    }

    // Signing time has whole seconds (SigV4 dates do), and the row keeps
    // exactly that so the grant can be re-derived later.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    let id = UploadId::new();
    let profile_name =
        ProfileName::parse(profile.name.as_str()).expect("profile names are validated");
    let key = profile.key_template.render(
        user,
        profile.name.as_str(),
        &id,
        extension_for(&content_type),
    );
    let upload = Upload {
        id,
        user_id: user.clone(),
        profile: profile_name,
        mode,
        key,
        filename: sanitize_filename(&req.filename),
        content_type,
        size: req.size,
        sha256,
        status: UploadStatus::Pending,
        etag: None,
        reason: None,
        metadata: req.metadata,
        idempotency_key: req.idempotency_key,
        attached_ref: None,
        created_at: now,
        expires_at: now + profile.grant_ttl,
        updated_at: now,
        committed_at: None,
        store_upload_id: None,
        media: None,
    };
    let quota = Quota {
        max_bytes: profile.quota_bytes.map(|b| b.0),
        max_count: profile.quota_count,
    };
    let has_quota = quota.max_bytes.is_some() || quota.max_count.is_some();
    let mut upload = upload;
    modes::prepare(state, &mut upload).await?;
    let inserted = state
        .ledger
        .insert(&upload, has_quota.then_some(&quota))
        .await;
    let row = match inserted {
        Ok(Inserted::New(row)) => row,
        Ok(Inserted::Existing(row)) => {
            // The first request's row stands; what this one prepared goes.
            modes::unprepare(state, &upload).await;
            if !same_request(&row, &upload) {
                return Err(ApiError::IdempotencyMismatch);
            }
            row
        }
        Err(e) => {
            modes::unprepare(state, &upload).await;
            return Err(e.into());
        }
    };
    if row.status != UploadStatus::Pending {
        // A replayed Idempotency-Key for an upload that has moved on: the
        // row is the answer, but there is no live grant to give.
        return Err(ApiError::InvalidState(format!(
            "upload {} is already {}",
            row.id, row.status
        )));
    }
    Ok(row)
}
