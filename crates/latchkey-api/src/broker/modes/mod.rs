//! One module per upload mode (DESIGN §3). Each turns a pending row into the
//! grant for its mode; `multipart` also prepares the row before it is
//! inserted (the store's multipart upload is created first).

pub mod credentials;
pub mod headers;
pub mod multipart;
pub mod post;
pub mod proxy;
pub mod put;
pub mod tus;

use latchkey_domain::{Mode, Upload};

use crate::error::ApiError;
use crate::state::AppState;

/// Why the configured store cannot honour `mode`, if it cannot: checked at
/// grant time, so a client never receives a grant that will fail later.
pub fn unsupported_reason(state: &AppState, mode: Mode) -> Option<String> {
    let caps = state.store.capabilities();
    match mode {
        Mode::Post if !caps.post_object => {
            Some("the store does not accept browser POST uploads".into())
        }
        Mode::Multipart if !caps.multipart => {
            Some("the store does not support multipart uploads".into())
        }
        Mode::Tus if !caps.multipart => Some(
            "the store does not support multipart uploads, which tus uploads are sent as".into(),
        ),
        Mode::Credentials if !caps.temporary_credentials => {
            Some("the store cannot be given scoped temporary credentials (no STS)".into())
        }
        _ => None,
    }
}

/// Work a mode needs done before its row is inserted.
pub async fn prepare(state: &AppState, upload: &mut Upload) -> Result<(), ApiError> {
    match upload.mode {
        Mode::Multipart | Mode::Tus => multipart::prepare(state, upload).await,
        Mode::Headers => headers::prepare(upload),
        _ => Ok(()),
    }
}

/// Undoes [`prepare`] when the row could not be inserted (quota, say).
pub async fn unprepare(state: &AppState, upload: &Upload) {
    if matches!(upload.mode, Mode::Multipart | Mode::Tus) {
        multipart::unprepare(state, upload).await;
    }
}
