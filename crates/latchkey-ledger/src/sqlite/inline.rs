//! Point reads answered on the calling thread.
//!
//! sqlx runs every statement of a SQLite connection on that connection's
//! own worker thread: a read is a message to the worker, a futex wake, the
//! query, and a wake back for each row and for the end. For a lookup by
//! primary key the hand-offs cost more than the query. In a `perf` profile
//! of Uppy's sign-part route (one `get` per request, nothing written) the
//! scheduler and futex paths under sqlx's channels were about a third of the
//! server's CPU, and on the small VMs these benches run on, every wake is
//! an inter-processor interrupt.
//!
//! So the hottest reads — an upload by id, an upload by key — run here, on
//! the caller's thread, on a small set of read-only rusqlite connections
//! to the same file (rusqlite links the same libsqlite3 as sqlx). WAL mode
//! lets them read beside the writer, and they see every committed write: the
//! group-commit writer answers its callers only after `COMMIT`, and a read
//! starts a new snapshot. A primary-key lookup takes microseconds, less than
//! tokio's guidance for work that may run on a worker thread.
//!
//! Anything unusual goes the old way: these connections never wait for a
//! lock (`busy_timeout` 0, so a read that would block — WAL recovery after a
//! crash — returns `SQLITE_BUSY` at once), and any error, a busy database
//! or a row rusqlite will not decode, sends the read to the sqlx pool,
//! which waits on its own thread and reports real errors as before.
//! In-memory databases have no file to share, so they always use the pool.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use super::select_uploads;
use crate::rows::UploadRow;

/// Idle connections kept, at least: more are opened when needed and
/// closed after, unless fewer than one per CPU are kept (see `keep_idle`).
const MIN_IDLE: usize = 8;

pub(super) struct InlineReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// About one per thread that may read at once: tokio runs a worker per
    /// CPU, and opening a connection (and parsing the schema on its first
    /// query) costs far more than the lookup.
    keep_idle: usize,
    by_id: String,
    by_key: String,
}

impl std::fmt::Debug for InlineReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineReads")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl InlineReads {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            keep_idle: std::thread::available_parallelism()
                .map_or(MIN_IDLE, |n| n.get().max(MIN_IDLE)),
            by_id: select_uploads("WHERE id = ?1"),
            by_key: select_uploads("WHERE key = ?1"),
        }
    }

    /// The row with this id; `None` inside means no such row, an outer
    /// `None` that the pool has to answer.
    pub(super) fn upload_by_id(&self, id: &str) -> Option<Option<UploadRow>> {
        self.one(&self.by_id, id)
    }

    /// The row holding this object key (keys are unique).
    pub(super) fn upload_by_key(&self, key: &str) -> Option<Option<UploadRow>> {
        self.one(&self.by_key, key)
    }

    fn one(&self, sql: &str, arg: &str) -> Option<Option<UploadRow>> {
        let conn = match self.take() {
            Ok(conn) => conn,
            Err(err) => {
                tracing::debug!(%err, "inline read: no connection; using the pool");
                return None;
            }
        };
        let result = conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row([arg], upload_row).optional());
        match result {
            Ok(found) => {
                self.give_back(conn);
                Some(found)
            }
            Err(err) => {
                // A connection that failed is not reused: whatever went
                // wrong stays with it.
                tracing::debug!(%err, "inline read failed; using the pool");
                None
            }
        }
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(std::time::Duration::ZERO)?;
                Ok(conn)
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.keep_idle {
            idle.push(conn);
        }
    }
}

/// Decodes a row selected as [`UPLOAD_COLUMNS`](crate::rows::UPLOAD_COLUMNS),
/// in that order.
fn upload_row(r: &Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        profile: r.get(2)?,
        mode: r.get(3)?,
        key: r.get(4)?,
        filename: r.get(5)?,
        content_type: r.get(6)?,
        size: r.get(7)?,
        sha256: r.get(8)?,
        status: r.get(9)?,
        etag: r.get(10)?,
        reason: r.get(11)?,
        metadata: r.get(12)?,
        idempotency_key: r.get(13)?,
        attached_ref: r.get(14)?,
        created_at: r.get(15)?,
        expires_at: r.get(16)?,
        updated_at: r.get(17)?,
        committed_at: r.get(18)?,
        store_upload_id: r.get(19)?,
        width: r.get(20)?,
        height: r.get(21)?,
        thumbhash: r.get(22)?,
        variants: r.get(23)?,
    })
}

#[cfg(test)]
mod tests {
    use latchkey_domain::UploadId;

    use super::super::{SqliteLedger, file_ledger, upload_by_id, upload_where};
    use super::MIN_IDLE;
    use crate::UploadRepo;
    use crate::rows::UPLOAD_COLUMNS;

    /// A row with every column set, media included, written behind the
    /// ledger's back so no column is left at a default.
    async fn full_row(ledger: &SqliteLedger, id: &str, key: &str) {
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        sqlx::query(&format!(
            "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES \
             (?, 'alice', 'photo', 'multipart', ?, 'Ünï 写真.jpeg', 'image/jpeg', 1234, \
              '{sha}', 'committed', '\"abc-2\"', 'why', '{{\"alt\":\"un chat\"}}', 'idem-1', \
              'post:42', 1000, 2000, 3000, 4000, '2~mpu', 640, 480, 'thumb', '[]')"
        ))
        .bind(id)
        .bind(key)
        .execute(&ledger.pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn answers_on_the_calling_thread_exactly_as_the_pool_does() {
        let (_dir, ledger) = file_ledger().await;
        let id = UploadId::new().to_string();
        full_row(&ledger, &id, "u/alice/photo/x.jpg").await;
        let inline = ledger
            .inline
            .as_ref()
            .expect("a file database reads inline");

        let fast = inline.upload_by_id(&id).expect("answered inline");
        let fast = fast.expect("found").into_upload().unwrap();
        let pooled = upload_by_id(&ledger.pool, &id).await.unwrap().unwrap();
        assert_eq!(fast, pooled);
        assert!(fast.media.is_some() && fast.committed_at.is_some());

        let by_key = inline
            .upload_by_key("u/alice/photo/x.jpg")
            .expect("answered inline");
        assert_eq!(by_key.unwrap().into_upload().unwrap(), pooled);
        let pooled_by_key =
            upload_where(&ledger.pool, "WHERE key = ?", "u/alice/photo/x.jpg", None);
        assert_eq!(pooled_by_key.await.unwrap(), Some(pooled.clone()));
        assert_eq!(ledger.get(fast.id).await.unwrap(), Some(pooled));

        let missing = UploadId::new().to_string();
        assert!(matches!(inline.upload_by_id(&missing), Some(None)));
        assert!(matches!(inline.upload_by_key("u/nobody/x"), Some(None)));
    }

    #[tokio::test]
    async fn a_row_it_cannot_decode_is_left_to_the_pool() {
        let (_dir, ledger) = file_ledger().await;
        let id = UploadId::new().to_string();
        full_row(&ledger, &id, "u/alice/photo/y.jpg").await;
        // INTEGER affinity keeps text that is not a number as text.
        sqlx::query("UPDATE uploads SET width = 'wide' WHERE id = ?")
            .bind(&id)
            .execute(&ledger.pool)
            .await
            .unwrap();
        let inline = ledger.inline.as_ref().unwrap();
        assert!(inline.upload_by_id(&id).is_none(), "deferred to the pool");
        // Whatever the pool makes of it is what `get` answers.
        let pooled = upload_by_id(&ledger.pool, &id).await;
        let got = ledger.get(UploadId::parse(&id).unwrap()).await;
        assert_eq!(format!("{got:?}"), format!("{pooled:?}"));
        // The failed connection was not kept; the next read still works.
        assert!(matches!(inline.upload_by_id("nope"), Some(None)));
    }

    #[tokio::test]
    async fn one_reader_at_a_time_reuses_one_connection() {
        let (_dir, ledger) = file_ledger().await;
        let inline = ledger.inline.as_ref().unwrap();
        for _ in 0..10 {
            assert!(matches!(inline.upload_by_id("nope"), Some(None)));
        }
        assert_eq!(inline.idle.lock().unwrap().len(), 1);
        assert!(inline.keep_idle >= MIN_IDLE);
    }

    #[tokio::test]
    async fn an_in_memory_database_always_uses_the_pool() {
        let ledger = SqliteLedger::open("sqlite::memory:").await.unwrap();
        assert!(ledger.inline.is_none());
    }
}
