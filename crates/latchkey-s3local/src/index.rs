//! The object index: one SQLite file (`index.db` beside `objects/`) mapping
//! each key to its metadata and data file name, so memory stays flat however
//! many objects the bucket holds.
//!
//! Reads (GET/HEAD lookups, listing pages) use a small pool; WAL lets them
//! run beside the writer. Every change goes through one writer task that
//! takes whatever changes are queued, applies them in order in one
//! transaction, commits once (one WAL fsync, `synchronous = FULL`, for the
//! whole batch) and only then answers each caller: group commit, so the
//! serialised part of a PUT is a share of one fsync, not two fsyncs of its own.
//!
//! A change's precondition is checked inside that transaction, after the
//! changes queued before it, so two racing conditional writes cannot both
//! win. The task also finishes what a change leaves on disk (removing a
//! replaced data file, or the new one of a write that lost its
//! precondition), so a caller that goes away mid-request — a dropped
//! connection cancels its future — leaves nothing half done.
//!
//! Objects this process wrote lately are also kept in a small bounded cache
//! ([`Recent`]): the HEAD the broker sends right after an upload, and GETs of
//! fresh objects, are answered without a query. Only the writer fills it, so
//! it never holds a version older than the index's.
//!
//! Keys are stored as BLOBs: SQLite compares them with `memcmp`, which is
//! S3's UTF-8 byte order, and a range bound may be any byte string (the
//! successor of a prefix is not always UTF-8).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection as _, Row as _};
use tokio::sync::{mpsc, oneshot};

use crate::disk::{CommitError, Condition, ObjectMeta, blocking, fanout_dir};
use crate::pieces::{self, Readers};

/// The schema this code writes; `PRAGMA user_version` of the file.
///
/// 2: a row's `data` may name a folder of pieces (`pieces`). The table is
/// unchanged, but a build that knows only data files would read such a
/// row's folder as missing and drop the row, so it must refuse the file.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    key  BLOB PRIMARY KEY NOT NULL,
    data TEXT NOT NULL UNIQUE,
    meta TEXT NOT NULL
) WITHOUT ROWID;
";

/// Readers beside the writer. GET/HEAD lookups are point queries that take
/// tens of microseconds; a few connections keep them from queueing on two
/// cores, and each holds a bounded page cache (SQLite's default 2 MiB).
const READERS: u32 = 4;

/// The most changes one transaction carries: enough that a burst shares one
/// fsync, few enough that the batch's answer is not held long.
const MAX_BATCH: usize = 256;

/// Changes waiting for the writer; beyond this, callers wait to enqueue.
const QUEUE: usize = 4096;

/// Entries of the recent-writes cache: a few MiB at most, full within
/// seconds of a busy start, then flat.
const RECENT: usize = 2048;

/// How long a statement waits for a lock held elsewhere (a checkpoint, or
/// another process reading the file) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One change for the writer.
#[derive(Debug)]
enum Change {
    /// Make `meta` the object at `meta.key` if `cond` holds. Its data file is
    /// already in place.
    Put {
        meta: Box<ObjectMeta>,
        cond: Condition,
    },
    Remove {
        key: String,
    },
}

/// What a change did.
#[derive(Debug)]
enum Outcome {
    /// Written; the object it replaced, if any.
    Put(Option<ObjectMeta>),
    Precondition,
    /// Removed; `None` when there was nothing.
    Removed(Option<ObjectMeta>),
}

struct Op {
    change: Change,
    reply: oneshot::Sender<io::Result<Outcome>>,
}

pub(crate) struct Index {
    pool: SqlitePool,
    writer: mpsc::Sender<Op>,
    recent: Arc<Recent>,
}

/// The last [`RECENT`] objects the writer committed, oldest evicted first.
///
/// Only the writer changes it: it drops a batch's keys before committing
/// the batch and adds the new versions after, so a reader that misses here
/// reads the index, and one that hits never sees a version older than what
/// the index would have answered.
#[derive(Default)]
struct Recent {
    inner: Mutex<RecentInner>,
}

#[derive(Default)]
struct RecentInner {
    /// key → (insertion number, meta).
    map: HashMap<String, (u64, Arc<ObjectMeta>)>,
    /// Insertion order; an entry whose number no longer matches the map's
    /// was superseded and only counts toward the bound.
    order: VecDeque<(String, u64)>,
    next: u64,
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        // Every update is a few map operations that leave it consistent
        // even if one panicked midway, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &str) -> Option<Arc<ObjectMeta>> {
        self.lock().map.get(key).map(|(_, meta)| meta.clone())
    }

    fn forget<'a>(&self, keys: impl Iterator<Item = &'a str>) {
        let mut inner = self.lock();
        for key in keys {
            inner.map.remove(key);
        }
    }

    fn insert(&self, meta: Arc<ObjectMeta>) {
        let mut inner = self.lock();
        let n = inner.next;
        inner.next += 1;
        inner.order.push_back((meta.key.clone(), n));
        inner.map.insert(meta.key.clone(), (n, meta));
        while inner.order.len() > RECENT {
            let Some((key, n)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&key).is_some_and(|(m, _)| *m == n) {
                inner.map.remove(&key);
            }
        }
    }
}

/// A row of a listing scan: the key's bytes and, unless asked to leave it
/// out, its metadata.
pub(crate) struct Scanned {
    pub key: Vec<u8>,
    pub meta: Option<ObjectMeta>,
}

fn db_error(err: sqlx::Error) -> io::Error {
    match err {
        sqlx::Error::Io(err) => err,
        other => io::Error::other(other),
    }
}

fn parse(json: &str) -> io::Result<ObjectMeta> {
    serde_json::from_str(json).map_err(io::Error::other)
}

impl Index {
    /// Opens (creating if missing) `path`, repairs it against the data files
    /// under `objects` (see [`repair`]) and starts the writer.
    pub async fn open(path: &Path, objects: &Path, readers: Arc<Readers>) -> io::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a PUT answered 200 must survive power loss, as the data
            // file (fsynced with its directory before the index names it)
            // does. One fsync per batch, see the module header.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .thread_name(|n| format!("s3local-index-{n}"));
        let mut conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(db_error)?;
        prepare_schema(&mut conn).await?;
        repair(&mut conn, objects).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            // A ping per checkout would double the round trips of a lookup;
            // a broken connection fails its query and is dropped anyway.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let recent = Arc::new(Recent::default());
        tokio::spawn(write_loop(
            conn,
            rx,
            objects.to_path_buf(),
            recent.clone(),
            readers,
        ));
        Ok(Self {
            pool,
            writer: tx,
            recent,
        })
    }

    pub async fn get(&self, key: &str) -> io::Result<Option<Arc<ObjectMeta>>> {
        if let Some(meta) = self.recent.get(key) {
            return Ok(Some(meta));
        }
        let json: Option<String> = sqlx::query_scalar("SELECT meta FROM objects WHERE key = ?")
            .bind(key.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(json.as_deref().map(parse).transpose()?.map(Arc::new))
    }

    /// Records `meta` (its data file already durable in place) if `cond`
    /// holds; returns the object it replaced.
    pub async fn put(
        &self,
        meta: ObjectMeta,
        cond: Condition,
    ) -> Result<Option<ObjectMeta>, CommitError> {
        match self
            .send(Change::Put {
                meta: Box::new(meta),
                cond,
            })
            .await?
        {
            Outcome::Put(old) => Ok(old),
            Outcome::Precondition => Err(CommitError::Precondition),
            Outcome::Removed(_) => Err(CommitError::Io(io::Error::other("index: wrong outcome"))),
        }
    }

    /// Forgets `key` (its data file is removed by the writer); returns what
    /// was there.
    pub async fn remove(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        match self
            .send(Change::Remove {
                key: key.to_owned(),
            })
            .await?
        {
            Outcome::Removed(old) => Ok(old),
            _ => Err(io::Error::other("index: wrong outcome")),
        }
    }

    async fn send(&self, change: Change) -> io::Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let stopped = || io::Error::other("the store's index writer has stopped");
        self.writer
            .send(Op { change, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Up to `limit` rows with `from < key` (or `<=` when `inclusive`) and
    /// `key < upper`, in byte order. With `rolled = Some((prefix_len,
    /// delim))`, rows whose key contains `delim` after its first `prefix_len`
    /// bytes come without their metadata: listing only rolls them up into a
    /// common prefix.
    pub async fn scan(
        &self,
        from: &[u8],
        inclusive: bool,
        upper: Option<&[u8]>,
        rolled: Option<(usize, &str)>,
        limit: usize,
    ) -> io::Result<Vec<Scanned>> {
        let lower = if inclusive { ">=" } else { ">" };
        let upper_sql = if upper.is_some() { "AND key < ?" } else { "" };
        let meta_sql = if rolled.is_some() {
            "CASE WHEN instr(substr(key, ? + 1), ?) > 0 THEN NULL ELSE meta END"
        } else {
            "meta"
        };
        let sql = format!(
            "SELECT key, {meta_sql} FROM objects WHERE key {lower} ? {upper_sql} ORDER BY key LIMIT ?"
        );
        let mut q = sqlx::query(&sql);
        if let Some((prefix_len, delim)) = rolled {
            q = q
                .bind(i64::try_from(prefix_len).unwrap_or(i64::MAX))
                .bind(delim.as_bytes());
        }
        q = q.bind(from);
        if let Some(upper) = upper {
            q = q.bind(upper);
        }
        let rows = q
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let key: Vec<u8> = row.try_get(0).map_err(db_error)?;
                let meta: Option<String> = row.try_get(1).map_err(db_error)?;
                Ok(Scanned {
                    key,
                    meta: meta.as_deref().map(parse).transpose()?,
                })
            })
            .collect()
    }
}

async fn prepare_schema(conn: &mut SqliteConnection) -> io::Result<()> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    if version > SCHEMA_VERSION {
        return Err(io::Error::other(format!(
            "the store's index.db has schema {version}, newer than this latchkey knows ({SCHEMA_VERSION})"
        )));
    }
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    sqlx::raw_sql(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Makes the index agree with the files, one fan-out folder at a time (so
/// memory is bounded by one folder's names, about 1/256 of the objects):
///
/// - a row whose data file is missing is dropped: the index never names an
///   object that cannot be read;
/// - a data file no row names is deleted: what a crash between moving the
///   data into place and committing its row leaves, or a replaced file whose
///   removal did not happen;
/// - a `<hash>.json` sidecar (the layout before this index) is imported and
///   removed; data next to an unreadable one is kept for a human to look at.
async fn repair(conn: &mut SqliteConnection, objects: &Path) -> io::Result<()> {
    let root = objects.to_path_buf();
    let mut names: Vec<String> = blocking(move || {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    })
    .await?;
    // Every folder a data name can map to, present or not: rows pointing
    // into a folder that is gone must go too.
    names.extend((0..=255u8).map(|b| format!("{b:02x}")));
    names.sort();
    names.dedup();
    let (mut dropped, mut orphans, mut imported) = (0usize, 0usize, 0usize);
    for name in names {
        let dir = objects.join(&name);
        let scan_dir = dir.clone();
        let mut listing = blocking(move || read_fanout(&scan_dir)).await?;
        if !listing.sidecars.is_empty() {
            imported += import_sidecars(conn, &mut listing).await?;
        }
        // Data names start with the key's hash, whose first two digits name
        // the folder; a file in the wrong folder is unreferenced.
        let referenced: Vec<String> =
            sqlx::query_scalar("SELECT data FROM objects WHERE data >= ? AND data < ?")
                .bind(name.as_str())
                .bind(format!("{name}\u{7f}"))
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?;
        let missing: Vec<&String> = referenced
            .iter()
            .filter(|d| !listing.data.contains(d.as_str()))
            .collect();
        if !missing.is_empty() {
            let mut tx = conn.begin().await.map_err(db_error)?;
            for data in &missing {
                tracing::warn!(file = %data, "the store's index named a missing data file; dropping the object");
                sqlx::query("DELETE FROM objects WHERE data = ?")
                    .bind(data.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)?;
            dropped += missing.len();
        }
        let referenced: HashSet<String> = referenced.into_iter().collect();
        let unreadable = listing.unreadable;
        let remove: Vec<PathBuf> = listing
            .data
            .into_iter()
            .filter(|n| {
                !referenced.contains(n) && !unreadable.iter().any(|h| n.starts_with(h.as_str()))
            })
            .map(|n| dir.join(n))
            .collect();
        if remove.is_empty() {
            continue;
        }
        orphans += remove.len();
        blocking(move || {
            for path in remove {
                tracing::info!(file = %path.display(), "removing orphaned data file");
                let _ = pieces::remove_data(&path);
            }
            Ok(())
        })
        .await?;
    }
    tracing::debug!(dropped, orphans, imported, "local store index checked");
    Ok(())
}

/// What one fan-out folder holds.
struct Fanout {
    dir: PathBuf,
    /// Every file that is not a sidecar, and every folder of pieces: data,
    /// named or not.
    data: HashSet<String>,
    /// `<hash>.json` files of the old layout.
    sidecars: Vec<String>,
    /// `<hash>.` of sidecars that could not be imported.
    unreadable: Vec<String>,
}

fn read_fanout(dir: &Path) -> io::Result<Fanout> {
    let mut out = Fanout {
        dir: dir.to_path_buf(),
        data: HashSet::new(),
        sidecars: Vec::new(),
        unreadable: Vec::new(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(kind.is_file() || kind.is_dir() && pieces::is_folder(&name)) {
            continue;
        }
        if name.ends_with(".json") {
            out.sidecars.push(name);
        } else {
            out.data.insert(name);
        }
    }
    Ok(out)
}

/// Imports the sidecars of one folder (the layout before this index) and
/// removes them once their rows are committed. Returns how many it imported;
/// the ones it could not are noted in `listing.unreadable`.
async fn import_sidecars(conn: &mut SqliteConnection, listing: &mut Fanout) -> io::Result<usize> {
    let mut metas = Vec::new();
    let mut done = Vec::new();
    for name in &listing.sidecars {
        let hash = name.trim_end_matches(".json");
        let path = listing.dir.join(name);
        let read = std::fs::read(&path)
            .and_then(|b| serde_json::from_slice::<ObjectMeta>(&b).map_err(io::Error::other));
        match read {
            Ok(meta)
                if crate::disk::key_hash(&meta.key) == hash
                    && listing.data.contains(&meta.data) =>
            {
                metas.push(meta);
                done.push(path);
            }
            Ok(_) => {
                tracing::warn!(file = %path.display(), "skipping a sidecar whose key or data file does not match");
                listing.unreadable.push(format!("{hash}."));
            }
            Err(err) => {
                tracing::warn!(file = %path.display(), %err, "skipping unreadable object sidecar");
                listing.unreadable.push(format!("{hash}."));
            }
        }
    }
    let mut tx = conn.begin().await.map_err(db_error)?;
    for meta in &metas {
        let json = serde_json::to_string(meta).map_err(io::Error::other)?;
        // A row already there was written by this index, after the sidecar.
        sqlx::query(
            "INSERT INTO objects (key, data, meta) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(meta.key.as_bytes())
        .bind(meta.data.as_str())
        .bind(json)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    blocking(move || {
        for path in done {
            std::fs::remove_file(path)?;
        }
        Ok(())
    })
    .await?;
    Ok(metas.len())
}

async fn write_loop(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Op>,
    objects: PathBuf,
    recent: Arc<Recent>,
    readers: Arc<Readers>,
) {
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let changes: Vec<&Change> = batch.iter().map(|op| &op.change).collect();
        let result = apply(&mut conn, &changes, &recent).await;
        let mut stale: Vec<PathBuf> = Vec::new();
        match result {
            Ok(outcomes) => {
                for (op, outcome) in batch.drain(..).zip(outcomes) {
                    match (&op.change, &outcome) {
                        (Change::Put { meta, .. }, Outcome::Put(old)) => {
                            recent.insert(Arc::new((**meta).clone()));
                            if let Some(old) = old {
                                stale.push(fanout_dir(&objects, &old.data).join(&old.data));
                            }
                        }
                        (_, Outcome::Removed(Some(old))) => {
                            stale.push(fanout_dir(&objects, &old.data).join(&old.data));
                        }
                        (Change::Put { meta, .. }, Outcome::Precondition) => {
                            stale.push(fanout_dir(&objects, &meta.data).join(&meta.data));
                        }
                        _ => {}
                    }
                    let _ = op.reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                // The batch rolled back (or its commit's fate is unknown):
                // leave the new data files to the repair at the next open,
                // which deletes them only if no row names them.
                tracing::error!(%err, "the store's index could not commit a batch");
                let kind = err.kind();
                let text = err.to_string();
                for op in batch.drain(..) {
                    let _ = op.reply.send(Err(io::Error::new(kind, text.clone())));
                }
            }
        }
        if !stale.is_empty() {
            // Readers that already opened a replaced file keep reading it
            // (unlink semantics), and a folder of pieces waits for its
            // readers; a failed removal leaves an orphan that the next
            // open's repair deletes.
            let readers = readers.clone();
            tokio::task::spawn_blocking(move || {
                for path in stale {
                    if path
                        .file_name()
                        .is_some_and(|n| pieces::is_folder(&n.to_string_lossy()))
                    {
                        readers.remove(&path);
                    } else if let Err(err) = std::fs::remove_file(&path)
                        && err.kind() != io::ErrorKind::NotFound
                    {
                        tracing::warn!(%err, "could not remove a replaced data file");
                    }
                }
            });
        }
    }
}

fn key_of(change: &Change) -> &str {
    match change {
        Change::Put { meta, .. } => meta.key.as_str(),
        Change::Remove { key } => key.as_str(),
    }
}

async fn apply(
    conn: &mut SqliteConnection,
    changes: &[&Change],
    recent: &Recent,
) -> io::Result<Vec<Outcome>> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let mut outcomes = Vec::with_capacity(changes.len());
    for change in changes {
        let key = key_of(change);
        if let Change::Put {
            meta,
            cond: Condition::IfNoneMatchAny,
        } = change
        {
            // Create-only, as the broker's grants write: one statement, no read.
            let json = serde_json::to_string(meta).map_err(io::Error::other)?;
            let done = sqlx::query(
                "INSERT INTO objects (key, data, meta) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key.as_bytes())
            .bind(meta.data.as_str())
            .bind(json)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            outcomes.push(if done.rows_affected() == 1 {
                Outcome::Put(None)
            } else {
                Outcome::Precondition
            });
            continue;
        }
        let current: Option<String> = sqlx::query_scalar("SELECT meta FROM objects WHERE key = ?")
            .bind(key.as_bytes())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let current = current.as_deref().map(parse).transpose()?;
        let outcome = match change {
            Change::Put { meta, cond } => {
                if cond.check(current.as_ref()) {
                    let json = serde_json::to_string(meta).map_err(io::Error::other)?;
                    sqlx::query(
                        "INSERT INTO objects (key, data, meta) VALUES (?, ?, ?) \
                         ON CONFLICT (key) DO UPDATE SET data = excluded.data, meta = excluded.meta",
                    )
                    .bind(key.as_bytes())
                    .bind(meta.data.as_str())
                    .bind(json)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    Outcome::Put(current)
                } else {
                    Outcome::Precondition
                }
            }
            Change::Remove { .. } => {
                if current.is_some() {
                    sqlx::query("DELETE FROM objects WHERE key = ?")
                        .bind(key.as_bytes())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                }
                Outcome::Removed(current)
            }
        };
        outcomes.push(outcome);
    }
    // Before the commit makes the new versions visible, so a cached old
    // version is never served after the index already answers the new one.
    recent.forget(changes.iter().map(|c| key_of(c)));
    tx.commit().await.map_err(db_error)?;
    Ok(outcomes)
}
