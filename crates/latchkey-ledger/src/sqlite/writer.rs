//! Group commit: every write to the SQLite ledger goes through one writer
//! (a thread of its own for a database file, see [`spawn_thread`]; a task
//! for an in-memory one), which runs whatever writes are queued in one
//! transaction and one fsync.
//!
//! Why: SQLite has one writer at a time. With every request opening its own
//! `BEGIN IMMEDIATE` on a pooled connection, the losers wait in SQLite's
//! busy handler, which *sleeps* (1, 2, 5 … 100 ms) rather than queueing, and
//! each winner pays its own WAL fsync (`synchronous = FULL`). At 64
//! concurrent grants that gave p99s of ~300 ms at ~1,000 grants/s. Here the
//! writes queue in memory instead; the writer takes the whole queue (up to
//! [`MAX_BATCH`]), runs each write inside its own savepoint — so one
//! write's failure (a quota, a unique key) rolls back only that write — and
//! commits once. A write's caller hears back only after that commit, so a
//! reported success is exactly as durable as before.
//!
//! A write sees every earlier write of its batch, as it would had they
//! committed one by one: the batch is the queue's order, serialised.
//!
//! Each statement is a round trip to sqlx's SQLite worker thread, and those
//! thread hops, not SQLite itself, were most of a grant's CPU (perf: futex
//! wake/wait and context switches). So a write whose only change is a single
//! statement ([`Writer::write_one`]) skips the savepoint: SQLite makes one
//! statement atomic, so when it fails it has changed nothing. And a run of
//! queued plain inserts ([`Writer::insert`], a grant's row when nothing has
//! to be read first) goes in as multi-row INSERTs, a chunk of 2, 4 … 64 rows
//! each: one hop per chunk, and seven statements in all, so SQLite parses
//! each once. Should a chunk's statement fail (one row's key is taken),
//! nothing of it was written and that chunk's inserts are made one by one,
//! so only the bad one fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sqlx::{Acquire, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Checkpoints;
use super::inserter::Inserter;
use crate::LedgerError;
use crate::rows::UploadRow;

/// The most writes one transaction carries. Large enough that a burst
/// shares one fsync; small enough that a batch's slowest write does not hold
/// the others for long.
const MAX_BATCH: usize = 256;

/// Writes waiting for the writer. Beyond this, callers wait to enqueue
/// (backpressure) instead of growing memory.
const QUEUE: usize = 4096;

/// The future a write returns, borrowing the batch's connection.
pub(super) type WriteFuture<'c, T> =
    Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'c>>;

/// One queued write, its result type erased so one queue carries them all.
pub(super) trait Op: Send {
    /// Whether the write needs a savepoint to be undone alone on failure.
    fn guarded(&self) -> bool;
    /// Runs the write on `conn` and keeps its result; says whether it
    /// succeeded.
    fn apply<'a>(
        &'a mut self,
        conn: &'a mut SqliteConnection,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
    /// Answers the caller once the batch's fate is known: `Ok` if the batch
    /// committed, else the error that stopped it.
    fn finish(self: Box<Self>, batch: Result<(), Arc<LedgerError>>);
    /// The row, if this is a plain insert that may go in with others.
    fn plain_insert(&self) -> Option<&UploadRow> {
        None
    }
    /// Records that a plain insert was made together with others.
    fn inserted(&mut self) {}
}

/// Answers a caller: the write's own failure is its answer whatever the
/// batch did (it was rolled back either way); a success only if the batch
/// committed.
fn answer<T>(
    result: Option<Result<T, LedgerError>>,
    batch: Result<(), Arc<LedgerError>>,
) -> Result<T, LedgerError> {
    match (result, batch) {
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(value)), Ok(())) => Ok(value),
        (_, Err(e)) => Err(LedgerError::Shared(e)),
        (None, Ok(())) => Err(LedgerError::Corrupt(
            "a queued write was never run".to_owned(),
        )),
    }
}

/// A new row with nothing to read first: see [`Writer::insert`].
struct PlainInsert {
    row: UploadRow,
    result: Option<Result<(), LedgerError>>,
    reply: oneshot::Sender<Result<UploadRow, LedgerError>>,
}

impl Op for PlainInsert {
    fn guarded(&self) -> bool {
        false
    }

    fn apply<'a>(
        &'a mut self,
        conn: &'a mut SqliteConnection,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let result = super::insert_row(conn, &self.row).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(self: Box<Self>, batch: Result<(), Arc<LedgerError>>) {
        // The row as bound is the row stored (see `insert_rows`).
        let row = self.row;
        let result = self.result.map(|r| r.map(|()| row));
        let _ = self.reply.send(answer(result, batch));
    }

    fn plain_insert(&self) -> Option<&UploadRow> {
        self.result.is_none().then_some(&self.row)
    }

    fn inserted(&mut self) {
        self.result = Some(Ok(()));
    }
}

struct Pending<T, F> {
    guarded: bool,
    write: Option<F>,
    result: Option<Result<T, LedgerError>>,
    reply: oneshot::Sender<Result<T, LedgerError>>,
}

impl<T, F> Op for Pending<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
{
    fn guarded(&self) -> bool {
        self.guarded
    }

    fn apply<'a>(
        &'a mut self,
        conn: &'a mut SqliteConnection,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let Some(write) = self.write.take() else {
                return false;
            };
            let result = write(conn).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(self: Box<Self>, batch: Result<(), Arc<LedgerError>>) {
        // The caller may have gone away (its request was cancelled); the
        // write's outcome stands regardless.
        let _ = self.reply.send(answer(self.result, batch));
    }
}

/// The handle the ledger's methods write through.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    queue: mpsc::Sender<Box<dyn Op>>,
    /// The fast path's count of committed batches, read by tests.
    #[cfg_attr(not(test), allow(dead_code))]
    fast_batches: Option<Arc<AtomicU64>>,
}

impl Writer {
    /// Starts the writer. It takes a connection from `pool` per batch (so
    /// an in-memory database's single connection is shared with readers)
    /// and ends when every `Writer` handle is dropped. With `inserter` (a
    /// file database, see [`super::inserter`]) it runs on a thread of its
    /// own ([`spawn_thread`]); without, as a task.
    pub(super) fn spawn(pool: SqlitePool, inserter: Option<Inserter>) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let fast_batches = inserter.as_ref().map(Inserter::counter);
        match inserter {
            Some(inserter) => spawn_thread(pool, inserter, rx)?,
            None => {
                tokio::spawn(run(pool, None, rx));
            }
        }
        Ok(Writer {
            queue,
            fast_batches,
        })
    }

    /// Batches the fast insert path committed (for tests).
    #[cfg(test)]
    pub(super) fn fast_batches(&self) -> u64 {
        self.fast_batches
            .as_ref()
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Queues `write` and waits until it has run and its batch committed.
    /// If it fails, whatever it changed is rolled back (a savepoint) and the
    /// rest of its batch is unaffected.
    pub(super) async fn write<T, F>(&self, write: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.queue_op(true, write).await
    }

    /// [`write`](Self::write) for a write that changes the database with at
    /// most one statement, which must be the last thing it does that can
    /// fail: then a failure has changed nothing and needs no savepoint.
    pub(super) async fn write_one<T, F>(&self, write: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.queue_op(false, write).await
    }

    /// Inserts `row` (and reads it back): a write with nothing to read
    /// first, which the batch may combine with the plain inserts queued
    /// beside it into one statement.
    pub(super) async fn insert(&self, row: UploadRow) -> Result<UploadRow, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let op = Box::new(PlainInsert {
            row,
            result: None,
            reply,
        });
        self.send(op, answer).await
    }

    async fn queue_op<T, F>(&self, guarded: bool, write: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Box::new(Pending {
            guarded,
            write: Some(write),
            result: None,
            reply,
        });
        self.send(op, answer).await
    }

    async fn send<T>(
        &self,
        op: Box<dyn Op>,
        answer: oneshot::Receiver<Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        self.queue
            .send(op)
            .await
            .map_err(|_| LedgerError::Database(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| LedgerError::Database(sqlx::Error::PoolClosed))?
    }
}

/// Runs the writer on a thread of its own, with a runtime of its own for
/// the sqlx path.
///
/// Why: as a task, the writer shared the tokio workers with the requests
/// it serves. Every batch was then four hand-offs (request → writer task →
/// insert thread → writer task → requests), and each wake of the writer
/// task queued it behind whatever request tasks the workers had runnable,
/// while the insert thread sat idle waiting for the next batch. On its own
/// thread the writer is woken by the OS as soon as a write is queued, runs
/// the plain inserts itself (blocking is fine: nothing else runs here),
/// and answers the requests directly: two hand-offs.
fn spawn_thread(
    pool: SqlitePool,
    inserter: Inserter,
    rx: mpsc::Receiver<Box<dyn Op>>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checkpoints = Checkpoints::spawn(inserter.path())?;
    std::thread::Builder::new()
        .name("ledger-writer".to_owned())
        .spawn(move || runtime.block_on(run(pool, Some((inserter, checkpoints)), rx)))?;
    Ok(())
}

/// The writer's loop. With `file` (a database file: the fast insert path
/// and the checkpoint thread, see [`super::checkpoint`]), each committed
/// batch is counted towards the next checkpoint, and a catch-up the thread
/// asked for runs after a batch is answered, while the next one queues.
async fn run(
    pool: SqlitePool,
    mut file: Option<(Inserter, Checkpoints)>,
    mut rx: mpsc::Receiver<Box<dyn Op>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let writes = batch.len();
        let fast = match &mut file {
            Some((fast, _)) => {
                batch.iter().all(|op| op.plain_insert().is_some()) && fast.insert(&mut batch)
            }
            None => false,
        };
        let committed = if fast {
            for op in batch.drain(..) {
                op.finish(Ok(()));
            }
            true
        } else {
            // Not only plain inserts, or nothing of them written: sqlx runs
            // the batch and reports each write's own error.
            let outcome = commit_batch(&pool, &mut batch).await.map_err(Arc::new);
            let committed = outcome.is_ok();
            for op in batch.drain(..) {
                op.finish(outcome.clone());
            }
            committed
        };
        if let Some((fast, checkpoints)) = &mut file {
            if committed {
                checkpoints.committed(writes);
            }
            if checkpoints.take_catch_up() {
                fast.checkpoint();
            }
        }
    }
}

/// Runs every op of `batch` in one transaction, each in its own savepoint.
/// An error here (the database unreachable, busy past its timeout, the
/// commit failing) fails the whole batch; nothing of it was committed.
async fn commit_batch(pool: &SqlitePool, batch: &mut [Box<dyn Op>]) -> Result<(), LedgerError> {
    let mut tx = pool.begin_with(super::BEGIN_WRITE).await?;
    let mut rest = batch;
    while !rest.is_empty() {
        let run = rest
            .iter()
            .take_while(|op| op.plain_insert().is_some())
            .count();
        // A run of plain inserts goes in by chunks (see `insert_rows`).
        // An op that is not a plain insert (run 0) goes alone.
        let take = super::insert_chunk_len(run).max(1);
        let (now, later) = std::mem::take(&mut rest).split_at_mut(take);
        rest = later;
        if take >= 2 && insert_together(&mut tx, now).await {
            continue;
        }
        // One op, or a chunk whose combined insert failed (nothing of it
        // was written): each on its own.
        for op in now {
            if !op.guarded() {
                op.apply(&mut tx).await;
                continue;
            }
            let mut savepoint = Acquire::begin(&mut tx).await?;
            if op.apply(&mut savepoint).await {
                savepoint.commit().await?;
            } else {
                savepoint.rollback().await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Inserts the rows of a chunk of plain inserts with one statement; says
/// whether it did (if not, nothing of it was written).
async fn insert_together(conn: &mut SqliteConnection, ops: &mut [Box<dyn Op>]) -> bool {
    let rows: Vec<&UploadRow> = ops.iter().filter_map(|op| op.plain_insert()).collect();
    if super::insert_rows(conn, &rows).await.is_err() {
        return false;
    }
    for op in ops {
        op.inserted();
    }
    true
}
