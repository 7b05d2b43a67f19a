//! `proxy`: the client PUTs its bytes to the broker
//! (`PUT /v1/uploads/{id}/content`, bearer token and all) and the broker
//! streams them on to the store: one streamed PutObject up to
//! `limits.proxy_single_put_max`, a multipart upload above it. The broker is
//! the enforcer here, while the bytes flow: the declared length (never a
//! byte more), the declared type, and the SHA-256 computed on the fly.
//! Memory stays bounded whatever the size: chunks pass straight through on
//! the single PUT, and the multipart path holds at most two parts (one
//! filling, one in flight).

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use latchkey_domain::{ContentType, Mode, Sha256Digest, Upload, UploadStatus, UserId};
use latchkey_ledger::Changes;
use latchkey_store::{ByteBody, Part};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::multipart::{layout, part_len};
use crate::broker::grant::{Grant, upload_target};
use crate::broker::{commit_upload, get_owned};
use crate::error::ApiError;
use crate::state::AppState;

pub fn grant(state: &AppState, upload: &Upload) -> Result<Grant, ApiError> {
    let url = format!(
        "{}/v1/uploads/{}/content",
        state.public_url.trim_end_matches('/'),
        upload.id
    );
    Ok(Grant {
        method: "PUT",
        url,
        headers: vec![
            ("content-type".into(), upload.content_type.to_string()),
            ("content-length".into(), upload.size.to_string()),
        ],
        expires_at: Some(upload.expires_at),
        ..Grant::default()
    })
}

/// A proxied request body and the headers that describe it.
pub struct ProxyBody {
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub body: BoxStream<'static, Result<Bytes, io::Error>>,
}

/// What the meter saw of the body: bytes counted and, when the upload
/// declared a SHA-256 that the store will not check itself, hashed as they
/// pass (nothing else reads the hash, and it was ~8% of the server CPU of a
/// proxied 64 MiB upload).
struct Seen {
    bytes: u64,
    hasher: Option<Sha256>,
    too_large: bool,
    /// The client's body failed (it broke off), as opposed to the broker
    /// stopping reading because the store refused.
    broken: bool,
}

#[derive(Clone)]
struct Meter {
    limit: u64,
    seen: Arc<Mutex<Seen>>,
}

impl Meter {
    fn new(limit: u64, hash: bool) -> Self {
        Self {
            limit,
            seen: Arc::new(Mutex::new(Seen {
                bytes: 0,
                hasher: hash.then(Sha256::new),
                too_large: false,
                broken: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts and hashes one chunk; refuses the one that goes past the limit.
    fn pass(&self, chunk: &Bytes) -> Result<(), io::Error> {
        let mut seen = self.lock();
        seen.bytes += chunk.len() as u64;
        if seen.bytes > self.limit {
            seen.too_large = true;
            return Err(io::Error::other("more bytes than declared"));
        }
        if let Some(hasher) = &mut seen.hasher {
            hasher.update(chunk);
        }
        Ok(())
    }

    fn broke(&self) {
        self.lock().broken = true;
    }

    fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn too_large(&self) -> bool {
        self.lock().too_large
    }

    /// Whether the body was hashed and its SHA-256 is not `want`. A body
    /// not hashed here (the store checks it) is never found wrong here.
    fn digest_differs(&self, want: Sha256Digest) -> bool {
        self.lock()
            .hasher
            .clone()
            .is_some_and(|h| Sha256Digest::from_bytes(h.finalize().into()) != want)
    }

    /// Why the body stopped short of a complete upload, when the broker
    /// itself stopped it or the client broke off.
    fn failure(&self, declared: u64) -> Option<ApiError> {
        if self.too_large() {
            return Some(too_large(declared));
        }
        let seen = self.lock();
        let got = seen.bytes;
        (seen.broken && got < declared).then(|| {
            ApiError::InvalidRequest(format!(
                "the body ended after {got} of the {declared} declared bytes"
            ))
        })
    }
}

fn too_large(declared: u64) -> ApiError {
    ApiError::BodyTooLarge(format!(
        "the upload declared {declared} bytes; the body is longer"
    ))
}

/// Checks the request's headers against the row before a byte is read.
fn check_headers(upload: &Upload, body: &ProxyBody) -> Result<(), ApiError> {
    let declared = upload.size;
    match body.content_length {
        None => {
            return Err(ApiError::LengthRequired(format!(
                "send Content-Length: {declared} (the declared size)"
            )));
        }
        Some(n) if n > declared => return Err(too_large(declared)),
        Some(n) if n < declared => {
            return Err(ApiError::InvalidRequest(format!(
                "Content-Length is {n}; the upload declared {declared} bytes"
            )));
        }
        Some(_) => {}
    }
    let sent = body
        .content_type
        .as_deref()
        .and_then(|t| ContentType::parse(t).ok());
    if sent.as_ref() != Some(&upload.content_type) {
        return Err(ApiError::BodyTypeMismatch(format!(
            "send Content-Type: {} (the declared type)",
            upload.content_type
        )));
    }
    Ok(())
}

/// `PUT /v1/uploads/{id}/content`: streams the body to the store, then
/// commits through `commit_upload`. A pending upload stays pending when the
/// body breaks off, so the client can send it again; bytes that break the
/// declaration (too many, another SHA-256) reject it.
pub async fn receive(
    state: &AppState,
    user: &UserId,
    id: &str,
    body: ProxyBody,
) -> Result<Upload, ApiError> {
    let upload = get_owned(state, user, id).await?;
    if upload.mode != Mode::Proxy {
        return Err(ApiError::InvalidState(format!(
            "upload {} is a {} upload; only proxy uploads take their bytes here",
            upload.id, upload.mode
        )));
    }
    if upload.status != UploadStatus::Pending {
        return Err(ApiError::InvalidState(format!(
            "the upload is {}",
            upload.status
        )));
    }
    if OffsetDateTime::now_utc() >= upload.expires_at {
        return Err(ApiError::Expired("the grant has expired".into()));
    }
    check_headers(&upload, &body)?;

    let single = upload.size <= state.limits.proxy_single_put_max;
    // A single PUT carries the declared SHA-256 to a store that checks it
    // (`single_put`), which then refuses a wrong body itself: hashing it
    // here too would only repeat the store's work.
    let store_checks = single && state.store.capabilities().checksum_sha256;
    let meter = Meter::new(upload.size, upload.sha256.is_some() && !store_checks);
    let metered = meter.clone();
    let declared = upload.size;
    let stream: ByteBody = body
        .body
        .map({
            let metered = metered.clone();
            move |chunk| {
                let chunk = chunk.inspect_err(|_| metered.broke())?;
                metered.pass(&chunk)?;
                Ok(chunk)
            }
        })
        // A body that ends short of its Content-Length is broken too (hyper
        // normally reports that as an error itself).
        .chain(stream::poll_fn(move |_| {
            if metered.bytes() < declared {
                metered.broke();
            }
            std::task::Poll::Ready(None)
        }))
        .boxed();
    let target = upload_target(state, &upload);
    let sent = if single {
        single_put(state, &upload, stream).await
    } else {
        multipart_put(state, &upload, stream, &meter)
            .await
            .map_err(Sent::Other)
    };
    if let Err(e) = sent {
        if let Some(why) = meter.failure(upload.size) {
            if matches!(why, ApiError::BodyTooLarge(_)) {
                // Whatever reached the store is not the declared object.
                let _ = state.store.delete(&target).await;
            }
            return Err(why);
        }
        // The store refused the complete body. A wrong SHA-256 is the one
        // reason the broker can name: the store said so, or the broker's
        // own hash (where it hashed) shows it.
        let wrong_digest = match &e {
            Sent::WrongDigest(_) => true,
            Sent::Other(_) => upload.sha256.is_some_and(|want| meter.digest_differs(want)),
        };
        if meter.bytes() == upload.size && wrong_digest {
            return Err(reject_checksum(state, &upload).await);
        }
        return Err(match e {
            Sent::WrongDigest(e) | Sent::Other(e) => e,
        });
    }
    if upload.sha256.is_some_and(|want| meter.digest_differs(want)) {
        return Err(reject_checksum(state, &upload).await);
    }
    commit_upload(state, upload).await
}

/// The row is rejected and the object removed; the answer is 409.
async fn reject_checksum(state: &AppState, upload: &Upload) -> ApiError {
    let changes = Changes {
        reason: Some("checksum_mismatch".into()),
        ..Changes::default()
    };
    let moved = state
        .ledger
        .transition(
            upload.id,
            UploadStatus::Pending,
            UploadStatus::Rejected,
            &changes,
            OffsetDateTime::now_utc(),
        )
        .await;
    if let Err(e) = state.store.delete(&upload_target(state, upload)).await {
        tracing::warn!(upload = %upload.id, error = %e, "removing a rejected proxied object failed");
    }
    match moved {
        Err(e) => e.into(),
        Ok(_) => ApiError::ChecksumMismatch(
            "the body's sha256 is not the declared one; the upload was rejected".into(),
        ),
    }
}

/// Why sending the body to the store failed.
enum Sent {
    /// The store refused the body for not matching the SHA-256 sent with it.
    WrongDigest(ApiError),
    Other(ApiError),
}

async fn single_put(state: &AppState, upload: &Upload, body: ByteBody) -> Result<(), Sent> {
    // The store checks the declared SHA-256 too where it can, so a wrong
    // body is refused before it is ever stored.
    let sha256 = upload
        .sha256
        .filter(|_| state.store.capabilities().checksum_sha256);
    let put = state
        .store
        .put_stream(
            &upload_target(state, upload),
            upload.content_type.as_str(),
            upload.size,
            sha256,
            body,
        )
        .await;
    match put {
        Ok(_) => Ok(()),
        Err(e) if sha256.is_some() && e.is_digest_refusal() => Err(Sent::WrongDigest(e.into())),
        Err(e) => Err(Sent::Other(e.into())),
    }
}

/// The body cut into parts of the upload's layout, each sent while the next
/// one fills; the multipart upload is completed only once the whole body
/// arrived with the declared SHA-256, and aborted otherwise.
async fn multipart_put(
    state: &AppState,
    upload: &Upload,
    body: ByteBody,
    meter: &Meter,
) -> Result<(), ApiError> {
    let target = upload_target(state, upload);
    let upload_id = state
        .store
        .create_multipart(&target, upload.content_type.as_str())
        .await?;
    let result = send_parts(state, upload, body, &upload_id).await;
    let parts = match result {
        Ok(parts)
            if meter.bytes() == upload.size
                && upload.sha256.is_none_or(|want| !meter.digest_differs(want)) =>
        {
            parts
        }
        other => {
            if let Err(e) = state.store.abort_multipart(&target, &upload_id).await {
                tracing::warn!(upload = %upload.id, error = %e, "aborting a proxied multipart upload failed");
            }
            return match other {
                Err(e) => Err(e),
                // The caller tells apart a short body and another SHA-256.
                Ok(_) => Err(ApiError::InvalidRequest(
                    "the body does not match its declaration".into(),
                )),
            };
        }
    };
    state
        .store
        .complete_multipart(&target, &upload_id, &parts)
        .await?;
    Ok(())
}

async fn send_parts(
    state: &AppState,
    upload: &Upload,
    mut body: ByteBody,
    upload_id: &str,
) -> Result<Vec<Part>, ApiError> {
    let (part_size, count) = layout(state.limits.part_size, upload.size);
    let target = upload_target(state, upload);
    let mut parts = Vec::with_capacity(count as usize);
    let mut in_flight: Option<tokio::task::JoinHandle<Result<Part, ApiError>>> = None;
    // hyper's chunks do not follow part boundaries: what overflows one part
    // starts the next.
    let mut leftover: Option<Bytes> = None;
    let read_error = |e: io::Error| ApiError::InvalidRequest(format!("reading the body: {e}"));
    let outcome: Result<(), ApiError> = async {
        for number in 1..=count {
            let want = part_len(upload.size, part_size, count, number) as usize;
            let mut buf = BytesMut::with_capacity(want);
            while buf.len() < want {
                let mut chunk = match leftover.take() {
                    Some(c) => c,
                    None => match body.next().await {
                        Some(c) => c.map_err(read_error)?,
                        None => break,
                    },
                };
                let room = want - buf.len();
                if chunk.len() > room {
                    leftover = Some(chunk.split_off(room));
                }
                buf.extend_from_slice(&chunk);
            }
            if buf.len() < want {
                return Ok(());
            }
            if let Some(prev) = in_flight.take() {
                parts.push(join(prev).await?);
            }
            let store = state.store.clone();
            let (key, id) = (target.clone(), upload_id.to_owned());
            let bytes = buf.freeze();
            in_flight = Some(tokio::spawn(async move {
                let len = bytes.len() as u64;
                let one: ByteBody = stream::once(async move { Ok(bytes) }).boxed();
                let etag = store.upload_part(&key, &id, number, len, one).await?;
                Ok(Part {
                    number,
                    size: len,
                    etag,
                })
            }));
        }
        if let Some(prev) = in_flight.take() {
            parts.push(join(prev).await?);
        }
        // The meter refuses a byte past the declared size; reading on
        // makes it see one.
        if leftover.is_none()
            && let Some(extra) = body.next().await
        {
            extra.map_err(read_error)?;
        }
        Ok(())
    }
    .await;
    if let Some(task) = in_flight {
        task.abort();
    }
    outcome.map(|()| parts)
}

async fn join(task: tokio::task::JoinHandle<Result<Part, ApiError>>) -> Result<Part, ApiError> {
    task.await
        .map_err(|e| ApiError::Internal(format!("part upload task: {e}")))?
}
