//! Store events — "this object was just written" — as a commit path: the
//! embedded store tells the broker in-process, AWS S3 and MinIO post event
//! notifications. Each one is only a hint: the commit itself still goes
//! through `commit_upload` (HEAD, verify, compare-and-set), so duplicated,
//! late or reordered events are harmless.

use latchkey_domain::{ObjectKey, Upload, UploadStatus};

use super::commit_upload;
use crate::error::ApiError;
use crate::state::AppState;

/// What an event about one key led to.
#[derive(Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// The upload it belongs to is now committed (or already was).
    Committed,
    /// The object broke its grant: the upload was rejected.
    Rejected,
    /// Nothing to do: no upload for this key, or the upload is settled.
    Ignored,
    /// The store could not be asked; the reconciler will see to it.
    Deferred,
}

/// The upload an object key belongs to: its own key, or a key derived from
/// it (staging, quarantine, a variant).
async fn upload_for(state: &AppState, key: &str) -> Result<Option<Upload>, ApiError> {
    if let Some(row) = state
        .ledger
        .find_by_key(&ObjectKey::from_trusted(key))
        .await?
    {
        return Ok(Some(row));
    }
    match ObjectKey::derived_base(key) {
        Some(base) => Ok(state
            .ledger
            .find_by_key(&ObjectKey::from_trusted(base))
            .await?),
        None => Ok(None),
    }
}

pub async fn object_created(state: &AppState, key: &str) -> Result<EventOutcome, ApiError> {
    let Some(row) = upload_for(state, key).await? else {
        // No row: written with prefix-wide `credentials` keys, or stray.
        return super::adopt::adopt(state, key).await;
    };
    if row.status != UploadStatus::Pending {
        return Ok(EventOutcome::Ignored);
    }
    match commit_upload(state, row).await {
        Ok(_) => Ok(EventOutcome::Committed),
        Err(ApiError::StoreUnavailable) => Ok(EventOutcome::Deferred),
        // The event raced ahead of the object (or of a multipart complete).
        Err(ApiError::ObjectMissing) => Ok(EventOutcome::Ignored),
        Err(
            ApiError::SizeMismatch(_) | ApiError::TypeMismatch(_) | ApiError::ChecksumMismatch(_),
        ) => Ok(EventOutcome::Rejected),
        Err(ApiError::Expired(_) | ApiError::InvalidState(_)) => Ok(EventOutcome::Ignored),
        Err(e) => Err(e),
    }
}
