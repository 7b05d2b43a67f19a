//! Turning a pending upload into the signed request a client sends to the
//! store. Grants are derived from the row (signing time = creation time), so
//! the same row always yields the same grant: that is how a repeated
//! `Idempotency-Key` returns the same grant without storing signatures.

use latchkey_domain::{Mode, ObjectKey, Upload};
use latchkey_sigv4::FieldName;
use time::OffsetDateTime;

use super::modes;
use crate::error::ApiError;
use crate::state::AppState;

/// What a client needs to send its bytes, whatever the mode. Each mode
/// fills the parts it uses; the wire format (dto.rs) leaves the rest out.
#[derive(Debug, Default)]
pub struct Grant {
    /// `PUT` (put, headers, proxy), `POST` (post), or the mode's name where
    /// there is no single request (multipart, credentials).
    pub method: &'static str,
    pub url: String,
    /// Headers the client must send exactly as given (they are signed).
    pub headers: Vec<(String, String)>,
    /// Form fields for `post`, to send before the file field.
    pub fields: Vec<(FieldName, String)>,
    pub multipart: Option<MultipartGrant>,
    pub credentials: Option<CredentialsGrant>,
    pub expires_at: Option<OffsetDateTime>,
}

/// A multipart upload the broker created, with the first part URLs.
#[derive(Debug, Default)]
pub struct MultipartGrant {
    pub part_size: u64,
    pub part_count: u32,
    pub parts: Vec<PartUrl>,
}

#[derive(Debug)]
pub struct PartUrl {
    pub number: u32,
    pub url: String,
    /// Signed headers the part request must carry (content-length, checksum).
    pub headers: Vec<(String, String)>,
}

/// Temporary credentials scoped to one user prefix.
#[derive(Debug)]
pub struct CredentialsGrant {
    pub access_key_id: String,
    pub secret_access_key: latchkey_domain::Secret,
    pub session_token: latchkey_domain::Secret,
    pub expiration: OffsetDateTime,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Every key written with these credentials must start with this.
    pub prefix: String,
}

/// The key a grant lets the client write: the quarantine key for profiles
/// that process images (the pipeline writes the key itself), else the
/// upload's own key when the store refuses overwrites, else its staging key
/// (see `ObjectKey::staging`).
/// A `credentials` grant covers a whole prefix, so staging cannot protect
/// it: its client writes the key itself.
pub fn upload_target(state: &AppState, upload: &Upload) -> ObjectKey {
    if upload.mode != Mode::Credentials && super::processes_images(state, upload) {
        return upload.key.quarantine();
    }
    if state.store.capabilities().if_none_match || upload.mode == Mode::Credentials {
        upload.key.clone()
    } else {
        upload.key.staging()
    }
}

/// The grant for a pending row. Async because some modes call the store or
/// STS; deterministic for the single-request modes (see the module header).
pub async fn grant_for(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
    match upload.mode {
        Mode::Put => modes::put::grant(state, upload),
        Mode::Post => modes::post::grant(state, upload),
        Mode::Headers => modes::headers::grant(state, upload),
        Mode::Multipart => modes::multipart::grant(state, upload).await,
        Mode::Credentials => modes::credentials::grant(state, upload).await,
        Mode::Proxy => modes::proxy::grant(state, upload),
        Mode::Tus => Err(ApiError::ModeNotSupported(
            "tus uploads are created at /tus/, not here".into(),
        )),
    }
}
