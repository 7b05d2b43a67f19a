//! `multipart`: the broker creates an S3 multipart upload at the grant's key
//! before the row is inserted, and hands out presigned `UploadPart` URLs,
//! each signing its part's exact `content-length`, so the store refuses a
//! part of any other size. Completing lists what the store holds, checks
//! every part against the layout, completes the multipart upload, and then
//! commits through the one commit path (`commit_upload`).
//!
//! The layout (part size and count) is derived from the row's size and the
//! configured part size, never stored: the same row always yields the same
//! part URLs, like every other grant.

use latchkey_domain::{Mode, Upload, UploadStatus, UserId};
use latchkey_store::Part;
use time::OffsetDateTime;

use crate::broker::get_owned;
use crate::broker::grant::{Grant, MultipartGrant, PartUrl, upload_target};
use crate::error::ApiError;
use crate::state::AppState;

/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part number.
pub const MAX_PARTS: u64 = 10_000;
/// How many part URLs the grant itself carries; more come from
/// `POST /v1/uploads/{id}/parts`.
pub const FIRST_BATCH: u32 = 16;
/// The most part URLs one `POST …/parts` signs.
pub const MAX_BATCH: usize = 1000;

const MIB: u64 = 1024 * 1024;

/// Part size and part count for `size` bytes: the configured size (at
/// least 5 MiB), grown in whole MiB when the file would need more than
/// 10,000 parts. An empty file is one empty part.
pub fn layout(configured: u64, size: u64) -> (u64, u32) {
    let mut part = configured.max(MIN_PART_SIZE);
    let needed = size.div_ceil(MAX_PARTS);
    if needed > part {
        part = needed.div_ceil(MIB) * MIB;
    }
    let count = size.div_ceil(part).max(1);
    (part, count as u32)
}

/// The exact length of part `number` (1-based): the last part holds the rest.
pub fn part_len(size: u64, part_size: u64, count: u32, number: u32) -> u64 {
    if number < count {
        part_size
    } else {
        size - part_size * u64::from(count - 1)
    }
}

fn row_layout(state: &AppState, upload: &Upload) -> (u64, u32) {
    layout(state.limits.part_size, upload.size)
}

fn store_upload_id(upload: &Upload) -> Result<&str, ApiError> {
    upload.store_upload_id.as_deref().ok_or_else(|| {
        ApiError::Internal(format!(
            "multipart upload {} has no store upload id",
            upload.id
        ))
    })
}

pub async fn prepare(state: &AppState, upload: &mut Upload) -> Result<(), ApiError> {
    let target = upload_target(state, upload);
    let id = state
        .store
        .create_multipart(&target, upload.content_type.as_str())
        .await?;
    upload.store_upload_id = Some(id);
    Ok(())
}

/// Aborts the store's multipart upload (the row was not inserted, the
/// client cancelled, or the grant expired). Failures are only logged: an
/// orphaned multipart upload holds no object, and the bucket's lifecycle
/// rule or a later abort removes it.
pub async fn unprepare(state: &AppState, upload: &Upload) {
    let Some(id) = upload.store_upload_id.as_deref() else {
        return;
    };
    let target = upload_target(state, upload);
    if let Err(e) = state.store.abort_multipart(&target, id).await {
        tracing::warn!(upload = %upload.id, error = %e, "aborting a multipart upload failed");
    }
}

/// Presigned `UploadPart` URLs for `numbers`, signed at the row's creation
/// time so they expire with the grant.
fn sign_parts(
    state: &AppState,
    upload: &Upload,
    numbers: &[u32],
) -> Result<Vec<PartUrl>, ApiError> {
    let upload_id = store_upload_id(upload)?;
    let (part_size, count) = row_layout(state, upload);
    let url = state
        .endpoint
        .object_url(upload_target(state, upload).as_str());
    let ttl = (upload.expires_at - upload.created_at)
        .whole_seconds()
        .max(1) as u64;
    numbers
        .iter()
        .map(|&n| {
            let len = part_len(upload.size, part_size, count, n).to_string();
            let number = n.to_string();
            let signed = state
                .signer
                .presign(
                    "PUT",
                    &url,
                    &[("content-length", len.as_str())],
                    &[("partNumber", number.as_str()), ("uploadId", upload_id)],
                    ttl,
                    upload.created_at,
                )
                .map_err(|e| ApiError::Internal(format!("presign: {e}")))?;
            Ok(PartUrl {
                number: n,
                url: signed,
                headers: vec![("content-length".into(), len)],
            })
        })
        .collect()
}

pub async fn grant(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
    let (part_size, part_count) = row_layout(state, upload);
    let first: Vec<u32> = (1..=part_count.min(FIRST_BATCH)).collect();
    Ok(Grant {
        method: "multipart",
        multipart: Some(MultipartGrant {
            part_size,
            part_count,
            parts: sign_parts(state, upload, &first)?,
        }),
        expires_at: Some(upload.expires_at),
        ..Grant::default()
    })
}

/// A pending multipart upload of the caller's whose grant still runs.
async fn live_upload(state: &AppState, user: &UserId, id: &str) -> Result<Upload, ApiError> {
    let upload = get_owned(state, user, id).await?;
    if upload.mode != Mode::Multipart {
        return Err(ApiError::InvalidState(format!(
            "upload {} is a {} upload, not multipart",
            upload.id, upload.mode
        )));
    }
    if upload.status != UploadStatus::Pending {
        return Err(ApiError::InvalidState(format!(
            "the upload is {}",
            upload.status
        )));
    }
    if OffsetDateTime::now_utc() >= upload.expires_at {
        return Err(ApiError::Expired("the grant has expired".into()));
    }
    Ok(upload)
}

/// `POST /v1/uploads/{id}/parts`: URLs for more parts.
pub async fn part_urls(
    state: &AppState,
    user: &UserId,
    id: &str,
    numbers: &[u32],
) -> Result<Vec<PartUrl>, ApiError> {
    let upload = live_upload(state, user, id).await?;
    let (_, count) = row_layout(state, &upload);
    if numbers.is_empty() || numbers.len() > MAX_BATCH {
        return Err(ApiError::InvalidRequest(format!(
            "numbers must list 1 to {MAX_BATCH} part numbers"
        )));
    }
    if let Some(bad) = numbers.iter().find(|n| !(1..=count).contains(*n)) {
        return Err(ApiError::InvalidRequest(format!(
            "part {bad} is out of range: this upload has parts 1 to {count}"
        )));
    }
    sign_parts(state, &upload, numbers)
}

/// `GET /v1/uploads/{id}/parts`: the parts the store holds, for resuming.
/// Also answers the layout (part size and count), which a resuming client
/// needs and the row does not show.
pub async fn stored_parts(
    state: &AppState,
    user: &UserId,
    id: &str,
) -> Result<(u64, u32, Vec<Part>), ApiError> {
    let upload = live_upload(state, user, id).await?;
    let target = upload_target(state, &upload);
    let (part_size, count) = row_layout(state, &upload);
    let parts = state
        .store
        .list_parts(&target, store_upload_id(&upload)?)
        .await?
        .ok_or_else(|| {
            ApiError::InvalidState(
                "the store no longer holds this multipart upload; complete it to commit what was assembled".into(),
            )
        })?;
    Ok((part_size, count, parts))
}

/// A part the client says it uploaded, with the ETag the store gave it.
#[derive(Clone, Debug)]
pub struct ClientPart {
    pub number: u32,
    pub etag: String,
}

fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

/// Every part 1..=count present with its exact length; the parts to
/// complete with, in order.
fn check_parts(
    upload: &Upload,
    part_size: u64,
    count: u32,
    held: &[Part],
) -> Result<Vec<Part>, ApiError> {
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    let mut chosen = Vec::with_capacity(count as usize);
    for n in 1..=count {
        let want = part_len(upload.size, part_size, count, n);
        match held.iter().find(|p| p.number == n) {
            None => missing.push(n),
            Some(p) if p.size != want => {
                wrong.push(format!("part {n} has {} bytes, not {want}", p.size))
            }
            Some(p) => chosen.push(p.clone()),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(20).map(u32::to_string).collect();
        return Err(ApiError::PartsIncomplete(format!(
            "{} of {count} parts are missing: {}{}",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        )));
    }
    if !wrong.is_empty() {
        return Err(ApiError::PartsIncomplete(wrong.join("; ")));
    }
    Ok(chosen)
}

/// Checks the client's part list (`complete` with `{parts}`) against what
/// the store holds: the same parts, with the same ETags.
pub async fn check_client_parts(
    state: &AppState,
    upload: &Upload,
    parts: &[ClientPart],
) -> Result<(), ApiError> {
    if upload.mode != Mode::Multipart {
        return Err(ApiError::InvalidRequest(
            "only multipart uploads are completed with parts".into(),
        ));
    }
    if upload.status != UploadStatus::Pending {
        return Ok(());
    }
    let target = upload_target(state, upload);
    let Some(held) = state
        .store
        .list_parts(&target, store_upload_id(upload)?)
        .await?
    else {
        // Already assembled by an earlier complete: the commit decides.
        return Ok(());
    };
    let (part_size, count) = row_layout(state, upload);
    let chosen = check_parts(upload, part_size, count, &held)?;
    let mut numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.len() != parts.len() || numbers != (1..=count).collect::<Vec<_>>() {
        return Err(ApiError::PartsIncomplete(format!(
            "the part list must name each of parts 1 to {count} once"
        )));
    }
    for p in parts {
        let held = &chosen[(p.number - 1) as usize];
        if !same_etag(&held.etag, &p.etag) {
            return Err(ApiError::PartsIncomplete(format!(
                "part {} has another ETag in the store",
                p.number
            )));
        }
    }
    Ok(())
}

/// The multipart step of `commit_upload`: assembles the parts the store
/// holds once all are there (a part missing or of the wrong size is a 409
/// `parts_incomplete`, and the row stays pending so the client can send
/// it).
pub async fn assemble(state: &AppState, upload: &Upload) -> Result<(), ApiError> {
    let target = upload_target(state, upload);
    let upload_id = store_upload_id(upload)?;
    if let Some(held) = state.store.list_parts(&target, upload_id).await? {
        let (part_size, count) = row_layout(state, upload);
        let chosen = check_parts(upload, part_size, count, &held)?;
        // `None`: a racing commit completed it a moment ago.
        state
            .store
            .complete_multipart(&target, upload_id, &chosen)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_uses_the_configured_part_size() {
        assert_eq!(layout(8 * MIB, 12 * MIB), (8 * MIB, 2));
        assert_eq!(layout(8 * MIB, 16 * MIB), (8 * MIB, 2));
        assert_eq!(layout(8 * MIB, 16 * MIB + 1), (8 * MIB, 3));
        assert_eq!(layout(8 * MIB, 0), (8 * MIB, 1));
        assert_eq!(layout(8 * MIB, 1), (8 * MIB, 1));
        // Never below S3's minimum.
        assert_eq!(layout(MIB, 12 * MIB), (5 * MIB, 3));
    }

    #[test]
    fn layout_grows_parts_for_huge_files() {
        let size = 5 * 1024 * 1024 * MIB; // 5 TiB
        let (part, count) = layout(8 * MIB, size);
        assert!(u64::from(count) <= MAX_PARTS);
        assert_eq!(part % MIB, 0);
        assert!(part * u64::from(count) >= size);
        assert!(part * u64::from(count - 1) < size);
    }

    #[test]
    fn the_last_part_holds_the_rest() {
        let size = 12 * MIB + 5;
        let (part, count) = layout(8 * MIB, size);
        assert_eq!(part_len(size, part, count, 1), 8 * MIB);
        assert_eq!(part_len(size, part, count, 2), 4 * MIB + 5);
        let total: u64 = (1..=count).map(|n| part_len(size, part, count, n)).sum();
        assert_eq!(total, size);
    }
}
