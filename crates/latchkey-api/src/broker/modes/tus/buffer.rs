//! The on-disk buffer of a tus upload: the bytes of the one part being
//! filled (below the store's minimum part size, so not yet sendable), in
//! `{buffer_dir}/{upload id}/part-{n}`. Memory never holds a part; disk
//! holds at most one per upload, plus the body of a checksummed PATCH
//! while it is verified. Writes are positional, so a write that finishes
//! late (from a request whose client went away) lands where the same
//! bytes belong and cannot shift what a later request writes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use latchkey_domain::UploadId;
use latchkey_store::ByteBody;
use tokio::io::AsyncReadExt;

/// Chunk size when reading a buffered part or a spooled body back.
const READ_CHUNK: usize = 256 * 1024;

pub struct Buffer {
    dir: PathBuf,
}

impl Buffer {
    pub fn new(root: &Path, id: UploadId) -> Self {
        Self {
            dir: root.join(id.to_string()),
        }
    }

    fn part(&self, n: u32) -> PathBuf {
        self.dir.join(format!("part-{n}"))
    }

    /// Bytes buffered for part `n` (0 when there is no buffer).
    pub async fn len(&self, n: u32) -> u64 {
        tokio::fs::metadata(self.part(n))
            .await
            .map_or(0, |m| m.len())
    }

    /// Writes `bytes` at `pos` of part `n`'s buffer.
    pub async fn write_at(&self, n: u32, pos: u64, bytes: Bytes) -> io::Result<()> {
        let (dir, path) = (self.dir.clone(), self.part(n));
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            std::fs::create_dir_all(&dir)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.write_all_at(&bytes, pos)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The first `len` bytes of part `n`'s buffer, streamed from disk.
    pub async fn body(&self, n: u32, len: u64) -> io::Result<ByteBody> {
        let file = tokio::fs::File::open(self.part(n)).await?;
        Ok(stream_file(file, len))
    }

    pub async fn remove_part(&self, n: u32) {
        let _ = tokio::fs::remove_file(self.part(n)).await;
    }

    /// Everything buffered for the upload (it is finished or gone).
    pub async fn remove_all(&self) {
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }

    /// A fresh file for spooling a checksummed PATCH body.
    pub async fn spool(&self) -> io::Result<(PathBuf, tokio::fs::File)> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let path = self.dir.join(format!("spool-{}", UploadId::new()));
        let file = tokio::fs::File::create(&path).await?;
        Ok((path, file))
    }
}

/// `len` bytes of `file` from its start, in chunks.
pub fn stream_file(file: tokio::fs::File, len: u64) -> ByteBody {
    tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK).boxed()
}

/// Removes the buffers of uploads untouched for longer than `age` (their
/// grants have expired: a live upload's buffer changes with every PATCH).
/// Runs on a blocking thread; errors are only logged.
pub async fn prune(root: PathBuf, age: Duration) {
    let swept = tokio::task::spawn_blocking(move || -> io::Result<usize> {
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(0);
        };
        let cutoff = SystemTime::now() - age;
        let mut removed = 0;
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            let newest = newest_in(&entry.path());
            if stale && newest.is_none_or(|t| t < cutoff) {
                std::fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    })
    .await;
    match swept {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(removed = n, "pruned stale tus buffers"),
        Ok(Err(e)) => tracing::warn!(error = %e, "pruning tus buffers failed"),
        Err(e) => tracing::warn!(error = %e, "pruning tus buffers failed"),
    }
}

/// When the newest file in `dir` was last written.
fn newest_in(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .max()
}
