//! The ledger on SQLite: a single file (or memory, for tests and demos), WAL
//! journal, one writer at a time.
//!
//! SQLite serialises writers with a database-wide lock. Every write path here
//! takes that lock up front with `BEGIN IMMEDIATE`, which makes the
//! read-then-write steps (the idempotency lookup and quota check before an
//! insert, the re-read after a transition) atomic, and makes a contended
//! writer wait in `busy_timeout` instead of failing.
//!
//! Outbox delivery and leases are in [`delivery`]; lookups by id and by key
//! run on the caller's thread, in [`inline`].

mod checkpoint;
mod delivery;
mod inline;
mod inserter;
mod processing;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_domain::{ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Executor, QueryBuilder, Sqlite};
use time::OffsetDateTime;

use self::inline::InlineReads;
use self::writer::Writer;
use crate::attach::{self, Decision};
use crate::error::{is_unique_violation, url_error};
use crate::open::check_migrated;
use crate::rows::{OUTBOX_COLUMNS, OutboxRow, UPLOAD_COLUMNS, UploadRow, to_millis};
use crate::{
    ATTACHED_EVENT, Changes, Inserted, LedgerError, ListFilter, OpenOptions, OutboxEvent, Quota,
    UploadRepo, attached_payload, event_payload, event_type_for,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another writer's transaction to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The transaction every write uses; see the module header.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[derive(Clone, Debug)]
pub struct SqliteLedger {
    /// Reads use the pool directly (WAL lets them run beside the writer),
    /// all but the two point reads of `inline`.
    pool: SqlitePool,
    /// Every write goes through here, see [`writer`].
    writer: Writer,
    /// Lookups by id and by key, on the calling thread (see [`inline`]);
    /// `None` for an in-memory database.
    inline: Option<Arc<InlineReads>>,
}

impl SqliteLedger {
    /// Opens (creating if missing) and migrates the database at `url`:
    /// `sqlite://path/to/ledger.db` or `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<Self, LedgerError> {
        Self::open_with(url, OpenOptions::default()).await
    }

    /// [`open`](Self::open) with explicit options.
    pub async fn open_with(url: &str, options: OpenOptions) -> Result<Self, LedgerError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(url_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL, not NORMAL: under WAL, NORMAL survives a process crash
            // (kill -9) but may lose the last commits on power loss. The
            // ledger's commits come before irreversible steps elsewhere — a
            // grant handed out, an object deleted, a webhook sent — so a
            // commit that later vanished would break I1/I2/I4. FULL costs
            // one WAL fsync per write transaction, a handful per upload.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // The usage-counter triggers make every INSERT a multi-table
            // statement, which SQLite protects with a statement journal,
            // and each write in a group commit has its savepoint. That
            // journal spills to a temp file past 64 KiB, which a batch
            // reaches: pwrites on the grant path's profile. It only ever
            // undoes a statement of a transaction still open, so memory
            // is enough.
            .pragma("temp_store", "memory");
        let connect = if is_memory(url) {
            connect
        } else {
            // A file's checkpoints run off the writer's path (see
            // `checkpoint`): no connection of the pool runs one on commit.
            connect.pragma("wal_autocheckpoint", "0")
        };
        let inline = (!is_memory(url)).then(|| Arc::new(InlineReads::new(connect.get_filename())));
        // Opens nothing until the first batch, after the migrations below.
        let inserter = (!is_memory(url)).then(|| inserter::Inserter::new(connect.get_filename()));
        let pool = if is_memory(url) {
            // An in-memory database lives only as long as a connection to
            // it, and shared-cache connections report lock conflicts as
            // SQLITE_LOCKED, which busy_timeout does not retry. So: exactly
            // one connection, never recycled.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(options.max_connections.max(1))
        }
        // sqlx pings a pooled connection before handing it out; for SQLite
        // that is one more round trip to the connection's worker thread per
        // query (a futex wake and a context switch each way: the grant
        // path's profile was dominated by them), and there is no network
        // peer that could have gone away in between.
        .test_before_acquire(false)
        .connect_with(connect)
        .await?;
        if options.migrate {
            MIGRATOR.run(&pool).await?;
        } else {
            check_migrated(&mut *pool.acquire().await?, &MIGRATOR).await?;
        }
        let writer = Writer::spawn(pool.clone(), inserter).map_err(sqlx::Error::Io)?;
        Ok(Self {
            pool,
            writer,
            inline,
        })
    }
}

/// A migrated ledger in a file of a fresh temporary directory, for the
/// unit tests of what only a file database does (inline reads, the insert
/// thread).
#[cfg(test)]
async fn file_ledger() -> (tempfile::TempDir, SqliteLedger) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let options = OpenOptions {
        migrate: true,
        max_connections: 2,
    };
    (dir, SqliteLedger::open_with(&url, options).await.unwrap())
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
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
    E: Executor<'e, Database = Sqlite>,
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

async fn upload_by_id<'e, E>(e: E, id: &str) -> Result<Option<Upload>, LedgerError>
where
    E: Executor<'e, Database = Sqlite>,
{
    upload_where(e, "WHERE id = ?", id, None).await
}

/// The user's `(bytes, count)` in `profile`: one row of the `usage` counter,
/// which triggers on `uploads` keep equal to the sum over the rows in
/// [`QUOTA_STATUSES`](crate::QUOTA_STATUSES) (migrations/sqlite/0006), so
/// the cost does not grow with the user's uploads. No row means nothing used.
async fn usage_of<'e, E>(e: E, user: &str, profile: &str) -> Result<(u64, u64), LedgerError>
where
    E: Executor<'e, Database = Sqlite>,
{
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT bytes, count FROM usage WHERE user_id = ? AND profile = ?")
            .bind(user)
            .bind(profile)
            .fetch_optional(e)
            .await?;
    crate::rows::usage_from(row)
}

/// Fails with [`LedgerError::QuotaExceeded`] unless `upload` fits in `quota`
/// on top of the usage `conn` sees. Must run inside the write transaction
/// that inserts the row.
async fn check_quota(
    conn: &mut SqliteConnection,
    upload: &Upload,
    quota: &Quota,
) -> Result<(), LedgerError> {
    if quota.is_unlimited() {
        return Ok(());
    }
    let used = usage_of(&mut *conn, upload.user_id.as_str(), upload.profile.as_str()).await?;
    quota.admit(used, upload.size)
}

/// Inserts `row`. No trigger or default changes an `uploads` column, so
/// the row as bound is the row stored, and what `get` will return once it
/// is decoded (times are already whole milliseconds in an [`UploadRow`]).
async fn insert_row(conn: &mut SqliteConnection, row: &UploadRow) -> Result<(), LedgerError> {
    insert_rows(conn, &[row]).await
}

/// Inserts `rows` with one statement. The group-commit writer hands a run
/// of queued inserts here together, in chunks whose sizes are powers of two
/// ([`insert_chunk_len`]): one round trip to sqlx's SQLite worker thread
/// per chunk instead of one per row, and a statement SQLite parsed once and
/// sqlx keeps (one for each of the seven sizes). Nothing is read back: a
/// `RETURNING` row is copied value by value and sent across that thread
/// boundary on its own, which cost more than the insert. A statement is
/// atomic, so when it fails nothing of it was written.
async fn insert_rows(conn: &mut SqliteConnection, rows: &[&UploadRow]) -> Result<(), LedgerError> {
    let mut qb = QueryBuilder::<Sqlite>::new(format!("INSERT INTO uploads ({UPLOAD_COLUMNS}) "));
    qb.push_values(rows, |mut b, row| {
        b.push_bind(&row.id)
            .push_bind(&row.user_id)
            .push_bind(&row.profile)
            .push_bind(&row.mode)
            .push_bind(&row.key)
            .push_bind(&row.filename)
            .push_bind(&row.content_type)
            .push_bind(row.size)
            .push_bind(&row.sha256)
            .push_bind(&row.status)
            .push_bind(&row.etag)
            .push_bind(&row.reason)
            .push_bind(&row.metadata)
            .push_bind(&row.idempotency_key)
            .push_bind(&row.attached_ref)
            .push_bind(row.created_at)
            .push_bind(row.expires_at)
            .push_bind(row.updated_at)
            .push_bind(row.committed_at)
            .push_bind(&row.store_upload_id)
            .push_bind(row.width)
            .push_bind(row.height)
            .push_bind(&row.thumbhash)
            .push_bind(&row.variants);
    });
    let result = qb
        .build()
        .persistent(rows.len() == insert_chunk_len(rows.len()))
        .execute(conn)
        .await;
    match result {
        Ok(done) if done.rows_affected() == rows.len() as u64 => Ok(()),
        Ok(done) => Err(LedgerError::Corrupt(format!(
            "an insert of {} rows wrote {}",
            rows.len(),
            done.rows_affected()
        ))),
        // The idempotency key was looked up first under the write lock, so
        // a duplicate here is the id or the object key.
        Err(e) if is_unique_violation(&e) => Err(LedgerError::Conflict(match rows {
            [row] => format!(
                "an upload with id {} or key {:?} already exists",
                row.id, row.key
            ),
            _ => "one of the uploads inserted together already exists".to_owned(),
        })),
        Err(e) => Err(e.into()),
    }
}

/// The rows the next combined insert of a run of `n` takes: the largest
/// power of two up to `n`, at most 64 (24 columns × 64 rows stays far below
/// SQLite's limit on bound values).
fn insert_chunk_len(n: usize) -> usize {
    const MAX_CHUNK: usize = 64;
    if n == 0 {
        0
    } else {
        (1 << n.ilog2()).min(MAX_CHUNK)
    }
}

/// What an insert's write found or wrote; the new row is decoded only after
/// the commit (see [`UploadRepo::insert`] below).
enum InsertOutcome {
    Existing(Upload),
    New(UploadRow),
}

async fn append_event(
    conn: &mut SqliteConnection,
    upload: &Upload,
    event_type: &str,
    payload: serde_json::Value,
    now: i64,
) -> Result<(), LedgerError> {
    let payload = payload.to_string();
    sqlx::query(
        "INSERT INTO outbox (upload_id, event_type, payload, created_at, next_attempt_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(upload.id.to_string())
    .bind(event_type)
    .bind(payload)
    .bind(now)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl UploadRepo for SqliteLedger {
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
        if upload.idempotency_key.is_none() && quota.is_none() {
            // Nothing to read first: the writer may insert it together
            // with others queued beside it.
            let stored = self.writer.insert(row).await?;
            return Ok(Inserted::New(stored.into_upload()?));
        }
        let upload = upload.clone();
        let quota = quota.copied();
        // The reads come first and the INSERT last, so this is a one-change
        // write: an idempotent replay or a quota refusal writes nothing, and
        // a failed INSERT undoes itself (the `usage` counter's trigger
        // included: it runs as part of the INSERT statement).
        let outcome = self
            .writer
            .write_one(move |conn| {
                Box::pin(async move {
                    if let Some(key) = &upload.idempotency_key {
                        let where_ = "WHERE user_id = ? AND idempotency_key = ?";
                        let first = upload_where(&mut *conn, where_, &row.user_id, Some(key));
                        if let Some(first) = first.await? {
                            return Ok(InsertOutcome::Existing(first));
                        }
                    }
                    if let Some(quota) = &quota {
                        check_quota(conn, &upload, quota).await?;
                    }
                    // Decoded after the commit: nothing fallible follows the
                    // INSERT inside the write.
                    insert_row(conn, &row).await?;
                    Ok(InsertOutcome::New(row))
                })
            })
            .await?;
        match outcome {
            InsertOutcome::Existing(first) => Ok(Inserted::Existing(first)),
            InsertOutcome::New(stored) => Ok(Inserted::New(stored.into_upload()?)),
        }
    }

    async fn get(&self, id: UploadId) -> Result<Option<Upload>, LedgerError> {
        let id = id.to_string();
        if let Some(found) = self.inline.as_ref().and_then(|r| r.upload_by_id(&id)) {
            return found.map(UploadRow::into_upload).transpose();
        }
        upload_by_id(&self.pool, &id).await
    }

    async fn list(&self, user: &UserId, filter: &ListFilter) -> Result<Vec<Upload>, LedgerError> {
        let mut qb = QueryBuilder::<Sqlite>::new(select_uploads("WHERE user_id = "));
        qb.push_bind(user.as_str());
        if let Some(status) = filter.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(profile) = &filter.profile {
            qb.push(" AND profile = ").push_bind(profile.as_str());
        }
        if let Some(after) = filter.after {
            // Ids are fixed-width lowercase hex of a UUIDv7, so comparing
            // the text compares creation times.
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
        let media = crate::rows::MediaColumns::of(changes)?;
        let id = id.to_string();
        let changes = changes.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    // The compare-and-set: the status test and the write are one
                    // statement, so there is no window between reading `from` and
                    // writing `to`, and the affected-row count says whether this caller
                    // won. On SQLite writers are serialised anyway; on PostgreSQL the
                    // same statement is safe under READ COMMITTED, because a second
                    // UPDATE waits for the first and re-checks its WHERE clause.
                    let sql = format!(
                        "UPDATE uploads SET status = ?, \
                 etag = COALESCE(?, etag), \
                 reason = COALESCE(?, reason), \
                 committed_at = COALESCE(?, committed_at), \
                 attached_ref = COALESCE(?, attached_ref), \
                 width = COALESCE(?, width), \
                 height = COALESCE(?, height), \
                 thumbhash = COALESCE(?, thumbhash), \
                 variants = COALESCE(?, variants), \
                 process_lease_until = NULL, \
                 updated_at = ? \
             WHERE id = ? AND status = ? \
             RETURNING {UPLOAD_COLUMNS}"
                    );
                    let updated = sqlx::query_as::<_, UploadRow>(&sql)
                        .bind(to.as_str())
                        .bind(&changes.etag)
                        .bind(&changes.reason)
                        .bind(committed_at)
                        .bind(&changes.attached_ref)
                        .bind(media.width)
                        .bind(media.height)
                        .bind(&media.thumbhash)
                        .bind(&media.variants)
                        .bind(now_ms)
                        .bind(&id)
                        .bind(from.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                    let Some(upload) = updated.map(UploadRow::into_upload).transpose()? else {
                        return Ok(None);
                    };
                    if let Some(event_type) = event_type_for(to) {
                        let payload = event_payload(&upload);
                        append_event(conn, &upload, event_type, payload, now_ms).await?;
                    }
                    Ok(Some(upload))
                })
            })
            .await
    }

    async fn expired(
        &self,
        status: UploadStatus,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Upload>, LedgerError> {
        let sql =
            select_uploads("WHERE status = ? AND expires_at < ? ORDER BY expires_at, id LIMIT ?");
        let rows = sqlx::query_as::<_, UploadRow>(&sql)
            .bind(status.as_str())
            .bind(to_millis(before)?)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(UploadRow::into_upload).collect()
    }

    async fn find_by_key(&self, key: &ObjectKey) -> Result<Option<Upload>, LedgerError> {
        if let Some(found) = self
            .inline
            .as_ref()
            .and_then(|r| r.upload_by_key(key.as_str()))
        {
            return found.map(UploadRow::into_upload).transpose();
        }
        upload_where(&self.pool, "WHERE key = ?", key.as_str(), None).await
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
        let attached_ref = attached_ref.to_owned();
        // Writes run one at a time under the write lock, so the decision
        // cannot go stale between the read and the write.
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let row = upload_by_id(&mut *conn, &id).await?;
                    if let Decision::Done(result) = attach::decide(row, &attached_ref)? {
                        return Ok(result);
                    }
                    sqlx::query("UPDATE uploads SET attached_ref = ?, updated_at = ? WHERE id = ?")
                        .bind(&attached_ref)
                        .bind(now_ms)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    let upload = upload_by_id(&mut *conn, &id).await?.ok_or_else(|| {
                        LedgerError::Corrupt(format!("row {id} vanished during an attach"))
                    })?;
                    let payload = attached_payload(&upload);
                    append_event(conn, &upload, ATTACHED_EVENT, payload, now_ms).await?;
                    Ok(Some(upload))
                })
            })
            .await
    }

    async fn committed_unattached(
        &self,
        profile: &ProfileName,
        committed_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Upload>, LedgerError> {
        // The status and NULL test are literals, not binds, so SQLite can
        // see that the partial index `uploads_unattached` covers the query.
        let sql = select_uploads(
            "WHERE profile = ? AND status = 'committed' AND attached_ref IS NULL \
             AND committed_at < ? ORDER BY committed_at, id LIMIT ?",
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
             WHERE delivered_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT ?"
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
        delivery::claim(&self.writer, now, lease, limit).await
    }

    async fn outbox_delivered(&self, id: i64, now: OffsetDateTime) -> Result<(), LedgerError> {
        delivery::delivered(&self.writer, id, now).await
    }

    async fn outbox_failed(
        &self,
        id: i64,
        next_attempt_at: Option<OffsetDateTime>,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        delivery::failed(&self.writer, id, next_attempt_at, error, now).await
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
        processing::claim(&self.writer, now, lease, limit).await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, LedgerError> {
        delivery::try_lease(&self.writer, name, holder, now, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, LedgerError> {
        delivery::release_lease(&self.writer, name, holder).await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::insert_chunk_len;

    #[test]
    fn runs_of_inserts_go_in_power_of_two_chunks_of_at_most_64() {
        let cases = [
            (1, 1),
            (2, 2),
            (3, 2),
            (37, 32),
            (63, 32),
            (64, 64),
            (65, 64),
            (256, 64),
        ];
        for (run, chunk) in cases {
            assert_eq!(insert_chunk_len(run), chunk, "run of {run}");
        }
        // Chunk after chunk, a run is used up exactly.
        for run in 1..=300 {
            let (mut left, mut chunks) = (run, 0);
            while left > 0 {
                left -= insert_chunk_len(left);
                chunks += 1;
            }
            assert!(chunks <= run / 64 + 7, "run of {run}: {chunks} chunks");
        }
    }
}
