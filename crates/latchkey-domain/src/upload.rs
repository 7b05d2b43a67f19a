//! The upload row and its state machine (DESIGN §4).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::{ContentType, Mode, ObjectKey, ProfileName, Sha256Digest, UploadId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    Pending,
    Processing,
    Committed,
    Rejected,
    Expired,
    Aborted,
    Deleted,
}

impl UploadStatus {
    pub const ALL: [UploadStatus; 7] = [
        UploadStatus::Pending,
        UploadStatus::Processing,
        UploadStatus::Committed,
        UploadStatus::Rejected,
        UploadStatus::Expired,
        UploadStatus::Aborted,
        UploadStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Pending => "pending",
            UploadStatus::Processing => "processing",
            UploadStatus::Committed => "committed",
            UploadStatus::Rejected => "rejected",
            UploadStatus::Expired => "expired",
            UploadStatus::Aborted => "aborted",
            UploadStatus::Deleted => "deleted",
        }
    }

    /// The edges of the state diagram in DESIGN §4. Every ledger transition
    /// is a compare-and-set along one of these.
    pub fn can_become(self, next: UploadStatus) -> bool {
        use UploadStatus::*;
        matches!(
            (self, next),
            (
                Pending,
                Committed | Processing | Rejected | Expired | Aborted
            ) | (Processing, Committed | Rejected)
                | (Committed, Deleted)
        )
    }

    /// No further transition is possible.
    pub fn is_final(self) -> bool {
        UploadStatus::ALL.iter().all(|n| !self.can_become(*n))
    }
}

impl fmt::Display for UploadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UploadStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UploadStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// One ledger row: everything known about one upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub user_id: UserId,
    pub profile: ProfileName,
    pub mode: Mode,
    pub key: ObjectKey,
    /// The client's filename, sanitized; metadata only.
    pub filename: String,
    pub content_type: ContentType,
    /// The declared size in bytes; the grant signs exactly this.
    pub size: u64,
    pub sha256: Option<Sha256Digest>,
    pub status: UploadStatus,
    /// The store's ETag, recorded at commit.
    pub etag: Option<String>,
    /// Why the upload was rejected (a problem code), when it was.
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    pub attached_ref: Option<String>,
    /// Also the grant's signing time, so a grant can be re-issued
    /// byte-for-byte for a repeated `Idempotency-Key`.
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub committed_at: Option<OffsetDateTime>,
    /// The store's own id for this upload's multipart upload (`multipart`
    /// and `tus` modes), created by the broker with the row.
    pub store_upload_id: Option<String>,
    /// What the photo pipeline recorded (profiles with `process = "image"`,
    /// once processed).
    pub media: Option<MediaInfo>,
}

/// A processed image (DESIGN §7): the clean original's size, a ThumbHash
/// placeholder, and the variants written beside it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaInfo {
    pub width: u32,
    pub height: u32,
    /// ThumbHash, base64.
    pub thumbhash: String,
    pub variants: Vec<MediaVariant>,
}

/// One variant of a processed image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaVariant {
    pub name: String,
    pub key: ObjectKey,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use UploadStatus::*;

    #[test]
    fn state_machine_edges() {
        assert!(Pending.can_become(Committed));
        assert!(Pending.can_become(Aborted));
        assert!(Processing.can_become(Committed));
        assert!(Committed.can_become(Deleted));
        assert!(!Committed.can_become(Pending));
        assert!(!Deleted.can_become(Committed));
        assert!(!Expired.can_become(Committed));
        for s in [Rejected, Expired, Aborted, Deleted] {
            assert!(s.is_final(), "{s}");
        }
        assert!(!Pending.is_final());
    }

    #[test]
    fn status_names_round_trip() {
        for s in UploadStatus::ALL {
            assert_eq!(s.as_str().parse::<UploadStatus>().unwrap(), s);
        }
    }
}
