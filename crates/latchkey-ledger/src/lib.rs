//! The upload ledger (DESIGN §4): one row per upload, moved through the
//! state machine only by compare-and-set, with webhook events written to an
//! outbox in the same transaction as the transition they announce.
//!
//! Callers see the narrow [`UploadRepo`] trait and nothing of SQL, so the
//! SQLite and PostgreSQL implementations stand behind it interchangeably;
//! [`connect`] picks one from the database URL. The same conformance suite
//! (`tests/ledger/`) runs against both.

use std::time::Duration;

use async_trait::async_trait;
use latchkey_domain::{MediaInfo, ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId};
use time::OffsetDateTime;

mod attach;
mod error;
mod open;
mod outbox;
mod postgres;
mod rows;
mod sqlite;

pub use error::{LedgerError, QuotaKind};
pub use open::{OpenOptions, connect, connect_with, migrate};
pub use outbox::{ATTACHED_EVENT, attached_payload, event_payload, event_type_for};
pub use postgres::PgLedger;
pub use sqlite::SqliteLedger;

/// The statuses whose rows count against a quota. Pending rows are
/// reservations: the grant is out, the bytes may arrive any moment.
///
/// The databases keep the usage as a per-user, per-profile counter that
/// triggers on `uploads` maintain, so each backend's migration holds its own
/// copy of this list (`quota_statuses` in migrations/sqlite/0006,
/// `counts_toward_quota` in migrations/postgres/0005). Change them together:
/// the conformance suite (`tests/ledger/usage.rs`) fails if they differ.
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

impl Quota {
    pub(crate) fn is_unlimited(&self) -> bool {
        self.max_bytes.is_none() && self.max_count.is_none()
    }

    /// Fails with [`LedgerError::QuotaExceeded`] unless one more upload of
    /// `size` bytes fits on top of `(bytes, count)` already used.
    pub(crate) fn admit(&self, (bytes, count): (u64, u64), size: u64) -> Result<(), LedgerError> {
        if let Some(limit) = self.max_count
            && count.saturating_add(1) > limit
        {
            return Err(LedgerError::QuotaExceeded {
                what: QuotaKind::Count,
                limit,
                used: count,
            });
        }
        if let Some(limit) = self.max_bytes
            && bytes.saturating_add(size) > limit
        {
            return Err(LedgerError::QuotaExceeded {
                what: QuotaKind::Bytes,
                limit,
                used: bytes,
            });
        }
        Ok(())
    }
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
    /// What the photo pipeline recorded (set when leaving `processing`).
    pub media: Option<MediaInfo>,
}

/// A row in `processing` claimed by a media worker
/// ([`UploadRepo::claim_processing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessingJob {
    pub upload: Upload,
    /// Claims of this row so far, this one included.
    pub attempts: u32,
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
    /// `upload.deleted` or `upload.aborted` (see [`event_type_for`]), or
    /// [`ATTACHED_EVENT`].
    pub event_type: String,
    /// The upload as it was right after the transition ([`event_payload`],
    /// [`attached_payload`]).
    pub payload: serde_json::Value,
    pub created_at: OffsetDateTime,
    /// Failed deliveries so far ([`UploadRepo::outbox_failed`]).
    pub attempts: u32,
    /// Not claimed before this time; pushed back by each failure.
    pub next_attempt_at: OffsetDateTime,
    /// What the last failed attempt reported, clipped to a kilobyte.
    pub last_error: Option<String>,
    /// When delivery was given up, for a dead letter.
    pub dead_at: Option<OffsetDateTime>,
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

    /// `(bytes, count)` of the user's rows in [`QUOTA_STATUSES`] in `profile`,
    /// read from the counter the database keeps (one row, whatever the
    /// number of uploads).
    async fn usage(&self, user: &UserId, profile: &ProfileName) -> Result<(u64, u64), LedgerError>;

    /// Records that the app attached a committed upload to its own record
    /// `attached_ref` (DESIGN §4), sets `updated_at = now`, and in the same
    /// transaction appends one [`ATTACHED_EVENT`].
    ///
    /// Idempotent: attaching again to the same ref returns the row unchanged
    /// and writes no second event. Returns `None` when the row does not
    /// exist or is not `committed` (pending, deleted, ...). A committed row
    /// already attached to a *different* ref is [`LedgerError::Conflict`].
    async fn set_attached(
        &self,
        id: UploadId,
        attached_ref: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Upload>, LedgerError>;

    /// Committed, never attached rows of `profile` committed before
    /// `committed_before`, oldest commit first, at most `limit` — the
    /// unattached sweep's work list.
    async fn committed_unattached(
        &self,
        profile: &ProfileName,
        committed_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Upload>, LedgerError>;

    /// Outbox events waiting for delivery (neither delivered nor dead),
    /// oldest first, whatever their lease or next attempt time. For
    /// inspection and tests; workers use [`outbox_claim`](Self::outbox_claim).
    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError>;

    /// Claims up to `limit` events for delivery, oldest first: undelivered,
    /// not dead, due (`next_attempt_at <= now`) and not leased (no lease, or
    /// one that ended at or before `now`). Each is leased until `now +
    /// lease`; while the lease runs no other call claims it, so workers on
    /// several instances never send the same event at the same time. A
    /// worker that dies simply lets the lease run out and the event is
    /// claimed again: delivery is at least once.
    ///
    /// Report each claimed event with [`outbox_delivered`](Self::outbox_delivered)
    /// or [`outbox_failed`](Self::outbox_failed) before the lease ends;
    /// after that another worker may be sending it too.
    async fn outbox_claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, LedgerError>;

    /// Marks an event delivered and frees its lease. Reporting the same
    /// event twice is harmless (the first time is kept); an unknown id is
    /// [`LedgerError::NotFound`].
    async fn outbox_delivered(&self, id: i64, now: OffsetDateTime) -> Result<(), LedgerError>;

    /// Records a failed attempt: counts it, keeps `error` (clipped) as
    /// `last_error`, frees the lease, and either reschedules the event for
    /// `next_attempt_at` or, with `None`, gives up on it (a dead letter,
    /// `dead_at = now`). A delivered event is left alone, so a late failure
    /// report cannot undo a delivery; an unknown id is
    /// [`LedgerError::NotFound`].
    async fn outbox_failed(
        &self,
        id: i64,
        next_attempt_at: Option<OffsetDateTime>,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError>;

    /// Dead letters, oldest first.
    async fn outbox_dead(&self, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError>;

    /// Takes or renews the lease `name` (say `"reconciler"`) for `holder`
    /// (one broker instance) until `now + ttl`, so that only one instance
    /// runs a background pass at a time. True when `holder` now holds it:
    /// the lease was free, had expired (`expires_at <= now`), or was already
    /// `holder`'s (then it is renewed). False when someone else holds it.
    /// However many holders race, at most one gets true.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, LedgerError>;

    /// Gives the lease up if `holder` holds it, so another instance need
    /// not wait for it to expire. True if it was `holder`'s.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, LedgerError>;

    /// Claims up to `limit` rows in `processing` (photo-pipeline jobs) whose
    /// processing lease is free (none, or ended at or before `now`), oldest
    /// update first, leasing each until `now + lease` and counting the
    /// attempt. While the lease runs no other call claims the row; a worker
    /// that dies lets it run out and the job is claimed again. Any
    /// transition out of `processing` ends the lease.
    async fn claim_processing(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ProcessingJob>, LedgerError>;

    /// Succeeds when the database answers a trivial query (for `/readyz`).
    async fn ping(&self) -> Result<(), LedgerError>;

    /// Closes the connection pool, waiting for connections in use to be
    /// returned. Later calls fail.
    async fn close(&self);
}
