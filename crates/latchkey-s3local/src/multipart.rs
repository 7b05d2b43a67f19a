//! Multipart uploads: create, upload part, list parts, complete, abort, list
//! uploads.
//!
//! Each upload is a folder `uploads/<upload-id>/` holding `upload.json` (key,
//! headers, metadata) and, per part, `<n>.json` naming an immutable
//! `<n>.<uuid>.part` file (re-uploading a part swaps the JSON atomically, as
//! objects do). Completing links the parts into a folder of pieces (see
//! `pieces`), then commits it like a PUT, so no byte is copied; parts that
//! arrived in order were already hashed into the object's SHA-256
//! (`chain`). The ETag is the usual md5-of-part-md5s with a `-N` suffix.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use md5::Md5;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, ETag,
    Initiator, Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::{S3Result, TrailingHeaders, s3_error};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;
use crate::backend::{Backend, owner, write_condition};
use crate::disk::{Attrs, Disk, ObjectMeta, Staged, blocking, now_ms, sync_dir, write_synced};
use crate::ingest::{self, Claims, internal};

mod chain;
mod listing;
use chain::{Chain, Chains};
pub(crate) use listing::{list_parts, list_uploads};

/// S3's minimum size for every part but the last.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
const MAX_LISTED: i32 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadMeta {
    key: String,
    upload_id: String,
    initiated_ms: i64,
    attrs: Attrs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartMeta {
    number: i32,
    data: String,
    size: u64,
    etag: String,
    last_modified_ms: i64,
    /// Hex SHA-256 of the part's bytes, hashed as they arrived when the
    /// client claimed one (older builds hashed every part): a one-part
    /// upload then completes without reading them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

type UploadMap = BTreeMap<(String, String), Arc<UploadMeta>>;

/// Uploads in progress, mirrored in memory for listing and lookups. Unlike
/// the object index this stays in memory: it holds only uploads not yet
/// completed or aborted (the broker's sweeper aborts expired ones), not the
/// bucket's objects.
pub(crate) struct Uploads {
    dir: PathBuf,
    map: RwLock<UploadMap>,
    chains: Chains,
}

fn ms_to_ts(ms: i64) -> Timestamp {
    Timestamp::from(
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

fn no_such_upload() -> s3s::S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

fn initiator() -> Initiator {
    let o = owner();
    Initiator {
        display_name: o.display_name,
        id: o.id,
    }
}

impl Uploads {
    /// Loads the uploads a previous run left. Folders without a readable
    /// `upload.json` (a crash during create) or with a part whose bytes are
    /// gone (a crash while an earlier version removed a completed upload)
    /// are removed: neither could ever complete.
    pub async fn open(disk: &Disk) -> Result<Self, Error> {
        let dir = disk.uploads_dir().to_path_buf();
        let scan = dir.clone();
        let map = blocking(move || {
            let mut map = UploadMap::new();
            for entry in std::fs::read_dir(&scan)? {
                let path = entry?.path();
                let meta = std::fs::read(path.join("upload.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<UploadMeta>(&b).ok());
                let whole = meta.is_some() && parts_are_whole(&path);
                match meta {
                    Some(m) if whole => {
                        map.insert((m.key.clone(), m.upload_id.clone()), Arc::new(m));
                    }
                    _ => {
                        tracing::info!(dir = %path.display(), "removing a half-created or half-removed multipart upload");
                        let _ = std::fs::remove_dir_all(&path);
                    }
                }
            }
            Ok(map)
        })
        .await
        .map_err(Error::io("loading multipart uploads"))?;
        Ok(Self {
            dir,
            map: RwLock::new(map),
            chains: Chains::default(),
        })
    }

    fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.dir.join(upload_id)
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, UploadMap> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn map_mut(&self) -> std::sync::RwLockWriteGuard<'_, UploadMap> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &str, upload_id: &str) -> S3Result<Arc<UploadMeta>> {
        self.map()
            .get(&(key.to_owned(), upload_id.to_owned()))
            .cloned()
            .ok_or_else(no_such_upload)
    }

    fn take(&self, key: &str, upload_id: &str) -> S3Result<Arc<UploadMeta>> {
        self.map_mut()
            .remove(&(key.to_owned(), upload_id.to_owned()))
            .ok_or_else(no_such_upload)
    }

    fn put_back(&self, meta: Arc<UploadMeta>) {
        self.map_mut()
            .insert((meta.key.clone(), meta.upload_id.clone()), meta);
    }
}

/// Whether every part's JSON names a data file that is there. Part data is
/// moved in before its JSON, so only an interrupted removal breaks this.
fn parts_are_whole(dir: &Path) -> bool {
    read_parts(dir).is_ok_and(|parts| parts.values().all(|p| dir.join(&p.data).is_file()))
}

/// Removes a completed or aborted upload's folder in one step: it is renamed
/// into `tmp/` (wiped at every open) and only then deleted, so a crash in the
/// middle cannot leave an `upload.json` whose parts are half gone, which
/// would come back at the next start as an upload that can never complete.
/// No fsync: a journaling file system replays metadata changes in order, so
/// after a power loss either the rename happened (and the folder is in
/// `tmp/`) or nothing did (and the whole folder is back, still complete).
fn discard(dir: &Path, trash: &Path) -> io::Result<()> {
    std::fs::rename(dir, trash)?;
    std::fs::remove_dir_all(trash)
}

fn read_parts(dir: &Path) -> io::Result<BTreeMap<i32, PartMeta>> {
    let mut parts = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_part_json = path.extension().is_some_and(|e| e == "json")
            && path.file_stem().is_some_and(|s| s != "upload");
        if !is_part_json {
            continue;
        }
        if let Ok(part) = serde_json::from_slice::<PartMeta>(&std::fs::read(&path)?) {
            parts.insert(part.number, part);
        }
    }
    Ok(parts)
}

async fn load_parts(backend: &Backend, upload_id: &str) -> S3Result<BTreeMap<i32, PartMeta>> {
    let dir = backend.uploads.upload_dir(upload_id);
    blocking(move || read_parts(&dir)).await.map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            no_such_upload()
        } else {
            internal(err)
        }
    })
}

pub(crate) async fn create(
    backend: &Backend,
    input: CreateMultipartUploadInput,
) -> S3Result<CreateMultipartUploadOutput> {
    crate::access::refuse_acl(
        input.acl.as_ref(),
        [
            input.grant_full_control.as_ref(),
            input.grant_read.as_ref(),
            input.grant_read_acp.as_ref(),
            input.grant_write_acp.as_ref(),
        ],
    )?;
    if input.sse_customer_algorithm.is_some()
        || input.ssekms_key_id.is_some()
        || input.object_lock_mode.is_some()
        || input.object_lock_legal_hold_status.is_some()
    {
        return Err(s3_error!(
            NotImplemented,
            "Encryption with customer keys and object lock are not supported by this store."
        ));
    }
    let upload_id = Uuid::new_v4().simple().to_string();
    let meta = UploadMeta {
        key: input.key.clone(),
        upload_id: upload_id.clone(),
        initiated_ms: now_ms(),
        attrs: Attrs {
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            metadata: input.metadata.unwrap_or_default().into_iter().collect(),
        },
    };
    let dir = backend.uploads.upload_dir(&upload_id);
    let json = serde_json::to_vec(&meta).map_err(internal)?;
    let root = backend.uploads.dir.clone();
    blocking(move || {
        std::fs::create_dir(&dir)?;
        write_synced(&dir.join("upload.json"), &json)?;
        sync_dir(&dir)?;
        sync_dir(&root)
    })
    .await
    .map_err(internal)?;
    backend.uploads.put_back(Arc::new(meta));
    backend.uploads.chains.start(&upload_id);
    Ok(CreateMultipartUploadOutput {
        bucket: Some(backend.bucket.clone()),
        key: Some(input.key),
        upload_id: Some(upload_id),
        ..Default::default()
    })
}

pub(crate) async fn upload_part(
    backend: &Backend,
    input: UploadPartInput,
    trailers: Option<TrailingHeaders>,
) -> S3Result<UploadPartOutput> {
    if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    backend.uploads.get(&input.key, &input.upload_id)?;
    let claims = Claims {
        content_length: input.content_length,
        content_md5: input.content_md5,
        sha256: input.checksum_sha256,
        crc32: input.checksum_crc32,
        crc32c: input.checksum_crc32c,
        crc64nvme: input.checksum_crc64nvme,
        sha1: input.checksum_sha1,
        algorithm: input.checksum_algorithm,
    };
    let chain = backend
        .uploads
        .chains
        .next(&input.upload_id, input.part_number);
    let mut got = ingest::receive(
        &backend.disk,
        input.body,
        claims,
        trailers,
        ingest::Sha256Need::Part { chain },
    )
    .await?;
    let part = PartMeta {
        number: input.part_number,
        data: format!("{}.{}.part", input.part_number, Uuid::new_v4().simple()),
        size: got.size,
        etag: got.md5_hex(),
        last_modified_ms: now_ms(),
        sha256: got.sha256_hex(),
    };
    let dir = backend.uploads.upload_dir(&input.upload_id);
    let json = serde_json::to_vec(&part).map_err(internal)?;
    let tmp_json = backend.disk.temp_path();
    let src = got.staged.path().to_path_buf();
    let data = part.data.clone();
    let number = part.number;
    blocking(move || {
        let old = std::fs::read(dir.join(format!("{number}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice::<PartMeta>(&b).ok());
        std::fs::rename(&src, dir.join(&data))?;
        write_synced(&tmp_json, &json)?;
        std::fs::rename(&tmp_json, dir.join(format!("{number}.json")))?;
        sync_dir(&dir)?;
        if let Some(old) = old {
            let _ = std::fs::remove_file(dir.join(old.data));
        }
        Ok(())
    })
    .await
    .map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            // Aborted or completed while this part was arriving.
            no_such_upload()
        } else {
            internal(err)
        }
    })?;
    if let Some(chained) = got.chain.take() {
        backend
            .uploads
            .chains
            .extend(&input.upload_id, part.number, &part.data, chained);
    }
    let c = &got.checksums;
    let output = UploadPartOutput {
        e_tag: Some(ETag::Strong(part.etag)),
        checksum_crc32: c.crc32.clone(),
        checksum_crc32c: c.crc32c.clone(),
        checksum_crc64nvme: c.crc64nvme.clone(),
        checksum_sha1: c.sha1.clone(),
        ..Default::default()
    };
    got.staged.disarm();
    Ok(output)
}

/// Checks the client's part list against what was uploaded; returns the
/// parts in order.
fn chosen_parts(
    input: &CompleteMultipartUploadInput,
    uploaded: &BTreeMap<i32, PartMeta>,
) -> S3Result<Vec<PartMeta>> {
    let requested = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.as_ref())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| s3_error!(MalformedXML, "You must specify at least one part."))?;
    let mut chosen: Vec<PartMeta> = Vec::with_capacity(requested.len());
    for p in requested {
        let number = p
            .part_number
            .ok_or_else(|| s3_error!(MalformedXML, "Every part needs a PartNumber."))?;
        if chosen.last().is_some_and(|prev| prev.number >= number) {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number."
            ));
        }
        let invalid = || {
            s3_error!(
                InvalidPart,
                "One or more of the specified parts could not be found or its entity tag did not match."
            )
        };
        let stored = uploaded.get(&number).ok_or_else(invalid)?;
        let etag = p.e_tag.as_ref().ok_or_else(invalid)?;
        if etag.value().trim_matches('"') != stored.etag {
            return Err(invalid());
        }
        chosen.push(stored.clone());
    }
    if chosen[..chosen.len() - 1]
        .iter()
        .any(|p| p.size < MIN_PART_SIZE)
    {
        return Err(s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size."
        ));
    }
    Ok(chosen)
}

/// The object a completed upload becomes, in `out`.
struct Assembled {
    size: u64,
    sha256: String,
    /// The pieces' sizes when `out` is a folder of them.
    pieces: Vec<u64>,
}

/// Makes `out` the object's bytes from its parts, by hard links: part
/// files are immutable and already fsynced, and the upload's folder goes
/// once the object is committed. One part becomes the object's data file;
/// several become a folder of pieces. The SHA-256 continues `chain` (the
/// parts hashed as they arrived) over the parts it does not cover, or is
/// the one a single part was given. Where hard links fail, the parts are
/// concatenated into one file.
fn assemble(
    dir: &Path,
    parts: &[PartMeta],
    out: &Path,
    chain: Option<Chain>,
) -> io::Result<Assembled> {
    let files: Vec<PathBuf> = parts.iter().map(|p| dir.join(&p.data)).collect();
    let size = parts.iter().map(|p| p.size).sum();
    let linked = match parts {
        [_] => std::fs::hard_link(&files[0], out).is_ok(),
        _ => crate::pieces::make_folder(files.iter().cloned(), out, |from, to| {
            std::fs::hard_link(from, to)
        })
        .is_ok(),
    };
    if linked {
        let sha256 = match parts {
            [
                PartMeta {
                    sha256: Some(known),
                    ..
                },
            ] => known.clone(),
            _ => {
                let (sha, covered) = chain.and_then(|c| c.covering(parts)).unwrap_or_default();
                hex::encode(copy_hashing(&files[covered..], None, sha)?.finalize())
            }
        };
        let pieces = if parts.len() > 1 {
            parts.iter().map(|p| p.size).collect()
        } else {
            Vec::new()
        };
        return Ok(Assembled {
            size,
            sha256,
            pieces,
        });
    }
    let _ = crate::pieces::remove_data(out);
    let mut file = std::fs::File::create(out)?;
    let sha = copy_hashing(&files, Some(&mut file), Sha256::new())?;
    file.sync_all()?;
    Ok(Assembled {
        size,
        sha256: hex::encode(sha.finalize()),
        pieces: Vec::new(),
    })
}

/// Reads `files` in order into `sha`, copying them to `out` if given.
fn copy_hashing(
    files: &[PathBuf],
    mut out: Option<&mut std::fs::File>,
    mut sha: Sha256,
) -> io::Result<Sha256> {
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut src = std::fs::File::open(path)?;
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            if let Some(out) = out.as_deref_mut() {
                out.write_all(&buf[..n])?;
            }
        }
    }
    Ok(sha)
}

fn multipart_etag(parts: &[PartMeta]) -> String {
    let mut md5 = Md5::new();
    for p in parts {
        md5.update(hex::decode(&p.etag).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(md5.finalize()), parts.len())
}

pub(crate) async fn complete(
    backend: &Backend,
    input: CompleteMultipartUploadInput,
) -> S3Result<CompleteMultipartUploadOutput> {
    let cond = write_condition(input.if_none_match.as_ref(), input.if_match.as_ref())?;
    // Taking the upload out of the map makes a concurrent complete, abort or
    // part upload see NoSuchUpload instead of racing this one.
    let upload = backend.uploads.take(&input.key, &input.upload_id)?;
    let result = finish(backend, &upload, &input, &cond).await;
    match result {
        Ok(meta) => {
            backend.uploads.chains.forget(&upload.upload_id);
            let dir = backend.uploads.upload_dir(&upload.upload_id);
            let trash = backend.disk.temp_path();
            if let Err(err) = blocking(move || discard(&dir, &trash)).await {
                tracing::warn!(%err, "could not remove a completed upload's parts");
            }
            Ok(CompleteMultipartUploadOutput {
                bucket: Some(backend.bucket.clone()),
                key: Some(meta.key.clone()),
                e_tag: Some(ETag::Strong(meta.etag.clone())),
                ..Default::default()
            })
        }
        Err(err) => {
            backend.uploads.put_back(upload);
            Err(err)
        }
    }
}

async fn finish(
    backend: &Backend,
    upload: &UploadMeta,
    input: &CompleteMultipartUploadInput,
    cond: &crate::disk::Condition,
) -> S3Result<Arc<ObjectMeta>> {
    let existing = backend.disk.get(&upload.key).await.map_err(internal)?;
    if !cond.check(existing.as_deref()) {
        return Err(crate::backend::precondition_error(cond, existing.is_some()));
    }
    let uploaded = load_parts(backend, &upload.upload_id).await?;
    let parts = chosen_parts(input, &uploaded)?;
    let staged = Staged::new(backend.disk.temp_path());
    let dir = backend.uploads.upload_dir(&upload.upload_id);
    let out = staged.path().to_path_buf();
    let etag = multipart_etag(&parts);
    let count = parts.len();
    let chain = backend.uploads.chains.get(&upload.upload_id);
    let assembled = blocking(move || assemble(&dir, &parts, &out, chain))
        .await
        .map_err(internal)?;
    let meta = ObjectMeta {
        key: upload.key.clone(),
        data: String::new(),
        size: assembled.size,
        etag,
        sha256: assembled.sha256,
        checksums: Default::default(),
        attrs: upload.attrs.clone(),
        last_modified_ms: now_ms(),
        parts_count: u32::try_from(count).ok(),
        pieces: assembled.pieces,
    };
    backend.commit(staged, meta, cond).await
}

pub(crate) async fn abort(
    backend: &Backend,
    input: AbortMultipartUploadInput,
) -> S3Result<AbortMultipartUploadOutput> {
    let upload = backend.uploads.take(&input.key, &input.upload_id)?;
    backend.uploads.chains.forget(&upload.upload_id);
    let dir = backend.uploads.upload_dir(&upload.upload_id);
    let trash = backend.disk.temp_path();
    blocking(move || discard(&dir, &trash))
        .await
        .map_err(internal)?;
    Ok(AbortMultipartUploadOutput::default())
}
