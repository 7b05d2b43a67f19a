//! The upload flow itself — grants, commit, delete, download — written
//! against the ledger and store traits only. No JSON here: routes translate.

pub mod adopt;
mod attach;
mod commit;
mod create;
pub mod events;
pub mod grant;
mod media;
pub mod modes;
pub mod uppy;

pub use attach::attach;
pub use commit::{commit_upload, complete, delete, download};
pub use create::{NewUpload, create_upload};
pub use grant::{CredentialsGrant, Grant, MultipartGrant, PartUrl, grant_for, upload_target};
pub use media::{ProcessedImage, ProcessedVariant, finish_processing, reject_processing};

use latchkey_domain::{Upload, UploadId, UserId};

use crate::error::ApiError;
use crate::state::AppState;

/// Whether the upload's profile runs the photo pipeline (DESIGN §7).
pub fn processes_images(state: &AppState, upload: &Upload) -> bool {
    state
        .profiles
        .get(upload.profile.as_str())
        .is_some_and(|p| p.process == latchkey_domain::Process::Image)
}

/// Loads an upload the caller owns. Another user's upload is reported as
/// missing, not forbidden, so ids cannot be probed.
pub async fn get_owned(state: &AppState, user: &UserId, id: &str) -> Result<Upload, ApiError> {
    let id = UploadId::parse(id).map_err(|_| ApiError::NotFound)?;
    match state.ledger.get(id).await? {
        Some(u) if &u.user_id == user => Ok(u),
        _ => Err(ApiError::NotFound),
    }
}
