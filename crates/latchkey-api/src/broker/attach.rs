//! Attach: the app's backend records that a committed upload now belongs to
//! one of its own records (`post:42`). A profile can require it; committed
//! uploads left unattached past the profile's `unattached_ttl` are deleted by
//! the reconciler — the "unattached blob" problem solved in the product.

use latchkey_domain::{Upload, UploadId, UploadStatus, UserId};
use latchkey_ledger::LedgerError;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::state::AppState;

const MAX_REF: usize = 255;

pub async fn attach(
    state: &AppState,
    acting_for: Option<&UserId>,
    id: &str,
    reference: &str,
) -> Result<Upload, ApiError> {
    if reference.is_empty() || reference.len() > MAX_REF || reference.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidRequest(format!(
            "ref must be 1-{MAX_REF} characters without control characters"
        )));
    }
    let id = UploadId::parse(id).map_err(|_| ApiError::NotFound)?;
    let row = state.ledger.get(id).await?.ok_or(ApiError::NotFound)?;
    if acting_for.is_some_and(|u| *u != row.user_id) {
        return Err(ApiError::NotFound);
    }
    match state
        .ledger
        .set_attached(id, reference, OffsetDateTime::now_utc())
        .await
    {
        Ok(Some(row)) => Ok(row),
        Ok(None) => {
            let row = state.ledger.get(id).await?.ok_or(ApiError::NotFound)?;
            Err(ApiError::InvalidState(match row.status {
                UploadStatus::Pending | UploadStatus::Processing => {
                    "the upload is not committed yet; attach it after it commits".to_owned()
                }
                other => format!("the upload is {other} and cannot be attached"),
            }))
        }
        Err(LedgerError::Conflict(_)) => Err(ApiError::AlreadyAttached(
            "the upload is already attached to another ref".into(),
        )),
        Err(e) => Err(e.into()),
    }
}
