//! Rows as the database stores them and their mapping to domain types.
//!
//! Both backends use the same column types (TEXT, BIGINT, times as unix
//! milliseconds), so this mapping is shared: `FromRow` is derived generically
//! and works for any sqlx database. Everything read back is parsed again into
//! domain types; a row that does not parse is reported as
//! [`LedgerError::Corrupt`] rather than trusted.

use std::collections::BTreeMap;

use latchkey_domain::{
    ContentType, MediaInfo, MediaVariant, Mode, ObjectKey, ProfileName, Sha256Digest, Upload,
    UploadId, UploadStatus, UserId,
};
use time::OffsetDateTime;

use crate::{LedgerError, OutboxEvent};

/// The columns of `uploads`, in [`UploadRow`] order, for SELECT and INSERT.
pub(crate) const UPLOAD_COLUMNS: &str = "id, user_id, profile, mode, key, filename, \
     content_type, size, sha256, status, etag, reason, metadata, idempotency_key, \
     attached_ref, created_at, expires_at, updated_at, committed_at, store_upload_id, \
     width, height, thumbhash, variants";

/// The columns of `outbox` that [`OutboxRow`] reads.
pub(crate) const OUTBOX_COLUMNS: &str = "id, upload_id, event_type, payload, created_at, \
     attempts, next_attempt_at, last_error, dead_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UploadRow {
    pub id: String,
    pub user_id: String,
    pub profile: String,
    pub mode: String,
    pub key: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: Option<String>,
    pub status: String,
    pub etag: Option<String>,
    pub reason: Option<String>,
    pub metadata: String,
    pub idempotency_key: Option<String>,
    pub attached_ref: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub updated_at: i64,
    pub committed_at: Option<i64>,
    pub store_upload_id: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub thumbhash: Option<String>,
    /// JSON: the variants' names, keys, types and sizes.
    pub variants: Option<String>,
}

/// A claimed processing job: the row and its attempt count.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ProcessingRow {
    #[sqlx(flatten)]
    pub upload: UploadRow,
    pub process_attempts: i64,
}

impl ProcessingRow {
    pub(crate) fn into_job(self) -> Result<crate::ProcessingJob, LedgerError> {
        let attempts = u32::try_from(self.process_attempts)
            .map_err(|_| corrupt("process_attempts", &self.process_attempts.to_string()))?;
        Ok(crate::ProcessingJob {
            upload: self.upload.into_upload()?,
            attempts,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OutboxRow {
    pub id: i64,
    pub upload_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub dead_at: Option<i64>,
}

/// The media columns a transition sets (all `None` without media).
#[derive(Default)]
pub(crate) struct MediaColumns {
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub thumbhash: Option<String>,
    pub variants: Option<String>,
}

impl MediaColumns {
    pub(crate) fn of(changes: &crate::Changes) -> Result<Self, LedgerError> {
        let Some(m) = &changes.media else {
            return Ok(Self::default());
        };
        Ok(Self {
            width: Some(i64::from(m.width)),
            height: Some(i64::from(m.height)),
            thumbhash: Some(m.thumbhash.clone()),
            variants: Some(media_variants_json(&m.variants)?),
        })
    }
}

/// The `variants` column: JSON.
pub(crate) fn media_variants_json(v: &[MediaVariant]) -> Result<String, LedgerError> {
    serde_json::to_string(v)
        .map_err(|e| LedgerError::Conflict(format!("variants are not serializable: {e}")))
}

/// Unix milliseconds, the ledger's time column format. Sub-millisecond
/// precision is dropped (floored), so a value read back may be up to 1 ms
/// earlier than the one written.
pub(crate) fn to_millis(t: OffsetDateTime) -> Result<i64, LedgerError> {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000))
        .map_err(|_| LedgerError::Conflict(format!("timestamp {t} is out of range")))
}

pub(crate) fn from_millis(ms: i64, column: &str) -> Result<OffsetDateTime, LedgerError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| corrupt(column, &ms.to_string()))
}

/// `now + d` in unix milliseconds, saturating instead of overflowing: a
/// lease of a thousand years is a configuration mistake, not a crash.
pub(crate) fn millis_after(now_ms: i64, d: std::time::Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A u64 for a BIGINT column; sizes beyond i64::MAX cannot be stored.
pub(crate) fn to_bigint(v: u64, what: &str) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::Conflict(format!("{what} {v} is too large to store")))
}

/// A `usage` counter row as `(bytes, count)`; no row is `(0, 0)`. Negative
/// values mean the counter went wrong, which is reported, not clamped.
pub(crate) fn usage_from(row: Option<(i64, i64)>) -> Result<(u64, u64), LedgerError> {
    let (bytes, count) = row.unwrap_or((0, 0));
    let bad = || LedgerError::Corrupt(format!("negative usage {bytes} bytes / {count} uploads"));
    Ok((
        u64::try_from(bytes).map_err(|_| bad())?,
        u64::try_from(count).map_err(|_| bad())?,
    ))
}

fn corrupt(column: &str, value: &str) -> LedgerError {
    // Values are cut short: a corrupt row can hold anything, including a lot.
    let shown: String = value.chars().take(80).collect();
    LedgerError::Corrupt(format!("uploads.{column} = {shown:?}"))
}

impl UploadRow {
    pub(crate) fn from_upload(u: &Upload) -> Result<Self, LedgerError> {
        let metadata = serde_json::to_string(&u.metadata)
            .map_err(|e| LedgerError::Conflict(format!("metadata is not serializable: {e}")))?;
        Ok(UploadRow {
            id: u.id.to_string(),
            user_id: u.user_id.as_str().to_owned(),
            profile: u.profile.as_str().to_owned(),
            mode: u.mode.as_str().to_owned(),
            key: u.key.as_str().to_owned(),
            filename: u.filename.clone(),
            content_type: u.content_type.as_str().to_owned(),
            size: to_bigint(u.size, "size")?,
            sha256: u.sha256.map(|d| d.to_hex()),
            status: u.status.as_str().to_owned(),
            etag: u.etag.clone(),
            reason: u.reason.clone(),
            metadata,
            idempotency_key: u.idempotency_key.clone(),
            attached_ref: u.attached_ref.clone(),
            created_at: to_millis(u.created_at)?,
            expires_at: to_millis(u.expires_at)?,
            updated_at: to_millis(u.updated_at)?,
            committed_at: u.committed_at.map(to_millis).transpose()?,
            store_upload_id: u.store_upload_id.clone(),
            width: u.media.as_ref().map(|m| i64::from(m.width)),
            height: u.media.as_ref().map(|m| i64::from(m.height)),
            thumbhash: u.media.as_ref().map(|m| m.thumbhash.clone()),
            variants: u
                .media
                .as_ref()
                .map(|m| media_variants_json(&m.variants))
                .transpose()?,
        })
    }

    pub(crate) fn into_upload(self) -> Result<Upload, LedgerError> {
        let metadata: BTreeMap<String, String> = serde_json::from_str(&self.metadata)
            .map_err(|_| corrupt("metadata", &self.metadata))?;
        Ok(Upload {
            id: UploadId::parse(&self.id).map_err(|_| corrupt("id", &self.id))?,
            user_id: UserId::parse(&self.user_id).map_err(|_| corrupt("user_id", &self.user_id))?,
            profile: ProfileName::parse(&self.profile)
                .ok_or_else(|| corrupt("profile", &self.profile))?,
            mode: self
                .mode
                .parse::<Mode>()
                .map_err(|_| corrupt("mode", &self.mode))?,
            key: ObjectKey::from_trusted(self.key),
            filename: self.filename,
            content_type: ContentType::parse(&self.content_type)
                .map_err(|_| corrupt("content_type", &self.content_type))?,
            size: u64::try_from(self.size).map_err(|_| corrupt("size", &self.size.to_string()))?,
            sha256: self
                .sha256
                .as_deref()
                .map(|h| Sha256Digest::parse(h).map_err(|_| corrupt("sha256", h)))
                .transpose()?,
            status: self
                .status
                .parse::<UploadStatus>()
                .map_err(|_| corrupt("status", &self.status))?,
            etag: self.etag,
            reason: self.reason,
            metadata,
            idempotency_key: self.idempotency_key,
            attached_ref: self.attached_ref,
            created_at: from_millis(self.created_at, "created_at")?,
            expires_at: from_millis(self.expires_at, "expires_at")?,
            updated_at: from_millis(self.updated_at, "updated_at")?,
            committed_at: self
                .committed_at
                .map(|ms| from_millis(ms, "committed_at"))
                .transpose()?,
            store_upload_id: self.store_upload_id,
            media: match (self.width, self.height, self.thumbhash, self.variants) {
                (Some(w), Some(h), Some(thumbhash), Some(variants)) => Some(MediaInfo {
                    width: u32::try_from(w).map_err(|_| corrupt("width", &w.to_string()))?,
                    height: u32::try_from(h).map_err(|_| corrupt("height", &h.to_string()))?,
                    thumbhash,
                    variants: serde_json::from_str(&variants)
                        .map_err(|_| corrupt("variants", &variants))?,
                }),
                _ => None,
            },
        })
    }
}

impl OutboxRow {
    pub(crate) fn into_event(self) -> Result<OutboxEvent, LedgerError> {
        let bad = |column: &str, value: &str| {
            let shown: String = value.chars().take(80).collect();
            LedgerError::Corrupt(format!("outbox.{column} = {shown:?}"))
        };
        let time = |column: &str, ms: i64| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .map_err(|_| bad(column, &ms.to_string()))
        };
        Ok(OutboxEvent {
            id: self.id,
            upload_id: UploadId::parse(&self.upload_id)
                .map_err(|_| bad("upload_id", &self.upload_id))?,
            event_type: self.event_type,
            payload: serde_json::from_str(&self.payload)
                .map_err(|_| bad("payload", &self.payload))?,
            created_at: time("created_at", self.created_at)?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| bad("attempts", &self.attempts.to_string()))?,
            next_attempt_at: time("next_attempt_at", self.next_attempt_at)?,
            last_error: self.last_error,
            dead_at: self.dead_at.map(|ms| time("dead_at", ms)).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_floor_and_round_trip() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        let ms = to_millis(t).unwrap();
        assert_eq!(ms, 1_700_000_000_123);
        let back = from_millis(ms, "t").unwrap();
        assert_eq!(back.unix_timestamp_nanos(), 1_700_000_000_123_000_000);
        // Before 1970 flooring still goes down, not toward zero.
        let early = OffsetDateTime::from_unix_timestamp_nanos(-1).unwrap();
        assert_eq!(to_millis(early).unwrap(), -1);
    }

    #[test]
    fn corrupt_rows_are_reported_not_trusted() {
        let row = UploadRow {
            id: "not-an-id".to_owned(),
            user_id: "alice".to_owned(),
            profile: "photo".to_owned(),
            mode: "put".to_owned(),
            key: "k".to_owned(),
            filename: "f".to_owned(),
            content_type: "image/jpeg".to_owned(),
            size: 1,
            sha256: None,
            status: "pending".to_owned(),
            etag: None,
            reason: None,
            metadata: "{}".to_owned(),
            idempotency_key: None,
            attached_ref: None,
            created_at: 0,
            expires_at: 0,
            updated_at: 0,
            committed_at: None,
            store_upload_id: None,
            width: None,
            height: None,
            thumbhash: None,
            variants: None,
        };
        let err = row.into_upload().unwrap_err();
        assert!(
            matches!(err, LedgerError::Corrupt(ref m) if m.contains("uploads.id")),
            "{err}"
        );
    }
}
