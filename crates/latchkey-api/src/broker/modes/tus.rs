//! `tus`: a tus 1.0 upload (routes/tus.rs speaks the protocol) is a ledger
//! upload like any other, whose bytes reach the store through the broker.
//! The row is created with an S3 multipart upload (`store_upload_id`), and
//! PATCH bodies are cut into parts of S3's minimum size: the part being
//! filled waits in an on-disk buffer (`buffer.rs`), each full part goes to
//! the store at once, and the last byte completes the multipart upload and
//! commits through the one commit path (`commit_upload`, whose multipart
//! step calls [`assemble`]).
//!
//! The offset a client resumes from is what the store holds (the complete
//! parts, counted from the store's own part list) plus what this
//! instance's buffer holds of the next part. Another broker instance
//! cannot see that buffer, so there the offset is what the store holds,
//! and the client resends the rest of the part: resuming works on any
//! instance, at the cost of at most one part resent.
//!
//! One PATCH writes an upload at a time (`lock.rs`); a second one gets 423.

mod buffer;
mod lock;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use latchkey_domain::{Mode, ObjectKey, Upload, UploadStatus, UserId};
use latchkey_store::ByteBody;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use self::buffer::Buffer;
use self::lock::WriteLock;
pub use self::lock::Writers;
use super::multipart::{MIN_PART_SIZE, layout, part_len};
use crate::broker::create::{NewUpload, insert_upload};
use crate::broker::grant::upload_target;
use crate::broker::{commit_upload, get_owned};
use crate::error::ApiError;
use crate::state::AppState;

/// How often, at most, stale buffers are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What the tus endpoint needs beside the rest of the state.
pub struct TusSettings {
    /// Where part buffers live (`[tus] buffer_dir`).
    pub buffer_dir: PathBuf,
    /// Names this instance in write leases.
    pub instance: String,
    pub writers: Arc<Writers>,
    last_prune: Mutex<Option<Instant>>,
}

impl TusSettings {
    pub fn new(buffer_dir: PathBuf) -> Self {
        Self {
            buffer_dir,
            instance: latchkey_domain::UploadId::new().to_string(),
            writers: Arc::default(),
            last_prune: Mutex::new(None),
        }
    }
}

/// A checksum algorithm of the tus checksum extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

/// The `Upload-Checksum` of one PATCH body.
#[derive(Clone, Debug)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

/// A creation request, parsed from its headers.
pub struct NewTusUpload {
    pub profile: Option<String>,
    pub filename: String,
    pub content_type: Option<String>,
    pub length: u64,
    pub metadata: BTreeMap<String, String>,
}

/// One PATCH (or the body of a creation-with-upload).
pub struct Patch {
    pub offset: u64,
    pub content_length: Option<u64>,
    pub checksum: Option<Checksum>,
    pub body: ByteBody,
}

/// Where an upload stands.
pub struct Progress {
    pub upload: Upload,
    pub offset: u64,
}

/// The largest upload any profile allowing tus takes (`Tus-Max-Size`).
pub fn max_size(state: &AppState) -> u64 {
    state
        .profiles
        .values()
        .filter(|p| p.allows_mode(Mode::Tus))
        .map(|p| p.max_bytes.0)
        .max()
        .unwrap_or(0)
}

fn part_layout(upload: &Upload) -> (u64, u32) {
    layout(MIN_PART_SIZE, upload.size)
}

fn store_upload_id(upload: &Upload) -> Result<&str, ApiError> {
    upload.store_upload_id.as_deref().ok_or_else(|| {
        ApiError::Internal(format!("tus upload {} has no store upload id", upload.id))
    })
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("tus buffer: {e}"))
}

/// Creates the row (and its multipart upload, in `modes::prepare`), then
/// writes the body that came with the creation, if any. An empty upload
/// is complete at once, and committed (tus clients send no PATCH for it).
pub async fn create(
    state: &AppState,
    user: &UserId,
    new: NewTusUpload,
    patch: Option<Patch>,
) -> Result<Progress, ApiError> {
    let upload = create_row(state, user, new).await?;
    match patch {
        Some(patch) => write_row(state, upload, patch).await,
        None if upload.size == 0 => {
            let patch = Patch {
                offset: 0,
                content_length: Some(0),
                checksum: None,
                body: futures::stream::empty().boxed(),
            };
            write_row(state, upload, patch).await
        }
        None => Ok(Progress { upload, offset: 0 }),
    }
}

async fn create_row(
    state: &AppState,
    user: &UserId,
    new: NewTusUpload,
) -> Result<Upload, ApiError> {
    maybe_prune(state);
    let req = NewUpload {
        profile: new.profile,
        filename: new.filename,
        content_type: new
            .content_type
            .unwrap_or_else(|| "application/octet-stream".into()),
        size: new.length,
        sha256: None,
        mode: Some(Mode::Tus.to_string()),
        metadata: new.metadata,
        idempotency_key: None,
    };
    insert_upload(state, user, req).await.map_err(|e| match e {
        // tus answers an upload over the limit with 413.
        ApiError::TooLarge(why) => ApiError::BodyTooLarge(why),
        other => other,
    })
}

/// A tus upload of the caller's that can still be read: finished ones
/// report their full length, cancelled ones are gone.
async fn tus_row(state: &AppState, user: &UserId, id: &str) -> Result<Upload, ApiError> {
    let upload = get_owned(state, user, id).await?;
    if upload.mode != Mode::Tus {
        return Err(ApiError::NotFound);
    }
    match upload.status {
        UploadStatus::Pending if OffsetDateTime::now_utc() >= upload.expires_at => {
            Err(ApiError::Expired("the upload has expired".into()))
        }
        UploadStatus::Pending | UploadStatus::Committed | UploadStatus::Processing => Ok(upload),
        UploadStatus::Expired => Err(ApiError::Expired("the upload has expired".into())),
        UploadStatus::Rejected => Err(ApiError::InvalidState("the upload was rejected".into())),
        UploadStatus::Aborted | UploadStatus::Deleted => Err(ApiError::NotFound),
    }
}

/// The part being filled and what the store and the buffer hold.
struct Writer<'a> {
    state: &'a AppState,
    upload: &'a Upload,
    buffer: Buffer,
    target: ObjectKey,
    store_upload_id: String,
    part_size: u64,
    count: u32,
    /// The part being filled (1-based); `count + 1` once every part is in
    /// the store.
    number: u32,
    /// Bytes of part `number` in the buffer.
    filled: u64,
}

impl<'a> Writer<'a> {
    /// Reads where the upload stands from the store and the buffer.
    async fn open(state: &'a AppState, upload: &'a Upload) -> Result<Writer<'a>, ApiError> {
        let (part_size, count) = part_layout(upload);
        let mut w = Writer {
            state,
            upload,
            buffer: Buffer::new(&state.tus.buffer_dir, upload.id),
            target: upload_target(state, upload),
            store_upload_id: store_upload_id(upload)?.to_owned(),
            part_size,
            count,
            number: 1,
            filled: 0,
        };
        let held = state
            .store
            .list_parts(&w.target, &w.store_upload_id)
            .await?;
        let Some(held) = held else {
            // Completed already (a writer stopped between completing and
            // committing), or aborted.
            return match state.store.head(&w.target).await? {
                Some(meta) if meta.size == upload.size => {
                    w.number = count + 1;
                    Ok(w)
                }
                _ => Err(ApiError::Expired(
                    "the store no longer holds this upload".into(),
                )),
            };
        };
        while w.number <= count
            && held
                .iter()
                .any(|p| p.number == w.number && p.size == w.want() && w.want() > 0)
        {
            w.number += 1;
        }
        if w.number > 1 {
            // What another instance sent on meanwhile makes this one's
            // older buffer stale.
            w.buffer.remove_part(w.number - 1).await;
        }
        if w.number <= count {
            w.filled = w.buffer.len(w.number).await.min(w.want());
        }
        Ok(w)
    }

    fn want(&self) -> u64 {
        part_len(self.upload.size, self.part_size, self.count, self.number)
    }

    fn offset(&self) -> u64 {
        (u64::from(self.number - 1) * self.part_size).min(self.upload.size) + self.filled
    }

    fn too_large(&self) -> ApiError {
        ApiError::BodyTooLarge(format!(
            "the upload is {} bytes long; the body goes past its end",
            self.upload.size
        ))
    }

    /// Buffers a chunk, sending each part to the store as it fills.
    async fn push(&mut self, mut chunk: Bytes) -> Result<(), ApiError> {
        while !chunk.is_empty() {
            if self.number > self.count {
                return Err(self.too_large());
            }
            let take = (self.want() - self.filled).min(chunk.len() as u64) as usize;
            let head = chunk.split_to(take);
            self.buffer
                .write_at(self.number, self.filled, head)
                .await
                .map_err(io_error)?;
            self.filled += take as u64;
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the buffered part when it is full.
    async fn flush(&mut self) -> Result<(), ApiError> {
        if self.number > self.count || self.want() == 0 || self.filled < self.want() {
            return Ok(());
        }
        let body = self
            .buffer
            .body(self.number, self.filled)
            .await
            .map_err(io_error)?;
        self.state
            .store
            .upload_part(
                &self.target,
                &self.store_upload_id,
                self.number,
                self.filled,
                body,
            )
            .await?;
        self.buffer.remove_part(self.number).await;
        self.number += 1;
        self.filled = 0;
        Ok(())
    }

    /// Every byte is there: complete and commit.
    async fn finish(mut self) -> Result<Progress, ApiError> {
        self.flush().await?;
        let row = commit_upload(self.state, self.upload.clone()).await?;
        self.buffer.remove_all().await;
        Ok(Progress {
            upload: row,
            offset: self.upload.size,
        })
    }

    fn done(&self) -> bool {
        self.offset() == self.upload.size
    }
}

/// `HEAD`: the offset to resume from. An upload that has every byte but
/// was not committed (its writer stopped in between) is finished here,
/// since a client told "complete" sends nothing more.
pub async fn status(state: &AppState, user: &UserId, id: &str) -> Result<Progress, ApiError> {
    let upload = tus_row(state, user, id).await?;
    if upload.status != UploadStatus::Pending {
        let offset = upload.size;
        return Ok(Progress { upload, offset });
    }
    let w = Writer::open(state, &upload).await?;
    let offset = w.offset();
    if w.done()
        && let Ok(lock) = WriteLock::acquire(state, upload.id).await
    {
        let finished = w.finish().await;
        lock.release().await;
        return finished;
    }
    Ok(Progress { upload, offset })
}

/// `PATCH`: appends the body at `patch.offset`.
pub async fn write(
    state: &AppState,
    user: &UserId,
    id: &str,
    patch: Patch,
) -> Result<Progress, ApiError> {
    let upload = tus_row(state, user, id).await?;
    write_row(state, upload, patch).await
}

/// Appends to a row already loaded (creation-with-upload passes the row it
/// just made).
pub async fn write_row(
    state: &AppState,
    upload: Upload,
    patch: Patch,
) -> Result<Progress, ApiError> {
    if upload.status != UploadStatus::Pending {
        // Finished: only an empty PATCH at the end agrees with it.
        if patch.offset != upload.size {
            return Err(offset_mismatch(upload.size));
        }
        if patch.content_length.is_some_and(|n| n > 0) {
            return Err(ApiError::BodyTooLarge("the upload is complete".into()));
        }
        let offset = upload.size;
        return Ok(Progress { upload, offset });
    }
    let mut lock = WriteLock::acquire(state, upload.id).await?;
    let result = write_locked(state, &upload, patch, &mut lock).await;
    lock.release().await;
    result
}

fn offset_mismatch(at: u64) -> ApiError {
    ApiError::OffsetMismatch(format!("the upload is at offset {at}"))
}

async fn write_locked(
    state: &AppState,
    upload: &Upload,
    patch: Patch,
    lock: &mut WriteLock,
) -> Result<Progress, ApiError> {
    let mut w = Writer::open(state, upload).await?;
    if patch.offset != w.offset() {
        return Err(offset_mismatch(w.offset()));
    }
    if patch
        .content_length
        .is_some_and(|n| w.offset() + n > upload.size)
    {
        return Err(w.too_large());
    }
    // A full part whose send was interrupted goes first.
    w.flush().await?;
    let Patch {
        checksum, mut body, ..
    } = patch;
    match checksum {
        None => {
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else {
                    // The client broke off: what arrived is kept, and the
                    // offset tells the client where to resume.
                    return Err(ApiError::InvalidRequest(format!(
                        "the body broke off; resume at offset {}",
                        w.offset()
                    )));
                };
                w.push(chunk).await?;
                lock.renew().await?;
            }
        }
        Some(sum) => {
            let (path, spooled) = spool(&w, body, lock).await?;
            let verified = verify(&sum, &spooled);
            let replay = async {
                verified?;
                let file = tokio::fs::File::open(&path).await.map_err(io_error)?;
                let mut chunks = buffer::stream_file(file, spooled.len);
                while let Some(chunk) = chunks.next().await {
                    w.push(chunk.map_err(io_error)?).await?;
                    lock.renew().await?;
                }
                Ok::<_, ApiError>(())
            }
            .await;
            let _ = tokio::fs::remove_file(&path).await;
            replay?;
        }
    }
    if w.done() {
        return w.finish().await;
    }
    let offset = w.offset();
    Ok(Progress {
        upload: upload.clone(),
        offset,
    })
}

/// A checksummed body, written aside and hashed: none of it counts until
/// it is verified whole.
struct Spooled {
    len: u64,
    sha1: Sha1,
    sha256: Sha256,
}

async fn spool(
    w: &Writer<'_>,
    mut body: ByteBody,
    lock: &mut WriteLock,
) -> Result<(PathBuf, Spooled), ApiError> {
    let (path, mut file) = w.buffer.spool().await.map_err(io_error)?;
    let room = w.upload.size - w.offset();
    let mut s = Spooled {
        len: 0,
        sha1: Sha1::new(),
        sha256: Sha256::new(),
    };
    let outcome = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| {
                ApiError::InvalidRequest(
                    "the body broke off; a checksummed body counts only whole".into(),
                )
            })?;
            s.len += chunk.len() as u64;
            if s.len > room {
                return Err(w.too_large());
            }
            s.sha1.update(&chunk);
            s.sha256.update(&chunk);
            file.write_all(&chunk).await.map_err(io_error)?;
            lock.renew().await?;
        }
        file.flush().await.map_err(io_error)
    }
    .await;
    drop(file);
    match outcome {
        Ok(()) => Ok((path, s)),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(e)
        }
    }
}

fn verify(sum: &Checksum, spooled: &Spooled) -> Result<(), ApiError> {
    let got: Vec<u8> = match sum.algorithm {
        Algorithm::Sha1 => spooled.sha1.clone().finalize().to_vec(),
        Algorithm::Sha256 => spooled.sha256.clone().finalize().to_vec(),
    };
    if got != sum.digest {
        return Err(ApiError::BodyChecksumMismatch(
            "the body does not match its Upload-Checksum; it was discarded".into(),
        ));
    }
    Ok(())
}

/// `DELETE` (termination): the upload is aborted (its multipart upload
/// with it) or, when finished, deleted.
pub async fn terminate(state: &AppState, user: &UserId, id: &str) -> Result<(), ApiError> {
    let upload = get_owned(state, user, id).await?;
    if upload.mode != Mode::Tus
        || matches!(
            upload.status,
            UploadStatus::Aborted | UploadStatus::Deleted | UploadStatus::Expired
        )
    {
        return Err(ApiError::NotFound);
    }
    crate::broker::delete(state, user, id).await?;
    Buffer::new(&state.tus.buffer_dir, upload.id)
        .remove_all()
        .await;
    Ok(())
}

/// The tus step of `commit_upload`: completes the multipart upload once
/// the store holds every part (a part missing is `parts_incomplete`, and
/// the row stays pending). An empty upload has no parts: its object is
/// written directly.
pub async fn assemble(state: &AppState, upload: &Upload) -> Result<(), ApiError> {
    let target = upload_target(state, upload);
    let upload_id = store_upload_id(upload)?;
    if upload.size == 0 {
        if state.store.head(&target).await?.is_none() {
            state
                .store
                .put_bytes(&target, upload.content_type.as_str(), Vec::new())
                .await?;
        }
        state.store.abort_multipart(&target, upload_id).await?;
        return Ok(());
    }
    let Some(held) = state.store.list_parts(&target, upload_id).await? else {
        // Completed a moment ago: the HEAD in `commit_upload` decides.
        return Ok(());
    };
    let (part_size, count) = part_layout(upload);
    let mut chosen = Vec::with_capacity(count as usize);
    for n in 1..=count {
        let want = part_len(upload.size, part_size, count, n);
        match held.iter().find(|p| p.number == n && p.size == want) {
            Some(p) => chosen.push(p.clone()),
            None => {
                return Err(ApiError::PartsIncomplete(format!(
                    "the store holds {} of the upload's {count} parts",
                    chosen.len()
                )));
            }
        }
    }
    state
        .store
        .complete_multipart(&target, upload_id, &chosen)
        .await?;
    Ok(())
}

/// Now and then, removes the buffers of uploads that expired elsewhere
/// (on another instance, or while this one was down).
fn maybe_prune(state: &AppState) {
    let due = {
        let mut last = state
            .tus
            .last_prune
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let due = last.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    };
    if !due {
        return;
    }
    let longest = state
        .profiles
        .values()
        .map(|p| p.grant_ttl)
        .max()
        .unwrap_or_default();
    tokio::spawn(buffer::prune(
        state.tus.buffer_dir.clone(),
        longest + Duration::from_secs(3600),
    ));
}
