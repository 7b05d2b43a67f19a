//! WAL checkpoints off the writer's path, for a database file.
//!
//! Why: by default SQLite checkpoints on the connection that commits, once
//! the WAL holds 1,000 frames. That connection is the group-commit writer
//! (see [`super::writer`]), so every ~1,000 frames one commit also copied
//! the WAL's new pages into the database file and synced it, while every
//! request queued behind that batch waited: a ~3.5 ms stall about 15 times
//! a second under `POST /v1/uploads` at 64 connections, which is where the
//! grants' p99 was (docs/BENCHMARKS.md, "Session 13").
//!
//! So no connection of the writer's checkpoints on commit
//! (`wal_autocheckpoint = 0`). Every ~1,000 frames (see [`Checkpoints`])
//! the writer wakes the checkpoint thread, which runs a `PASSIVE`
//! checkpoint on a connection of its own: it copies the WAL into the
//! database file while the writer goes on appending, and never takes the
//! write lock. Then it syncs the database file, so the pages it wrote are
//! on disk before anyone waits for them.
//!
//! The WAL only starts over from its beginning (which keeps the file's size
//! bounded) after a checkpoint that reached its end; SQLite also syncs the
//! database file only then. Under load the writer has always appended more
//! by the time the thread's checkpoint ends, so the thread then asks the
//! writer to catch up: the writer runs one more `PASSIVE` checkpoint itself,
//! between two batches, with only what it appended meanwhile to copy and
//! little left to sync. Both are SQLite's own checkpoints, so neither can
//! lose a commit: a WAL frame is overwritten only once the database file
//! that holds its page is synced.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::Connection;

use super::inserter;

/// Committed writes, or write batches, between two wakes of the checkpoint
/// thread, whichever comes first: roughly SQLite's own 1,000-frame interval
/// both ways. A batch of grants' rows shares its table and index pages, a
/// frame per row or less; a batch of one row writes ten or so.
const WAKE_WRITES: usize = 1_280;
const WAKE_BATCHES: usize = 96;

/// The writer's side: counts its commits, wakes the thread, hears when a
/// catch-up is due.
pub(super) struct Checkpoints {
    wake: mpsc::SyncSender<()>,
    catch_up: Arc<AtomicBool>,
    writes: usize,
    batches: usize,
}

impl Checkpoints {
    /// Starts the checkpoint thread for the database file at `path`. It
    /// opens its connection at its first checkpoint and ends when this
    /// handle is dropped.
    pub(super) fn spawn(path: &Path) -> std::io::Result<Self> {
        // One wake may wait: a wake sent while a checkpoint runs starts
        // the next one right after it; more would only repeat it.
        let (wake, woken) = mpsc::sync_channel(1);
        let catch_up = Arc::new(AtomicBool::new(false));
        let mut thread = Thread {
            path: path.to_owned(),
            conn: None,
            catch_up: catch_up.clone(),
        };
        std::thread::Builder::new()
            .name("ledger-checkpoint".to_owned())
            .spawn(move || {
                while woken.recv().is_ok() {
                    thread.checkpoint();
                }
            })?;
        Ok(Self {
            wake,
            catch_up,
            writes: 0,
            batches: 0,
        })
    }

    /// Records that a batch of `writes` writes committed; wakes the thread
    /// when enough have.
    pub(super) fn committed(&mut self, writes: usize) {
        self.writes += writes;
        self.batches += 1;
        if self.writes >= WAKE_WRITES || self.batches >= WAKE_BATCHES {
            (self.writes, self.batches) = (0, 0);
            // Full: a wake is pending already, and will see these frames.
            let _ = self.wake.try_send(());
        }
    }

    /// Whether the thread asked for a catch-up (see the module header);
    /// clears the request.
    pub(super) fn take_catch_up(&self) -> bool {
        self.catch_up.swap(false, Ordering::AcqRel)
    }
}

struct Thread {
    path: PathBuf,
    conn: Option<Connection>,
    catch_up: Arc<AtomicBool>,
}

impl Thread {
    fn checkpoint(&mut self) {
        // The writer's own settings (`synchronous = FULL`: a checkpoint
        // syncs the WAL before it copies from it).
        if let Err(err) = passive(&mut self.conn, || inserter::open(&self.path)) {
            // The writer's commits do not depend on checkpoints; the next
            // wake tries again, on a fresh connection.
            tracing::warn!(%err, "ledger: WAL checkpoint failed");
            return;
        }
        // Only a head start for the catch-up's own sync; nothing depends
        // on it, so a failure here is no failure.
        if let Some(db) = database_file(&self.path) {
            let _ = db.sync_data();
        }
        // Whether the writer appended meanwhile, the pragma cannot say (it
        // counts the WAL's frames as of the checkpoint's start), so always
        // ask. When nothing is left, a catch-up costs a glance at the
        // WAL's index.
        self.catch_up.store(true, Ordering::Release);
    }
}

/// Runs a `PASSIVE` checkpoint on `*conn`, which copies as much of the WAL
/// as no reader still needs, without waiting for anyone (and leaves the
/// work to another checkpoint already running). Opens the connection with
/// `open` first if there is none; drops it if it failed, so that the next
/// checkpoint starts afresh.
pub(super) fn passive(
    conn: &mut Option<Connection>,
    open: impl FnOnce() -> rusqlite::Result<Connection>,
) -> rusqlite::Result<()> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(open()?),
    };
    let outcome = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    if outcome.is_err() {
        *conn = None;
    }
    outcome
}

/// A handle on the database file to sync, opened once per path and never
/// closed: closing any descriptor of a file drops every POSIX lock this
/// process holds on it, SQLite's included, which would let another process
/// take the database as its own. One descriptor per database this process
/// opens.
fn database_file(path: &Path) -> Option<&'static File> {
    static OPEN: Mutex<Vec<(PathBuf, &'static File)>> = Mutex::new(Vec::new());
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, file)) = open.iter().find(|(p, _)| p == path) {
        return Some(file);
    }
    let file: &'static File = Box::leak(Box::new(File::open(path).ok()?));
    open.push((path.to_owned(), file));
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::super::file_ledger;
    use super::super::inserter::tests::upload;
    use crate::UploadRepo;

    /// The writer's connections never checkpoint, and yet the WAL does not
    /// grow with the rows while writes never pause: the checkpoint thread
    /// and the writer's catch-ups copy it into the database file and let it
    /// start over. Without the catch-ups (or the thread) these rows leave
    /// ~75 MiB of WAL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_small_though_no_commit_checkpoints() {
        let (dir, ledger) = file_ledger().await;
        let (on_commit,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
        assert_eq!(on_commit, 0, "the pool's connections checkpoint on commit");
        // 64 writers that never pause, so the writer always has the next
        // batch queued: the WAL can start over only after a catch-up.
        let (writers, each) = (64, 384);
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    for _ in 0..each {
                        ledger.insert(&upload(None), None).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM uploads")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
        assert_eq!(rows, writers * each);
        let wal = std::fs::metadata(dir.path().join("ledger.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 8 << 20, "the WAL grew to {wal} bytes");
        let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
        assert_eq!(check, "ok");
    }
}
