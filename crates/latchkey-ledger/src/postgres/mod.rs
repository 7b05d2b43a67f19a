//! The ledger on PostgreSQL, for several broker instances sharing one
//! database.
//!
//! Transactions run at the default READ COMMITTED level. Where SQLite gets
//! atomicity for free from its single writer, this module asks for exactly
//! the locks each operation needs:
//! - a transition is one `UPDATE … WHERE id = $1 AND status = $2`: a second
//!   UPDATE of the same row waits for the first to commit and then re-checks
//!   its WHERE against the new row, so only one caller ever matches;
//! - an insert takes a per-user advisory lock (see [`lock_user`]) so the
//!   idempotency lookup and the quota read cannot be invalidated between the
//!   read and the INSERT;
//! - an attach locks its row with `SELECT … FOR UPDATE`.
//!
//! Outbox delivery and leases are in [`delivery`].

mod delivery;
mod processing;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_domain::{ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Executor, Postgres, QueryBuilder};
use time::OffsetDateTime;

use crate::attach::{self, Decision};
use crate::error::{is_unique_violation, url_error};
use crate::open::check_migrated;
use crate::rows::{OUTBOX_COLUMNS, OutboxRow, UPLOAD_COLUMNS, UploadRow, to_millis};
use crate::{
    ATTACHED_EVENT, Changes, Inserted, LedgerError, ListFilter, OpenOptions, OutboxEvent, Quota,
    UploadRepo, attached_payload, event_payload, event_type_for,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub struct PgLedger {
    pool: PgPool,
}

impl PgLedger {
    /// Connects to and migrates the database at `url`
    /// (`postgres://user:password@host:port/database?sslmode=...`).
    pub async fn open(url: &str) -> Result<Self, LedgerError> {
        Self::open_with(url, OpenOptions::default()).await
    }

    /// [`open`](Self::open) with explicit options.
    pub async fn open_with(url: &str, options: OpenOptions) -> Result<Self, LedgerError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(url_error)?
            .application_name("latchkey");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect)
            .await?;
        if options.migrate {
            MIGRATOR.run(&pool).await?;
        } else {
            check_migrated(&mut *pool.acquire().await?, &MIGRATOR).await?;
        }
        Ok(Self { pool })
    }
}

fn select_uploads(rest: &str) -> String {
    format!("SELECT {UPLOAD_COLUMNS} FROM uploads {rest}")
}

async fn upload_where<'e, E>(
    e: E,
    rest: &str,
    a: &str,
    b: Option<&str>,
) -> Result<Option<Upload>, LedgerError>
where
    E: Executor<'e, Database = Postgres>,
{
    let sql = select_uploads(rest);
    let mut q = sqlx::query_as::<_, UploadRow>(&sql).bind(a);
    if let Some(b) = b {
        q = q.bind(b);
    }
    q.fetch_optional(e)
        .await?
        .map(UploadRow::into_upload)
        .transpose()
}

/// The user's `(bytes, count)` in `profile`: one row of the `usage` counter,
/// which triggers on `uploads` keep equal to the sum over the rows in
/// [`QUOTA_STATUSES`](crate::QUOTA_STATUSES) (migrations/postgres/0005), in
/// the same transaction as each write. No row means nothing used.
async fn usage_of<'e, E>(e: E, user: &str, profile: &str) -> Result<(u64, u64), LedgerError>
where
    E: Executor<'e, Database = Postgres>,
{
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT bytes, count FROM usage WHERE user_id = $1 AND profile = $2")
            .bind(user)
            .bind(profile)
            .fetch_optional(e)
            .await?;
    crate::rows::usage_from(row)
}

/// Serialises inserts for one user until the transaction ends.
///
/// Without it, two concurrent inserts would each read the usage, each see
/// room for one more, and both insert: READ COMMITTED does not stop that,
/// and there may be no `usage` row to lock yet. An advisory lock on a hash
/// of the user id is a lock on "this user's uploads" without a users table,
/// costs no disk write, and is released by COMMIT or ROLLBACK, so a crashed
/// request cannot leave it held. It is per user, not per user and profile, because
/// idempotency keys are unique per user across profiles. A hash collision
/// between two users only makes them wait for each other, never wrong.
///
/// Only inserts add to a user's usage (no transition leads back into a
/// status that counts), so serialising inserts is enough for the quota:
/// a transition running beside the check can only lower the usage, and
/// until it commits the check sees the higher figure, refusing rather than
/// overshooting.
async fn lock_user(conn: &mut PgConnection, user: &str) -> Result<(), LedgerError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('latchkey.user:' || $1, 0))")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// See `check_quota` in the SQLite module; this one must run after
/// [`lock_user`] in the inserting transaction.
async fn check_quota(
    conn: &mut PgConnection,
    upload: &Upload,
    quota: &Quota,
) -> Result<(), LedgerError> {
    if quota.is_unlimited() {
        return Ok(());
    }
    let used = usage_of(&mut *conn, upload.user_id.as_str(), upload.profile.as_str()).await?;
    quota.admit(used, upload.size)
}

async fn insert_row(conn: &mut PgConnection, row: &UploadRow) -> Result<Upload, LedgerError> {
    let sql = format!(
        "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24) RETURNING {UPLOAD_COLUMNS}"
    );
    let result = sqlx::query_as::<_, UploadRow>(&sql)
        .bind(&row.id)
        .bind(&row.user_id)
        .bind(&row.profile)
        .bind(&row.mode)
        .bind(&row.key)
        .bind(&row.filename)
        .bind(&row.content_type)
        .bind(row.size)
        .bind(&row.sha256)
        .bind(&row.status)
        .bind(&row.etag)
        .bind(&row.reason)
        .bind(&row.metadata)
        .bind(&row.idempotency_key)
        .bind(&row.attached_ref)
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(row.updated_at)
        .bind(row.committed_at)
        .bind(&row.store_upload_id)
        .bind(row.width)
        .bind(row.height)
        .bind(&row.thumbhash)
        .bind(&row.variants)
        .fetch_one(conn)
        .await;
    match result {
        // RETURNING rather than echoing the input, so the caller holds
        // exactly what `get` will return (times truncated to milliseconds).
        Ok(stored) => stored.into_upload(),
        // The idempotency key was looked up first under the user's lock, so
        // a duplicate here is the id or the object key.
        Err(e) if is_unique_violation(&e) => Err(LedgerError::Conflict(format!(
            "an upload with id {} or key {:?} already exists",
            row.id, row.key
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn append_event(
    conn: &mut PgConnection,
    upload: &Upload,
    event_type: &str,
    payload: serde_json::Value,
    now: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO outbox (upload_id, event_type, payload, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(upload.id.to_string())
    .bind(event_type)
    .bind(payload.to_string())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl UploadRepo for PgLedger {
    async fn insert(
        &self,
        upload: &Upload,
        quota: Option<&Quota>,
    ) -> Result<Inserted, LedgerError> {
        if upload.status != UploadStatus::Pending {
            return Err(LedgerError::Conflict(format!(
                "a new upload must be pending, not {}",
                upload.status
            )));
        }
        let row = UploadRow::from_upload(upload)?;
        let mut tx = self.pool.begin().await?;
        lock_user(&mut tx, &row.user_id).await?;
        // Under READ COMMITTED each statement sees everything committed
        // before it started, and a transaction's commit is visible before
        // its advisory lock is released, so once the lock is ours the lookup
        // and the quota read see every insert that held it before, with the
        // `usage` counter its trigger updated in that same transaction.
        // The counter is read with a plain SELECT: the lock already
        // serialises inserts, and the INSERT's own trigger increments the
        // latest committed counter under its row lock.
        if let Some(key) = &upload.idempotency_key {
            let where_ = "WHERE user_id = $1 AND idempotency_key = $2";
            if let Some(first) = upload_where(&mut *tx, where_, &row.user_id, Some(key)).await? {
                tx.rollback().await?;
                return Ok(Inserted::Existing(first));
            }
        }
        if let Some(quota) = quota {
            check_quota(&mut tx, upload, quota).await?;
        }
        let stored = insert_row(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(Inserted::New(stored))
    }

    async fn get(&self, id: UploadId) -> Result<Option<Upload>, LedgerError> {
        upload_where(&self.pool, "WHERE id = $1", &id.to_string(), None).await
    }

    async fn list(&self, user: &UserId, filter: &ListFilter) -> Result<Vec<Upload>, LedgerError> {
        let mut qb = QueryBuilder::<Postgres>::new(select_uploads("WHERE user_id = "));
        qb.push_bind(user.as_str());
        if let Some(status) = filter.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(profile) = &filter.profile {
            qb.push(" AND profile = ").push_bind(profile.as_str());
        }
        if let Some(after) = filter.after {
            // `id` is COLLATE "C" (see the migration), so this compares
            // bytes, and so creation times, whatever the locale.
            qb.push(" AND id < ").push_bind(after.to_string());
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = qb
            .build_query_as::<UploadRow>()
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(UploadRow::into_upload).collect()
    }

    async fn transition(
        &self,
        id: UploadId,
        from: UploadStatus,
        to: UploadStatus,
        changes: &Changes,
        now: OffsetDateTime,
    ) -> Result<Option<Upload>, LedgerError> {
        if !from.can_become(to) {
            return Err(LedgerError::Conflict(format!(
                "an upload cannot go from {from} to {to}"
            )));
        }
        let now_ms = to_millis(now)?;
        let committed_at = match changes.committed_at {
            Some(t) => Some(to_millis(t)?),
            None if to == UploadStatus::Committed => Some(now_ms),
            None => None,
        };
        let sql = format!(
            "UPDATE uploads SET status = $1, \
                 etag = COALESCE($2, etag), \
                 reason = COALESCE($3, reason), \
                 committed_at = COALESCE($4, committed_at), \
                 attached_ref = COALESCE($5, attached_ref), \
                 updated_at = $6, \
                 width = COALESCE($9, width), \
                 height = COALESCE($10, height), \
                 thumbhash = COALESCE($11, thumbhash), \
                 variants = COALESCE($12, variants), \
                 process_lease_until = NULL \
             WHERE id = $7 AND status = $8 \
             RETURNING {UPLOAD_COLUMNS}"
        );
        let media = crate::rows::MediaColumns::of(changes)?;
        let mut tx = self.pool.begin().await?;
        // The compare-and-set (see the module header): a row comes back
        // only to the one caller whose UPDATE matched.
        let row = sqlx::query_as::<_, UploadRow>(&sql)
            .bind(to.as_str())
            .bind(&changes.etag)
            .bind(&changes.reason)
            .bind(committed_at)
            .bind(&changes.attached_ref)
            .bind(now_ms)
            .bind(id.to_string())
            .bind(from.as_str())
            .bind(media.width)
            .bind(media.height)
            .bind(&media.thumbhash)
            .bind(&media.variants)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let upload = row.into_upload()?;
        if let Some(event_type) = event_type_for(to) {
            let payload = event_payload(&upload);
            append_event(&mut tx, &upload, event_type, payload, now_ms).await?;
        }
        tx.commit().await?;
        Ok(Some(upload))
    }

    async fn expired(
        &self,
        status: UploadStatus,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Upload>, LedgerError> {
        let sql = select_uploads(
            "WHERE status = $1 AND expires_at < $2 ORDER BY expires_at, id LIMIT $3",
        );
        let rows = sqlx::query_as::<_, UploadRow>(&sql)
            .bind(status.as_str())
            .bind(to_millis(before)?)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(UploadRow::into_upload).collect()
    }

    async fn find_by_key(&self, key: &ObjectKey) -> Result<Option<Upload>, LedgerError> {
        upload_where(&self.pool, "WHERE key = $1", key.as_str(), None).await
    }

    async fn usage(&self, user: &UserId, profile: &ProfileName) -> Result<(u64, u64), LedgerError> {
        usage_of(&self.pool, user.as_str(), profile.as_str()).await
    }

    async fn set_attached(
        &self,
        id: UploadId,
        attached_ref: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Upload>, LedgerError> {
        attach::check_ref(attached_ref)?;
        let now_ms = to_millis(now)?;
        let id = id.to_string();
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE holds the row until COMMIT: concurrent attaches and
        // transitions of this upload wait, so the decision cannot go stale
        // (see crate::attach for why not a conditional UPDATE).
        let row = upload_where(&mut *tx, "WHERE id = $1 FOR UPDATE", &id, None).await?;
        if let Decision::Done(result) = attach::decide(row, attached_ref)? {
            tx.rollback().await?;
            return Ok(result);
        }
        let sql = format!(
            "UPDATE uploads SET attached_ref = $1, updated_at = $2 WHERE id = $3 \
             RETURNING {UPLOAD_COLUMNS}"
        );
        let upload = sqlx::query_as::<_, UploadRow>(&sql)
            .bind(attached_ref)
            .bind(now_ms)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?
            .into_upload()?;
        let payload = attached_payload(&upload);
        append_event(&mut tx, &upload, ATTACHED_EVENT, payload, now_ms).await?;
        tx.commit().await?;
        Ok(Some(upload))
    }

    async fn committed_unattached(
        &self,
        profile: &ProfileName,
        committed_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Upload>, LedgerError> {
        // Literals, not binds, for the status and NULL test, so that even a
        // generic plan of this prepared statement can use the partial
        // index `uploads_unattached`.
        let sql = select_uploads(
            "WHERE profile = $1 AND status = 'committed' AND attached_ref IS NULL \
             AND committed_at < $2 ORDER BY committed_at, id LIMIT $3",
        );
        let rows = sqlx::query_as::<_, UploadRow>(&sql)
            .bind(profile.as_str())
            .bind(to_millis(committed_before)?)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(UploadRow::into_upload).collect()
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox \
             WHERE delivered_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT $1"
        );
        let rows = sqlx::query_as::<_, OutboxRow>(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(OutboxRow::into_event).collect()
    }

    async fn outbox_claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, LedgerError> {
        delivery::claim(&self.pool, now, lease, limit).await
    }

    async fn outbox_delivered(&self, id: i64, now: OffsetDateTime) -> Result<(), LedgerError> {
        delivery::delivered(&self.pool, id, now).await
    }

    async fn outbox_failed(
        &self,
        id: i64,
        next_attempt_at: Option<OffsetDateTime>,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        delivery::failed(&self.pool, id, next_attempt_at, error, now).await
    }

    async fn outbox_dead(&self, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError> {
        delivery::dead(&self.pool, limit).await
    }

    async fn claim_processing(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<crate::ProcessingJob>, LedgerError> {
        processing::claim(&self.pool, now, lease, limit).await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, LedgerError> {
        delivery::try_lease(&self.pool, name, holder, now, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, LedgerError> {
        delivery::release_lease(&self.pool, name, holder).await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
