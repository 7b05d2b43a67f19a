//! `credentials` mode. Not available yet: grants for it are refused with
//! `mode_not_supported` until this module implements them.

use latchkey_domain::Upload;

use crate::broker::grant::Grant;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn grant(_state: &AppState, _upload: &Upload) -> Result<Grant, ApiError> {
    Err(ApiError::ModeNotSupported(
        "mode credentials is not available yet".into(),
    ))
}
