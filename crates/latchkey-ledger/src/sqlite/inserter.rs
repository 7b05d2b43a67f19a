//! The group-commit writer's fast path: a batch of nothing but plain
//! inserts (a grant's row, see [`Writer::insert`](super::writer::Writer))
//! goes in through one rusqlite connection, on the writer's own thread.
//!
//! Why: through sqlx, a batch is a round trip to the connection's worker
//! thread for `BEGIN`, one per chunk of rows and one for `COMMIT`, each a
//! futex wake each way. In a profile of `POST /v1/uploads` at 64
//! connections that made about one context switch per grant, and the
//! scheduler (`finish_task_switch`, the wake-ups) was 12% of the server's
//! CPU. Here the whole batch runs `BEGIN IMMEDIATE`, the chunked INSERTs
//! and `COMMIT` back to back, on the thread that took the batch off the
//! queue (see `writer::spawn_thread` for why that thread is the writer's
//! own). The connection is also always the same one, so its page cache
//! stays warm; the sqlx pool hands the writer whichever connection is
//! idle, whose cache the last commit on another made stale.
//!
//! It only ever answers "committed" or "not done": any error (a key taken,
//! a busy or failing database) rolls the transaction back and the writer
//! runs the batch again the old way, through sqlx, which reports each
//! insert's own error exactly as before. So this path adds no error
//! handling of its own, and a connection that failed is closed and opened
//! afresh for the next batch.
//!
//! One edge: if `COMMIT` fails after SQLite made it durable (an I/O error
//! reported late), the sqlx retry finds the ids taken and answers each
//! insert with a conflict. Those rows are pending uploads nobody holds a
//! grant for; the sweeper expires them like any abandoned upload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::writer::Op;
use super::{BUSY_TIMEOUT, insert_chunk_len};
use crate::rows::{UPLOAD_COLUMNS, UploadRow};

/// The rusqlite connection plain-insert batches go through. Blocking: only
/// the writer's own thread calls it.
pub(super) struct Inserter {
    path: PathBuf,
    conn: Option<Connection>,
    /// The INSERT of 1, 2, 4 … rows: index `i` takes `1 << i` rows.
    statements: Vec<String>,
    committed: Arc<AtomicU64>,
}

impl Inserter {
    /// For the database file at `path` (already created and migrated).
    /// Nothing is opened until the first batch.
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            conn: None,
            statements: (0..=insert_chunk_len(usize::MAX).ilog2())
                .map(|p| insert_sql(1 << p))
                .collect(),
            committed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The database file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a `PASSIVE` checkpoint on this connection: the writer's
    /// catch-up (see [`super::checkpoint`]). A failure leaves the frames
    /// to the next checkpoint.
    pub(super) fn checkpoint(&mut self) {
        if let Err(err) = super::checkpoint::passive(&mut self.conn, || open(&self.path)) {
            tracing::debug!(%err, "ledger: WAL catch-up failed");
        }
    }

    /// Counts the batches committed (for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn counter(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// Runs `batch` (plain inserts only) as one transaction and says
    /// whether it committed; if not, nothing of it was written.
    pub(super) fn insert(&mut self, batch: &mut [Box<dyn Op>]) -> bool {
        match self.insert_all(batch) {
            Ok(()) => {
                for op in batch.iter_mut() {
                    op.inserted();
                }
                self.committed.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(err) => {
                tracing::debug!(%err, "fast insert path failed; the batch goes through sqlx");
                self.conn = None;
                false
            }
        }
    }

    fn insert_all(&mut self, batch: &mut [Box<dyn Op>]) -> rusqlite::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(open(&self.path)?);
        }
        let rows: Vec<&UploadRow> = batch.iter().filter_map(|op| op.plain_insert()).collect();
        if rows.len() != batch.len() {
            // The writer sends plain inserts only; anything else is its
            // bug, and sqlx handles every kind of write.
            return Err(rusqlite::Error::InvalidQuery);
        }
        let conn = self.conn.as_mut().expect("opened above");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut rest = &rows[..];
        while !rest.is_empty() {
            let take = insert_chunk_len(rest.len());
            let (now, later) = rest.split_at(take);
            let mut stmt = tx.prepare_cached(&self.statements[take.ilog2() as usize])?;
            let mut i = 0;
            for row in now {
                bind_row(&mut stmt, &mut i, row)?;
            }
            let written = stmt.raw_execute()?;
            if written != take {
                return Err(rusqlite::Error::StatementChangedRows(written));
            }
            rest = later;
        }
        // On an error above, dropping `tx` rolls it back.
        tx.commit()
    }
}

/// A read-write connection with the same settings sqlx's have (see
/// `SqliteLedger::open_with`): FULL sync, foreign keys, statement journals in
/// memory, no checkpoints on commit (see [`super::checkpoint`]), the same
/// busy timeout. The file is WAL already. The checkpoint thread's too.
pub(super) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = 0;",
    )?;
    Ok(conn)
}

/// `OR ROLLBACK`: a row that breaks a constraint ends the whole transaction
/// at once, which is what this path does with any error anyway. With the
/// default (`ABORT`), SQLite has to be able to undo just the failing
/// statement, so a multi-row INSERT (or one whose trigger writes `usage`)
/// copies every page it touches into a statement journal first:
/// `subjournalPageIfRequired` was ~2% of the server's CPU under grants.
fn insert_sql(rows: usize) -> String {
    let one = format!(
        "({})",
        vec!["?"; UPLOAD_COLUMNS.split(',').count()].join(", ")
    );
    format!(
        "INSERT OR ROLLBACK INTO uploads ({UPLOAD_COLUMNS}) VALUES {}",
        vec![one; rows].join(", ")
    )
}

/// Binds `row`'s values, in [`UPLOAD_COLUMNS`] order, from parameter
/// `*i + 1` on.
fn bind_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    i: &mut usize,
    row: &UploadRow,
) -> rusqlite::Result<()> {
    let values: [&dyn rusqlite::ToSql; 24] = [
        &row.id,
        &row.user_id,
        &row.profile,
        &row.mode,
        &row.key,
        &row.filename,
        &row.content_type,
        &row.size,
        &row.sha256,
        &row.status,
        &row.etag,
        &row.reason,
        &row.metadata,
        &row.idempotency_key,
        &row.attached_ref,
        &row.created_at,
        &row.expires_at,
        &row.updated_at,
        &row.committed_at,
        &row.store_upload_id,
        &row.width,
        &row.height,
        &row.thumbhash,
        &row.variants,
    ];
    for v in values {
        *i += 1;
        stmt.raw_bind_parameter(*i, v)?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use latchkey_domain::{
        ContentType, Mode, ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId,
    };
    use time::{Duration, OffsetDateTime};

    use super::super::{SqliteLedger, file_ledger};
    use super::*;
    use crate::{Inserted, LedgerError, UploadRepo};

    pub(in crate::sqlite) fn upload(key: Option<&ObjectKey>) -> Upload {
        let id = UploadId::new();
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        Upload {
            id,
            user_id: UserId::parse("alice").unwrap(),
            profile: ProfileName::parse("photo").unwrap(),
            mode: Mode::Put,
            key: key
                .cloned()
                .unwrap_or_else(|| ObjectKey::from_trusted(format!("u/alice/photo/{id}.jpg"))),
            filename: "Ünï 写真.jpg".to_owned(),
            content_type: ContentType::parse("image/jpeg").unwrap(),
            size: 1000,
            sha256: None,
            status: UploadStatus::Pending,
            etag: None,
            reason: None,
            metadata: BTreeMap::from([("alt".to_owned(), "un chat".to_owned())]),
            idempotency_key: None,
            attached_ref: None,
            created_at: t,
            expires_at: t + Duration::minutes(15),
            updated_at: t,
            committed_at: None,
            store_upload_id: None,
            media: None,
        }
    }

    /// Inserts `uploads` all at once; each one's result, in order.
    async fn insert_together(
        ledger: &SqliteLedger,
        uploads: &[Upload],
    ) -> Vec<Result<Inserted, LedgerError>> {
        let tasks: Vec<_> = uploads
            .iter()
            .map(|u| {
                let (ledger, u) = (ledger.clone(), u.clone());
                tokio::spawn(async move { ledger.insert(&u, None).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_inserts_go_in_through_the_fast_path_as_sent() {
        let (_dir, ledger) = file_ledger().await;
        let uploads: Vec<Upload> = (0..200).map(|_| upload(None)).collect();
        for (u, result) in uploads.iter().zip(insert_together(&ledger, &uploads).await) {
            assert_eq!(result.unwrap(), Inserted::New(u.clone()));
            // Read back through the pool's connections, not the fast path's.
            let id = u.id.to_string();
            let pooled = super::super::upload_by_id(&ledger.pool, &id).await;
            assert_eq!(pooled.unwrap().as_ref(), Some(u));
        }
        assert!(ledger.writer.fast_batches() > 0, "the fast path was used");
        let (bytes, count) = ledger
            .usage(&uploads[0].user_id, &uploads[0].profile)
            .await
            .unwrap();
        assert_eq!((bytes, count), (200 * 1000, 200), "the usage trigger ran");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_it_cannot_insert_goes_through_sqlx_and_the_fast_path_carries_on() {
        let (_dir, ledger) = file_ledger().await;
        let taken = upload(None);
        ledger.insert(&taken, None).await.unwrap();
        let before = ledger.writer.fast_batches();
        assert!(before > 0);
        // A lone insert of a taken key is a batch of one the fast path cannot
        // commit: sqlx runs it again and reports the conflict.
        let clash = upload(Some(&taken.key));
        let err = ledger.insert(&clash, None).await.unwrap_err();
        assert!(matches!(err, LedgerError::Conflict(_)), "{err:?}");
        assert_eq!(ledger.writer.fast_batches(), before);
        assert_eq!(ledger.get(clash.id).await.unwrap(), None);
        // The next batch is the fast path's again, on a fresh connection.
        let next = upload(None);
        ledger.insert(&next, None).await.unwrap();
        assert_eq!(ledger.writer.fast_batches(), before + 1);
        assert_eq!(ledger.get(next.id).await.unwrap(), Some(next));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_taken_key_in_a_batch_fails_alone_and_the_rest_go_in() {
        let (_dir, ledger) = file_ledger().await;
        let taken = upload(None);
        ledger.insert(&taken, None).await.unwrap();
        // 100 inserts at once, one of them with the taken key somewhere in
        // the middle: whatever batches they land in, the one holding the
        // clash is rolled back whole (OR ROLLBACK) and replayed through sqlx.
        let mut uploads: Vec<Upload> = (0..100).map(|_| upload(None)).collect();
        uploads[57] = upload(Some(&taken.key));
        let results = insert_together(&ledger, &uploads).await;
        for (i, (u, result)) in uploads.iter().zip(results).enumerate() {
            if i == 57 {
                let err = result.unwrap_err();
                assert!(matches!(err, LedgerError::Conflict(_)), "{err:?}");
                assert_eq!(ledger.get(u.id).await.unwrap(), None);
            } else {
                assert_eq!(result.unwrap(), Inserted::New(u.clone()));
                assert_eq!(ledger.get(u.id).await.unwrap().as_ref(), Some(u));
            }
        }
        let (bytes, count) = ledger.usage(&taken.user_id, &taken.profile).await.unwrap();
        assert_eq!((bytes, count), (100 * 1000, 100), "counted once each");
    }

    #[test]
    fn the_statements_have_one_placeholder_per_column_and_row() {
        let columns = UPLOAD_COLUMNS.split(',').count();
        assert_eq!(columns, 24, "bind_row binds 24 values");
        for rows in [1, 2, 64] {
            assert_eq!(insert_sql(rows).matches('?').count(), columns * rows);
        }
    }
}
