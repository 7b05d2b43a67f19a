//! Objects kept as their pieces: a multipart upload of several parts
//! completes without copying its bytes into one file.
//!
//! Such an object's data is a folder, `<hash>.<uuid>.parts`, holding its
//! parts' files as `1`, `2`, … (hard links to the part files, which are
//! immutable and already fsynced), and its [`ObjectMeta::pieces`] lists
//! their sizes. The index names the folder as it names a data file, so the
//! commit is the same: the folder is built in `tmp/`, fsynced, moved into
//! place, and only then named by a row.
//!
//! One thing differs from a data file. A reader of a single file keeps
//! reading it after an overwrite unlinks it, because it holds the one open
//! file; a folder's pieces are opened one after the other as a GET goes.
//! So a folder is removed only when no reader is in it: a GET or a copy
//! takes a [`Lease`] first, and a folder the index stopped naming while
//! leased is removed by its last reader. Removal is a rename into `tmp/`
//! (wiped at every open) under the lease table's lock, so a reader sees the
//! folder whole or not at all; a crash before the rename leaves a folder no
//! row names, which the next open's repair deletes.
//!
//! [`ObjectMeta::pieces`]: crate::disk::ObjectMeta::pieces

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

/// The suffix of a data folder's name (a data file's is `.data`).
pub(crate) const FOLDER_SUFFIX: &str = ".parts";

/// Chunk size when streaming a data file or a piece.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// The file name of the piece at `index` (0-based) in its folder.
pub(crate) fn piece_name(index: usize) -> String {
    (index + 1).to_string()
}

pub(crate) fn is_folder(name: &str) -> bool {
    name.ends_with(FOLDER_SUFFIX)
}

/// Removes a data file or a data folder that nothing reads.
pub(crate) fn remove_data(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Makes `out` a new folder holding `sources` as its pieces, in order, and
/// fsyncs it: each piece put there by `place` (a hard link, or a copy
/// where links fail).
pub(crate) fn make_folder(
    sources: impl IntoIterator<Item = PathBuf>,
    out: &Path,
    place: impl Fn(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    std::fs::create_dir(out)?;
    for (index, source) in sources.into_iter().enumerate() {
        place(&source, &out.join(piece_name(index)))?;
    }
    crate::disk::sync_dir(out)
}

/// Who is reading which data folder.
pub(crate) struct Readers {
    /// `tmp/`: where a folder goes to be deleted.
    trash: PathBuf,
    reading: Mutex<HashMap<PathBuf, Reading>>,
}

#[derive(Default)]
struct Reading {
    count: usize,
    /// No row names the folder any more; the last reader removes it.
    doomed: bool,
}

impl Readers {
    pub fn new(trash: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            trash,
            reading: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Reading>> {
        self.reading.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `folder` in place until the lease is dropped. The folder may
    /// already be gone (removed after the caller's index lookup): the
    /// caller checks that it exists after taking the lease.
    pub fn enter(self: &Arc<Self>, folder: PathBuf) -> Lease {
        self.lock().entry(folder.clone()).or_default().count += 1;
        Lease {
            readers: self.clone(),
            folder,
        }
    }

    /// The index no longer names `folder`: removes it now, or when its last
    /// reader leaves. Blocks on the file system; call it off the runtime.
    pub fn remove(&self, folder: &Path) {
        let moved = {
            let mut reading = self.lock();
            match reading.get_mut(folder) {
                Some(r) => {
                    r.doomed = true;
                    None
                }
                None => self.move_to_trash(folder),
            }
        };
        if let Some(trash) = moved {
            delete_trash(&trash);
        }
    }

    /// Called with the table locked, so no reader enters half-way.
    fn move_to_trash(&self, folder: &Path) -> Option<PathBuf> {
        let trash = self.trash.join(Uuid::new_v4().simple().to_string());
        match std::fs::rename(folder, &trash) {
            Ok(()) => Some(trash),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => {
                // Left in place: the next open's repair deletes it, since no
                // row names it.
                tracing::warn!(%err, folder = %folder.display(), "could not remove a replaced data folder");
                None
            }
        }
    }
}

fn delete_trash(trash: &Path) {
    if let Err(err) = std::fs::remove_dir_all(trash) {
        tracing::warn!(%err, "could not delete a removed data folder; the next open clears tmp/");
    }
}

/// A reader's hold on a data folder.
pub(crate) struct Lease {
    readers: Arc<Readers>,
    folder: PathBuf,
}

impl Lease {
    pub fn folder(&self) -> &Path {
        &self.folder
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let moved = {
            let mut reading = self.readers.lock();
            let Some(r) = reading.get_mut(&self.folder) else {
                return;
            };
            r.count -= 1;
            if r.count > 0 {
                return;
            }
            let doomed = r.doomed;
            reading.remove(&self.folder);
            if !doomed {
                return;
            }
            self.readers.move_to_trash(&self.folder)
        };
        // The rename made the folder invisible; deleting its files may take
        // a while, so it goes to a blocking thread when there is a runtime.
        if let Some(trash) = moved {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || delete_trash(&trash))),
                Err(_) => delete_trash(&trash),
            }
        }
    }
}

/// Which bytes of which pieces make up `range` of an object whose pieces
/// have the sizes `pieces`: (piece index, offset in the piece, length).
pub(crate) fn segments(pieces: &[u64], range: Range<u64>) -> Vec<(usize, u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for (index, &size) in pieces.iter().enumerate() {
        let end = start + size;
        let from = range.start.max(start);
        let to = range.end.min(end);
        if from < to {
            out.push((index, from - start, to - from));
        }
        start = end;
    }
    out
}

/// `range` of a folder object, read piece after piece. The lease travels
/// with the stream, so the folder stays until the response is done.
pub(crate) fn stream(
    lease: Lease,
    pieces: &[u64],
    range: Range<u64>,
) -> BoxStream<'static, io::Result<Bytes>> {
    stream::iter(segments(pieces, range))
        .then(move |(index, offset, len)| {
            // The closure owns the lease: it lives as long as the stream.
            let path = lease.folder().join(piece_name(index));
            async move {
                let mut file = tokio::fs::File::open(path).await?;
                if offset > 0 {
                    file.seek(io::SeekFrom::Start(offset)).await?;
                }
                Ok::<_, io::Error>(ReaderStream::with_capacity(file.take(len), READ_CHUNK))
            }
        })
        .try_flatten()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_exactly_the_range() {
        let pieces = [5, 5, 3];
        assert_eq!(segments(&pieces, 0..13), [(0, 0, 5), (1, 0, 5), (2, 0, 3)]);
        assert_eq!(segments(&pieces, 4..6), [(0, 4, 1), (1, 0, 1)]);
        assert_eq!(segments(&pieces, 5..10), [(1, 0, 5)]);
        assert_eq!(segments(&pieces, 12..13), [(2, 2, 1)]);
        assert_eq!(segments(&[5, 0, 3], 3..7), [(0, 3, 2), (2, 0, 2)]);
        assert!(segments(&pieces, 7..7).is_empty());
    }

    /// A store's `tmp/` and a folder `obj.parts` holding `pieces`.
    fn folder_with(pieces: &[&[u8]]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let trash = root.path().join("tmp");
        std::fs::create_dir(&trash).unwrap();
        let folder = root.path().join("obj.parts");
        std::fs::create_dir(&folder).unwrap();
        for (index, bytes) in pieces.iter().enumerate() {
            std::fs::write(folder.join(piece_name(index)), bytes).unwrap();
        }
        (root, trash, folder)
    }

    #[test]
    fn an_unread_folder_is_removed_at_once() {
        let (_root, trash, folder) = folder_with(&[b"ab"]);
        let readers = Readers::new(trash.clone());
        readers.remove(&folder);
        assert!(!folder.exists());
        assert_eq!(std::fs::read_dir(&trash).unwrap().count(), 0);
    }

    #[test]
    fn a_read_folder_stays_until_its_last_reader_leaves() {
        let (_root, trash, folder) = folder_with(&[b"ab"]);
        let readers = Readers::new(trash.clone());
        let first = readers.enter(folder.clone());
        let second = readers.enter(folder.clone());
        readers.remove(&folder);
        drop(first);
        assert!(folder.join("1").is_file(), "a reader is still in it");
        drop(second);
        assert!(!folder.exists());
        assert_eq!(std::fs::read_dir(&trash).unwrap().count(), 0);
        assert!(readers.lock().is_empty());
    }

    #[test]
    fn leaving_a_folder_still_named_keeps_it() {
        let (_root, trash, folder) = folder_with(&[b"ab"]);
        let readers = Readers::new(trash);
        drop(readers.enter(folder.clone()));
        assert!(folder.join("1").is_file());
        assert!(readers.lock().is_empty());
    }

    #[tokio::test]
    async fn a_stream_reads_across_pieces_and_then_lets_go() {
        let (_root, trash, folder) = folder_with(&[b"hello", b" wide", b" world"]);
        let readers = Readers::new(trash);
        let body = stream(readers.enter(folder.clone()), &[5, 5, 6], 3..13);
        // Removed while the response is under way: it still reads whole.
        readers.remove(&folder);
        let chunks: Vec<Bytes> = body.try_collect().await.unwrap();
        assert_eq!(chunks.concat(), b"lo wide wo");
        assert!(!folder.exists(), "the last reader removed it");
    }
}
