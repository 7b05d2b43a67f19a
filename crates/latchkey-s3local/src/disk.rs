//! Where objects live on disk and how a write becomes visible atomically.
//!
//! Layout under the root folder:
//!
//! ```text
//! bucket.json                      creation time of the one bucket
//! index.db (+ -wal, -shm)          key → metadata and data file name (see `index`)
//! tmp/<uuid>                       bodies being received; wiped at open
//! objects/<hh>/<h>.<uuid>.data     an object's bytes
//! objects/<hh>/<h>.<uuid>.parts/   or its pieces, after multipart (see `pieces`)
//! uploads/<upload-id>/...          multipart uploads in progress (see `multipart`)
//! ```
//!
//! `h` is the hex sha256 of the key and `hh` its first two digits. Keys never
//! become paths, so `../x`, both `a` and `a/b`, unicode and 1024-byte keys are
//! all just values in the index. Data files get a fresh name per write and
//! are immutable, which makes a commit "move the fsynced file into place,
//! fsync its folder, then commit the index row that names it": the row is the
//! commit point, so the index never names bytes that are not durably there,
//! readers keep streaming an old version while it is replaced, and
//! `CopyObject` can hard-link instead of copying bytes. A crash between the
//! two steps leaves only a data file no row names, which the next open
//! deletes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;
use crate::index::Index;
use crate::pieces::{FOLDER_SUFFIX, Lease, Readers, make_folder, piece_name, remove_data};

/// Everything known about one stored object; also the JSON the index stores
/// (and the shape of the per-object sidecars of the layout before it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectMeta {
    pub key: String,
    /// File name of the data file, in the fan-out folder of the key's hash.
    #[serde(default)]
    pub data: String,
    pub size: u64,
    /// Unquoted: md5 hex for a single PUT, `md5-of-md5s-N` after multipart.
    pub etag: String,
    /// Hex sha256 of the whole object, kept for every object so
    /// `x-amz-checksum-mode: ENABLED` can always be answered.
    pub sha256: String,
    #[serde(default)]
    pub checksums: Checksums,
    #[serde(default)]
    pub attrs: Attrs,
    pub last_modified_ms: i64,
    #[serde(default)]
    pub parts_count: Option<u32>,
    /// Sizes of the pieces when `data` names a folder of them (a multipart
    /// upload kept as its parts, see `pieces`); empty for a data file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<u64>,
}

impl ObjectMeta {
    pub fn last_modified(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.last_modified_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Other checksums a client supplied and we verified (base64, as on the wire).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Checksums {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
}

/// The headers an object is stored with and returned with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Attrs {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// A write's precondition, checked inside the index's commit so two racing
/// conditional writes cannot both succeed.
#[derive(Debug, Clone, Default)]
pub(crate) enum Condition {
    #[default]
    None,
    /// `If-None-Match: *`: only create.
    IfNoneMatchAny,
    /// `If-Match: "<etag>"` (or `*`, then `None` etag): only replace.
    IfMatch(Option<String>),
}

impl Condition {
    pub fn check(&self, current: Option<&ObjectMeta>) -> bool {
        match (self, current) {
            (Condition::None, _) => true,
            (Condition::IfNoneMatchAny, cur) => cur.is_none(),
            (Condition::IfMatch(_), None) => false,
            (Condition::IfMatch(None), Some(_)) => true,
            (Condition::IfMatch(Some(etag)), Some(cur)) => cur.etag == *etag,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    #[error("precondition failed")]
    Precondition,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A temp file (or a folder of pieces) holding a body that is not (yet) an
/// object. Removed on drop unless committed, so every error path cleans up
/// after itself.
#[derive(Debug)]
pub(crate) struct Staged {
    path: PathBuf,
    armed: bool,
}

impl Staged {
    pub fn new(path: PathBuf) -> Self {
        Self { path, armed: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file was moved elsewhere; nothing left to clean.
    pub fn disarm(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.path)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.armed {
            let _ = remove_data(&self.path);
        }
    }
}

pub(crate) struct Disk {
    objects: PathBuf,
    tmp: PathBuf,
    uploads: PathBuf,
    bucket_created: OffsetDateTime,
    index: Index,
    readers: Arc<Readers>,
}

pub(crate) fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The fan-out folder under `objects` for a key hash or a data file name
/// (which starts with the hash).
pub(crate) fn fanout_dir(objects: &Path, name: &str) -> PathBuf {
    objects.join(name.get(..2).unwrap_or("00"))
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Makes a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

impl Disk {
    pub async fn open(root: PathBuf) -> Result<Self, Error> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        let uploads = root.join("uploads");
        let index_path = root.join("index.db");
        let (objects, tmp, uploads, bucket_created) = blocking(move || {
            for dir in [&root, &objects, &tmp, &uploads] {
                std::fs::create_dir_all(dir)?;
            }
            clear_dir(&tmp)?;
            let created = bucket_created(&root)?;
            Ok((objects, tmp, uploads, created))
        })
        .await
        .map_err(Error::io("opening the data folder"))?;
        let readers = Readers::new(tmp.clone());
        let index = Index::open(&index_path, &objects, readers.clone())
            .await
            .map_err(Error::io("opening the object index"))?;
        Ok(Self {
            objects,
            tmp,
            uploads,
            bucket_created,
            index,
            readers,
        })
    }

    pub fn bucket_created(&self) -> OffsetDateTime {
        self.bucket_created
    }

    pub fn uploads_dir(&self) -> &Path {
        &self.uploads
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// A fresh temp path on the same filesystem as the objects, so the final
    /// move is a rename.
    pub fn temp_path(&self) -> PathBuf {
        self.tmp.join(Uuid::new_v4().simple().to_string())
    }

    pub async fn get(&self, key: &str) -> io::Result<Option<Arc<ObjectMeta>>> {
        self.index.get(key).await
    }

    pub fn data_path(&self, meta: &ObjectMeta) -> PathBuf {
        fanout_dir(&self.objects, &meta.data).join(&meta.data)
    }

    /// Keeps a folder object's pieces in place while they are read. `None`
    /// when the folder is gone (the object was replaced or deleted after
    /// `meta` was looked up).
    pub async fn enter(&self, meta: &ObjectMeta) -> io::Result<Option<Lease>> {
        let lease = self.readers.enter(self.data_path(meta));
        match tokio::fs::metadata(lease.folder()).await {
            Ok(_) => Ok(Some(lease)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Moves a fully received, fsynced temp file into place as `meta.key`.
    /// `meta.data` is assigned here.
    pub async fn commit(
        &self,
        staged: Staged,
        mut meta: ObjectMeta,
        cond: &Condition,
    ) -> Result<Arc<ObjectMeta>, CommitError> {
        let hash = key_hash(&meta.key);
        let suffix = if meta.pieces.is_empty() {
            ".data"
        } else {
            FOLDER_SUFFIX
        };
        meta.data = format!("{hash}.{}{suffix}", Uuid::new_v4().simple());
        let dir = fanout_dir(&self.objects, &hash);
        let data_path = dir.join(&meta.data);
        let objects = self.objects.clone();
        let src = staged.path().to_path_buf();
        // No lock: the name is new, so moving it in races nothing. The
        // folder fsync makes the move durable before any row names it.
        blocking(move || {
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir)?;
                sync_dir(&objects)?;
            }
            std::fs::rename(&src, &data_path)?;
            sync_dir(&dir).inspect_err(|_| {
                let _ = remove_data(&data_path);
            })
        })
        .await?;
        // From here the file belongs to the index: the writer removes it if
        // the precondition fails, the next open's repair if nothing names it.
        staged.disarm();
        self.index.put(meta.clone(), cond.clone()).await?;
        Ok(Arc::new(meta))
    }

    /// Removes `key`; `None` when it did not exist.
    pub async fn remove(&self, key: &str) -> io::Result<Option<Arc<ObjectMeta>>> {
        Ok(self.index.remove(key).await?.map(Arc::new))
    }

    /// A new temp file (or folder of pieces) with the same bytes as `src`:
    /// hard links when the filesystem allows (data files and pieces are
    /// immutable), else copies.
    pub async fn clone_data(&self, src: &ObjectMeta) -> io::Result<Staged> {
        let staged = Staged::new(self.temp_path());
        let to = staged.path().to_path_buf();
        if src.pieces.is_empty() {
            let from = self.data_path(src);
            blocking(move || link_or_copy(&from, &to)).await?;
            return Ok(staged);
        }
        let lease = self
            .enter(src)
            .await?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let count = src.pieces.len();
        blocking(move || {
            let sources = (0..count).map(|index| lease.folder().join(piece_name(index)));
            make_folder(sources, &to, link_or_copy)
        })
        .await?;
        Ok(staged)
    }
}

fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)?;
        std::fs::File::open(to)?.sync_all()?;
    }
    Ok(())
}

/// Bodies of at least this many bytes leave the page cache once written
/// (see [`drop_from_cache`]). Below it are photos and other small objects,
/// which the photo pipeline and downloads read back soon; above it, parts
/// of multipart and tus uploads and large objects.
pub(crate) const UNCACHED_FROM: u64 = 4 << 20;

/// Asks the kernel to drop `file`'s pages from the page cache. Call it after
/// `sync_all`: only clean pages are dropped.
///
/// Why: an upload is written once and read, if ever, much later. Kept in
/// the cache, every large body grows it by its size, which evicts what is
/// read often (the ledger, small objects) and makes each write fill pages
/// the kernel has to find first. On the benchmark VM, filling never-used
/// memory cost ~10× filling pages just freed (`docs/BENCHMARKS.md`, "tus:
/// where a 64 MiB upload's CPU goes"). In fair A/B pairs (session 10), a
/// 64 MiB tus upload cost ~10% less server CPU with this, and one through
/// @tus/server into this store ~14% less. MinIO keeps large writes out of the cache too
/// (O_DIRECT). The cost: reading such an object right after writing it
/// reads the disk. Advice only: where it is not supported it does nothing.
pub(crate) fn drop_from_cache(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: posix_fadvise reads no memory of ours; the descriptor is
        // open for as long as `file` is borrowed.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            tracing::debug!(errno = rc, "posix_fadvise(DONTNEED) failed");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Removes everything inside `dir` (temp files of an earlier run).
fn clear_dir(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn bucket_created(root: &Path) -> io::Result<OffsetDateTime> {
    #[derive(Serialize, Deserialize)]
    struct BucketFile {
        created_ms: i64,
    }
    let path = root.join("bucket.json");
    let created_ms = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice::<BucketFile>(&bytes)
                .map_err(io::Error::other)?
                .created_ms
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let created_ms = now_ms();
            let json = serde_json::to_vec(&BucketFile { created_ms }).map_err(io::Error::other)?;
            write_synced(&path, &json)?;
            created_ms
        }
        Err(err) => return Err(err),
    };
    Ok(
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

#[cfg(test)]
mod tests {
    use super::{Condition, ObjectMeta};

    fn meta(etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            data: String::new(),
            size: 0,
            etag: etag.into(),
            sha256: String::new(),
            checksums: Default::default(),
            attrs: Default::default(),
            last_modified_ms: 0,
            parts_count: None,
            pieces: Vec::new(),
        }
    }

    #[test]
    fn write_conditions() {
        let m = meta("abc");
        assert!(Condition::None.check(Some(&m)));
        assert!(Condition::IfNoneMatchAny.check(None));
        assert!(!Condition::IfNoneMatchAny.check(Some(&m)));
        assert!(Condition::IfMatch(Some("abc".into())).check(Some(&m)));
        assert!(!Condition::IfMatch(Some("abd".into())).check(Some(&m)));
        assert!(!Condition::IfMatch(None).check(None));
        assert!(Condition::IfMatch(None).check(Some(&m)));
    }

    #[test]
    fn key_hash_is_a_fixed_width_file_name() {
        for key in ["../x", "a/b", "🐈", &"k".repeat(1024)] {
            let h = super::key_hash(key);
            assert_eq!(h.len(), 64);
            assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
