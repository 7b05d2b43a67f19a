//! Commit, delete and download: the transitions a client drives. Commit is a
//! HEAD plus one compare-and-set in the ledger, so however many callers race,
//! exactly one moves the row and all of them see the same final row.

use latchkey_domain::{Mode, Upload, UploadStatus, UserId};
use latchkey_ledger::Changes;
use latchkey_store::ObjectMeta;
use time::OffsetDateTime;

use super::modes::multipart::{self, ClientPart};
use super::{get_owned, modes, upload_target};
use crate::error::ApiError;
use crate::state::AppState;

/// Why an object that exists does not match its row, as a problem.
fn verify(upload: &Upload, meta: &ObjectMeta) -> Result<(), ApiError> {
    if meta.size != upload.size {
        return Err(ApiError::SizeMismatch(format!(
            "the store holds {} bytes; the grant was for {}",
            meta.size, upload.size
        )));
    }
    let stored_type = meta.content_type.as_deref().unwrap_or("");
    if !stored_type.eq_ignore_ascii_case(upload.content_type.as_str()) {
        return Err(ApiError::TypeMismatch(format!(
            "the store holds {stored_type:?}; the grant was for {}",
            upload.content_type
        )));
    }
    if let (Some(want), Some(got)) = (upload.sha256, meta.sha256)
        && want != got
    {
        return Err(ApiError::ChecksumMismatch(
            "the stored bytes have another sha256".into(),
        ));
    }
    Ok(())
}

fn problem_code(e: &ApiError) -> String {
    e.parts().1.to_owned()
}

/// Re-reads a row after losing a compare-and-set race.
async fn reread(state: &AppState, upload: &Upload) -> Result<Upload, ApiError> {
    state.ledger.get(upload.id).await?.ok_or(ApiError::NotFound)
}

/// The answer `complete` gives for a row that is no longer pending.
fn settled(upload: Upload) -> Result<Upload, ApiError> {
    match upload.status {
        UploadStatus::Committed | UploadStatus::Processing => Ok(upload),
        UploadStatus::Expired => Err(ApiError::Expired(
            "the grant expired before the object arrived".into(),
        )),
        UploadStatus::Rejected => Err(ApiError::rejected(upload.reason.as_deref())),
        other => Err(ApiError::InvalidState(format!("the upload is {other}"))),
    }
}

/// `parts`: a multipart client's list of `{number, etag}`, checked against
/// what the store holds before anything is assembled.
pub async fn complete(
    state: &AppState,
    user: &UserId,
    id: &str,
    parts: Option<&[ClientPart]>,
) -> Result<Upload, ApiError> {
    let upload = get_owned(state, user, id).await?;
    if let Some(parts) = parts {
        multipart::check_client_parts(state, &upload, parts).await?;
    }
    commit_upload(state, upload).await
}

/// Verifies the object behind a pending row and commits it: the one commit
/// path that the client's `complete`, the reconciler and store events share.
pub async fn commit_upload(state: &AppState, upload: Upload) -> Result<Upload, ApiError> {
    if upload.status != UploadStatus::Pending {
        return settled(upload);
    }
    // A multipart upload is assembled first (its parts all checked); the
    // object it makes is then verified like any other.
    match upload.mode {
        Mode::Multipart => multipart::assemble(state, &upload).await?,
        Mode::Tus => modes::tus::assemble(state, &upload).await?,
        _ => {}
    }
    let target = upload_target(state, &upload);
    let Some(mut meta) = state.store.head(&target).await? else {
        // A concurrent commit may have promoted and removed the staging
        // object a moment ago: the row then says so.
        let row = reread(state, &upload).await?;
        return match row.status {
            UploadStatus::Pending => Err(ApiError::ObjectMissing),
            _ => settled(row),
        };
    };
    // S3 keeps no whole-object SHA-256 for an assembled multipart upload
    // (its checksums of those are composite), so a declared one is
    // measured by reading the object back, unless the store reported it
    // (the embedded store keeps one for every object).
    if meta.sha256.is_none() && upload.mode == Mode::Multipart && upload.sha256.is_some() {
        meta.sha256 = state.store.sha256(&target).await?;
    }
    let now = OffsetDateTime::now_utc();
    if let Err(problem) = verify(&upload, &meta) {
        // The bytes break the grant: the row is rejected and the object
        // removed, so nothing half-valid is ever served.
        let changes = Changes {
            reason: Some(problem_code(&problem)),
            ..Changes::default()
        };
        if state
            .ledger
            .transition(
                upload.id,
                UploadStatus::Pending,
                UploadStatus::Rejected,
                &changes,
                now,
            )
            .await?
            .is_some()
        {
            state.store.delete(&target).await?;
            return Err(problem);
        }
        return settled(reread(state, &upload).await?);
    }
    if super::processes_images(state, &upload) {
        // Verified bytes of an image profile wait in quarantine for the
        // photo pipeline, which alone makes the upload committed.
        let won = state
            .ledger
            .transition(
                upload.id,
                UploadStatus::Pending,
                UploadStatus::Processing,
                &Changes {
                    etag: meta.etag.clone(),
                    ..Changes::default()
                },
                now,
            )
            .await?;
        return match won {
            Some(row) => Ok(row),
            None => settled(reread(state, &upload).await?),
        };
    }
    let staged = target != upload.key;
    if staged && !state.store.copy(&target, &upload.key).await? {
        return settled(reread(state, &upload).await?);
    }
    let changes = Changes {
        etag: meta.etag.clone(),
        committed_at: Some(now),
        ..Changes::default()
    };
    let won = state
        .ledger
        .transition(
            upload.id,
            UploadStatus::Pending,
            UploadStatus::Committed,
            &changes,
            now,
        )
        .await?;
    match won {
        Some(row) => {
            if staged {
                // After the row says committed, so a racing commit that finds
                // the staging object gone re-reads a committed row.
                state.store.delete(&target).await?;
            }
            Ok(row)
        }
        None => settled(reread(state, &upload).await?),
    }
}

/// Aborts a pending upload or deletes a committed one. Repeating it on an
/// upload that is already gone answers with the row as it stands.
pub async fn delete(state: &AppState, user: &UserId, id: &str) -> Result<Upload, ApiError> {
    let upload = get_owned(state, user, id).await?;
    let next = match upload.status {
        UploadStatus::Pending => UploadStatus::Aborted,
        UploadStatus::Committed => UploadStatus::Deleted,
        UploadStatus::Processing => {
            return Err(ApiError::InvalidState(
                "the upload is being processed; try again shortly".into(),
            ));
        }
        _ => return Ok(upload),
    };
    let now = OffsetDateTime::now_utc();
    let row = state
        .ledger
        .transition(upload.id, upload.status, next, &Changes::default(), now)
        .await?;
    let row = match row {
        Some(row) => row,
        None => return Box::pin(delete(state, user, id)).await,
    };
    if upload.status == UploadStatus::Pending {
        // A multipart upload's parts go with it.
        modes::unprepare(state, &upload).await;
    }
    // The row changes first: if a delete below fails, the reconciler sees
    // an object whose row is final and removes it.
    state.store.delete(&upload.key).await?;
    let target = upload_target(state, &upload);
    if target != upload.key {
        state.store.delete(&target).await?;
    }
    for v in upload.media.iter().flat_map(|m| &m.variants) {
        state.store.delete(&v.key).await?;
    }
    Ok(row)
}

pub async fn download(
    state: &AppState,
    user: &UserId,
    id: &str,
    variant: Option<&str>,
) -> Result<(String, OffsetDateTime), ApiError> {
    let upload = get_owned(state, user, id).await?;
    let key = match variant.filter(|v| *v != "original") {
        None => &upload.key,
        Some(v) => upload
            .media
            .iter()
            .flat_map(|m| &m.variants)
            .find(|m| m.name == v)
            .map(|m| &m.key)
            .ok_or_else(|| ApiError::VariantNotFound(format!("upload has no variant {v:?}")))?,
    };
    if upload.status != UploadStatus::Committed {
        return Err(ApiError::InvalidState(format!(
            "only committed uploads can be downloaded; this one is {}",
            upload.status
        )));
    }
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    let ttl = state.limits.download_ttl.as_secs().max(1);
    let url = state.endpoint.object_url(key.as_str());
    let overrides = download_overrides(&upload, variant.is_some_and(|v| v != "original"));
    let query: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = state
        .signer
        .presign("GET", &url, &[], &query, ttl, now)
        .map_err(|e| ApiError::Internal(format!("presign: {e}")))?;
    Ok((url, now + std::time::Duration::from_secs(ttl)))
}

/// Image types a browser may render inline from the store's origin.
const INLINE_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/avif",
    "image/heic",
    "image/heif",
];

/// The `response-*` overrides of a download grant: anything but a raster
/// image is served with its recorded type as an attachment, so an uploaded
/// HTML or SVG file is never rendered from the store's origin. (Variants are
/// images the pipeline wrote.)
fn download_overrides(
    upload: &latchkey_domain::Upload,
    variant: bool,
) -> Vec<(&'static str, String)> {
    let ct = upload.content_type.as_str();
    if variant || INLINE_TYPES.contains(&ct) {
        return Vec::new();
    }
    let ascii: String = upload
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    vec![
        ("response-content-type", ct.to_owned()),
        (
            "response-content-disposition",
            format!("attachment; filename=\"{ascii}\""),
        ),
    ]
}
