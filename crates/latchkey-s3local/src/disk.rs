//! Where objects live on disk, how a write becomes visible atomically, and the
//! in-memory index that listing reads.
//!
//! Layout under the root folder:
//!
//! ```text
//! bucket.json                      creation time of the one bucket
//! tmp/<uuid>                       bodies being received; wiped at open
//! objects/<hh>/<h>.json            sidecar: key, size, etag, sha256, headers, metadata
//! objects/<hh>/<h>.<uuid>.data     the bytes the sidecar points at
//! uploads/<upload-id>/...          multipart uploads in progress (see `multipart`)
//! ```
//!
//! `h` is the hex sha256 of the key and `hh` its first two digits. Keys never
//! become paths, so `../x`, both `a` and `a/b`, unicode and 1024-byte keys are
//! all just names in a JSON file. Data files get a fresh name per write and are
//! immutable, which makes a commit one atomic rename of the sidecar, lets
//! readers keep streaming an old version while it is replaced, and lets
//! `CopyObject` hard-link instead of copying bytes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;

/// Everything known about one stored object; also the sidecar's JSON shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectMeta {
    pub key: String,
    /// File name of the data file in the same fan-out folder as the sidecar.
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

/// A write's precondition, checked under the commit lock so two racing
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

/// A temp file holding a body that is not (yet) an object. Removed on drop
/// unless committed, so every error path cleans up after itself.
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
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

type Index = BTreeMap<String, Arc<ObjectMeta>>;

pub(crate) struct Disk {
    objects: PathBuf,
    tmp: PathBuf,
    uploads: PathBuf,
    bucket_created: OffsetDateTime,
    index: RwLock<Index>,
    /// Serialises commits and removals: precondition check, renames and
    /// index update happen as one step.
    commit_lock: tokio::sync::Mutex<()>,
}

pub(crate) fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
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
        let (objects, tmp, uploads, bucket_created, index) = blocking(move || {
            for dir in [&root, &objects, &tmp, &uploads] {
                std::fs::create_dir_all(dir)?;
            }
            clear_dir(&tmp)?;
            let created = bucket_created(&root)?;
            let index = load_index(&objects)?;
            Ok((objects, tmp, uploads, created, index))
        })
        .await
        .map_err(Error::io("opening the data folder"))?;
        tracing::debug!(objects = index.len(), "local store index loaded");
        Ok(Self {
            objects,
            tmp,
            uploads,
            bucket_created,
            index: RwLock::new(index),
            commit_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn bucket_created(&self) -> OffsetDateTime {
        self.bucket_created
    }

    pub fn uploads_dir(&self) -> &Path {
        &self.uploads
    }

    /// A fresh temp path on the same filesystem as the objects, so the final
    /// move is a rename.
    pub fn temp_path(&self) -> PathBuf {
        self.tmp.join(Uuid::new_v4().simple().to_string())
    }

    pub fn get(&self, key: &str) -> Option<Arc<ObjectMeta>> {
        self.read_index().get(key).cloned()
    }

    pub fn data_path(&self, meta: &ObjectMeta) -> PathBuf {
        self.fanout_dir(&meta.data).join(&meta.data)
    }

    /// Runs `f` over the sorted index (for listing) without copying it.
    pub fn with_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.read_index())
    }

    /// Moves a fully received, fsynced temp file into place as `meta.key`.
    /// `meta.data` is assigned here.
    pub async fn commit(
        &self,
        staged: Staged,
        mut meta: ObjectMeta,
        cond: &Condition,
    ) -> Result<Arc<ObjectMeta>, CommitError> {
        let _guard = self.commit_lock.lock().await;
        let old = self.get(&meta.key);
        if !cond.check(old.as_deref()) {
            return Err(CommitError::Precondition);
        }
        let hash = key_hash(&meta.key);
        meta.data = format!("{hash}.{}.data", Uuid::new_v4().simple());
        let dir = self.fanout_dir(&hash);
        let data_path = dir.join(&meta.data);
        let sidecar = dir.join(format!("{hash}.json"));
        let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        let tmp_json = self.temp_path();
        let src = staged.path().to_path_buf();
        blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::rename(&src, &data_path)?;
            let written = write_synced(&tmp_json, &json).and_then(|()| {
                std::fs::rename(&tmp_json, &sidecar)?;
                sync_dir(&dir)
            });
            if written.is_err() {
                // The old sidecar (if any) still names the old data; drop ours.
                let _ = std::fs::remove_file(&tmp_json);
                let _ = std::fs::remove_file(&data_path);
            }
            written
        })
        .await?;
        staged.disarm();
        let meta = Arc::new(meta);
        self.write_index().insert(meta.key.clone(), meta.clone());
        if let Some(old) = old {
            self.remove_data_later(&old);
        }
        Ok(meta)
    }

    /// Removes `key`; `None` when it did not exist.
    pub async fn remove(&self, key: &str) -> io::Result<Option<Arc<ObjectMeta>>> {
        let _guard = self.commit_lock.lock().await;
        let Some(old) = self.get(key) else {
            return Ok(None);
        };
        let hash = key_hash(key);
        let dir = self.fanout_dir(&hash);
        blocking(move || {
            match std::fs::remove_file(dir.join(format!("{hash}.json"))) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
            sync_dir(&dir)
        })
        .await?;
        self.write_index().remove(key);
        self.remove_data_later(&old);
        Ok(Some(old))
    }

    /// A new temp file with the same bytes as `src`: a hard link when the
    /// filesystem allows (data files are immutable), else a copy.
    pub async fn clone_data(&self, src: &ObjectMeta) -> io::Result<Staged> {
        let from = self.data_path(src);
        let staged = Staged::new(self.temp_path());
        let to = staged.path().to_path_buf();
        blocking(move || {
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)?;
                std::fs::File::open(&to)?.sync_all()?;
            }
            Ok(())
        })
        .await?;
        Ok(staged)
    }

    fn remove_data_later(&self, old: &ObjectMeta) {
        // Readers that already opened the old file keep reading it (unlink
        // semantics); a failed removal only leaves an orphan swept at open.
        let path = self.data_path(old);
        tokio::task::spawn_blocking(move || {
            if let Err(err) = std::fs::remove_file(&path)
                && err.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(%err, "could not remove a replaced data file");
            }
        });
    }

    fn fanout_dir(&self, name: &str) -> PathBuf {
        self.objects.join(name.get(..2).unwrap_or("00"))
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        // A panic while holding the lock cannot leave the map half-updated
        // (single insert/remove), so a poisoned lock is still usable.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }
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

/// Reads every sidecar, and deletes data files no sidecar names (left by a
/// crash between moving the data and writing the sidecar).
fn load_index(objects: &Path) -> io::Result<Index> {
    let mut index = Index::new();
    for dir in std::fs::read_dir(objects)? {
        let dir = dir?;
        if !dir.file_type()?.is_dir() {
            continue;
        }
        let mut data_files = Vec::new();
        let mut referenced = std::collections::HashSet::new();
        let mut unreadable = Vec::new();
        for entry in std::fs::read_dir(dir.path())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hash) = name.strip_suffix(".json") else {
                data_files.push(name);
                continue;
            };
            match read_sidecar(&entry.path(), hash, &dir.path()) {
                Ok(meta) => {
                    referenced.insert(meta.data.clone());
                    index.insert(meta.key.clone(), Arc::new(meta));
                }
                Err(err) => {
                    tracing::warn!(file = %entry.path().display(), %err, "skipping unreadable object sidecar");
                    unreadable.push(format!("{hash}."));
                }
            }
        }
        // Data next to an unreadable sidecar is kept for a human to look at.
        let orphans = data_files.iter().filter(|n| {
            !referenced.contains(*n) && !unreadable.iter().any(|h| n.starts_with(h.as_str()))
        });
        for name in orphans {
            tracing::info!(file = %name, "removing orphaned data file");
            let _ = std::fs::remove_file(dir.path().join(name));
        }
    }
    Ok(index)
}

fn read_sidecar(path: &Path, hash: &str, dir: &Path) -> io::Result<ObjectMeta> {
    let meta: ObjectMeta =
        serde_json::from_slice(&std::fs::read(path)?).map_err(io::Error::other)?;
    if key_hash(&meta.key) != hash {
        return Err(io::Error::other("sidecar key does not match its file name"));
    }
    if !dir.join(&meta.data).is_file() {
        return Err(io::Error::other("sidecar names a missing data file"));
    }
    Ok(meta)
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
