//! The end of a photo-pipeline job (DESIGN §7): the clean original and the
//! variants go to the store, then one compare-and-set moves the row from
//! `processing` to `committed` (with its `upload.committed` event) or to
//! `rejected`, and the quarantined bytes are removed. The pipeline itself
//! runs in an isolated worker process (latchkey-media, driven by
//! latchkey-server); this module only sees its results.

use latchkey_domain::{MediaInfo, MediaVariant, Upload, UploadStatus};
use latchkey_ledger::Changes;
use time::OffsetDateTime;

use super::upload_target;
use crate::error::ApiError;
use crate::state::AppState;

/// What the pipeline made of one upload.
#[derive(Debug)]
pub struct ProcessedImage {
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub thumbhash: String,
    pub variants: Vec<ProcessedVariant>,
}

#[derive(Debug)]
pub struct ProcessedVariant {
    pub name: String,
    /// `jpg` or `webp`: the variant key's suffix.
    pub extension: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Writes the outputs and commits the row. `Ok(None)` when the row had
/// already left `processing` (another worker finished it first).
pub async fn finish_processing(
    state: &AppState,
    upload: &Upload,
    image: ProcessedImage,
) -> Result<Option<Upload>, ApiError> {
    let mut variants = Vec::with_capacity(image.variants.len());
    for v in image.variants {
        let key = upload.key.variant(&v.name, &v.extension);
        state
            .store
            .put_bytes(&key, &v.content_type, v.bytes)
            .await?;
        variants.push(MediaVariant {
            name: v.name,
            key,
            content_type: v.content_type,
            width: v.width,
            height: v.height,
        });
    }
    // The original last: the key a client downloads is written once every
    // variant it may ask for exists.
    let etag = state
        .store
        .put_bytes(&upload.key, &image.content_type, image.bytes)
        .await?;
    let now = OffsetDateTime::now_utc();
    let changes = Changes {
        etag,
        committed_at: Some(now),
        media: Some(MediaInfo {
            width: image.width,
            height: image.height,
            thumbhash: image.thumbhash,
            variants,
        }),
        ..Changes::default()
    };
    let won = state
        .ledger
        .transition(
            upload.id,
            UploadStatus::Processing,
            UploadStatus::Committed,
            &changes,
            now,
        )
        .await?;
    if won.is_some() {
        remove_quarantine(state, upload).await?;
    }
    Ok(won)
}

/// Rejects the row with `code` (a problem code such as `not_an_image`) and
/// removes its bytes: the quarantine, and anything an earlier attempt wrote.
pub async fn reject_processing(
    state: &AppState,
    upload: &Upload,
    code: &str,
) -> Result<Option<Upload>, ApiError> {
    let changes = Changes {
        reason: Some(code.to_owned()),
        ..Changes::default()
    };
    let now = OffsetDateTime::now_utc();
    let won = state
        .ledger
        .transition(
            upload.id,
            UploadStatus::Processing,
            UploadStatus::Rejected,
            &changes,
            now,
        )
        .await?;
    if won.is_some() {
        remove_quarantine(state, upload).await?;
        state.store.delete(&upload.key).await?;
    }
    Ok(won)
}

async fn remove_quarantine(state: &AppState, upload: &Upload) -> Result<(), ApiError> {
    let target = upload_target(state, upload);
    if target != upload.key {
        state.store.delete(&target).await?;
    }
    Ok(())
}
