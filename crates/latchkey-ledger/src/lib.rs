//! The upload ledger (DESIGN §4): one row per upload, moved through the
//! state machine only by compare-and-set, with webhook events written to an
//! outbox in the same transaction as the transition they announce.
//!
//! Callers see the narrow [`UploadRepo`] trait and nothing of SQL, so the
//! SQLite implementation here and a PostgreSQL one can stand behind it
//! interchangeably; [`connect`] picks one from the database URL.

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_domain::{ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId};
use time::OffsetDateTime;

mod error;
mod outbox;
mod rows;
mod sqlite;

pub use error::{LedgerError, QuotaKind};
pub use outbox::{event_payload, event_type_for};
pub use sqlite::SqliteLedger;

/// The statuses whose rows count against a quota. Pending rows are
/// reservations: the grant is out, the bytes may arrive any moment.
pub const QUOTA_STATUSES: [UploadStatus; 3] = [
    UploadStatus::Pending,
    UploadStatus::Processing,
    UploadStatus::Committed,
];

/// Per-user, per-profile limits checked on insert. `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub max_bytes: Option<u64>,
    pub max_count: Option<u64>,
}

/// Which of a user's uploads to list. Results are newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListFilter {
    pub status: Option<UploadStatus>,
    pub profile: Option<ProfileName>,
    /// A cursor: only uploads older than this id. Ids are time-ordered, so
    /// passing the last id of one page yields the next.
    pub after: Option<UploadId>,
    pub limit: u32,
}

/// Fields to set together with a transition; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub etag: Option<String>,
    pub reason: Option<String>,
    /// Defaults to the transition's `now` when moving into `committed`.
    pub committed_at: Option<OffsetDateTime>,
    pub attached_ref: Option<String>,
}

/// The outcome of [`UploadRepo::insert`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The row as stored (times truncated to milliseconds).
    New(Upload),
    /// The same user already used this idempotency key; this is that row,
    /// unchanged. Whether the two requests agree is the caller's to judge.
    Existing(Upload),
}

impl Inserted {
    pub fn upload(&self) -> &Upload {
        match self {
            Inserted::New(u) | Inserted::Existing(u) => u,
        }
    }

    pub fn into_upload(self) -> Upload {
        match self {
            Inserted::New(u) | Inserted::Existing(u) => u,
        }
    }

    pub fn is_new(&self) -> bool {
        matches!(self, Inserted::New(_))
    }
}

/// A webhook event waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Increasing in insertion order; also the event's delivery id.
    pub id: i64,
    pub upload_id: UploadId,
    /// `upload.committed`, `upload.rejected`, `upload.expired`,
    /// `upload.deleted` or `upload.aborted` (see [`event_type_for`]).
    pub event_type: String,
    /// The upload as it was right after the transition ([`event_payload`]).
    pub payload: serde_json::Value,
    pub created_at: OffsetDateTime,
}

/// The ledger as the rest of the broker sees it.
#[async_trait]
pub trait UploadRepo: Send + Sync + 'static {
    /// Inserts a new row, which must be `pending` (every later state is
    /// reached by [`transition`](Self::transition), which is what writes
    /// the outbox event).
    ///
    /// With an idempotency key, a second insert for the same user and key
    /// returns [`Inserted::Existing`] with the first row — even if the quota
    /// has filled up since. With a quota, the user's usage in the upload's
    /// profile (rows in [`QUOTA_STATUSES`]) plus this upload must fit; the
    /// check and the insert are one transaction, so concurrent inserts
    /// cannot overshoot it.
    async fn insert(&self, upload: &Upload, quota: Option<&Quota>)
    -> Result<Inserted, LedgerError>;

    async fn get(&self, id: UploadId) -> Result<Option<Upload>, LedgerError>;

    /// A user's uploads, newest first, never anyone else's.
    async fn list(&self, user: &UserId, filter: &ListFilter) -> Result<Vec<Upload>, LedgerError>;

    /// Compare-and-set: moves the row from `from` to `to` only if its status
    /// is still `from`, applies `changes`, sets `updated_at = now`, and in
    /// the same transaction appends one outbox event when `to` is one of the
    /// states in [`event_type_for`].
    ///
    /// Returns the new row if this call made the transition, `None` if the
    /// row was not in `from` (another caller won, or the row does not
    /// exist). However many callers race, exactly one gets `Some`, so commit
    /// is idempotent (DESIGN §4, I4). An edge the state machine does not
    /// have (`from.can_become(to)` is false) is refused with
    /// [`LedgerError::Conflict`] and changes nothing.
    async fn transition(
        &self,
        id: UploadId,
        from: UploadStatus,
        to: UploadStatus,
        changes: &Changes,
        now: OffsetDateTime,
    ) -> Result<Option<Upload>, LedgerError>;

    /// Rows in `status` whose `expires_at` is before `before`, oldest expiry
    /// first, at most `limit` — the reconciler's work list.
    async fn expired(
        &self,
        status: UploadStatus,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Upload>, LedgerError>;

    async fn find_by_key(&self, key: &ObjectKey) -> Result<Option<Upload>, LedgerError>;

    /// `(bytes, count)` of the user's rows in [`QUOTA_STATUSES`] in `profile`.
    async fn usage(&self, user: &UserId, profile: &ProfileName) -> Result<(u64, u64), LedgerError>;

    /// Undelivered outbox events, oldest first.
    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError>;

    /// Succeeds when the database answers a trivial query (for `/readyz`).
    async fn ping(&self) -> Result<(), LedgerError>;
}

/// Opens the ledger a database URL names: `sqlite://path` or
/// `sqlite::memory:`. PostgreSQL is planned but not yet implemented.
pub async fn connect(url: &str) -> Result<Arc<dyn UploadRepo>, LedgerError> {
    // The URL is never echoed back: it may hold a password.
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    match scheme {
        "sqlite" => Ok(Arc::new(SqliteLedger::open(url).await?)),
        "postgres" | "postgresql" => Err(LedgerError::config(
            "PostgreSQL is not supported yet; use a sqlite:// database URL",
        )),
        _ => Err(LedgerError::config(
            "unsupported database URL; use sqlite://path or sqlite::memory:",
        )),
    }
}
