//! Bodies written by the broker that runs this store, without HTTP.
//!
//! Why: in the `tus` and `proxy` modes the broker streams every byte of an
//! upload into the store, as one `PutObject` or as multipart parts. When
//! the store is the embedded one, in the same process, going through the S3
//! client meant a loopback HTTP hop per body: the SDK's body wrappers and
//! signing, hyper on the client's side and on the store's, and s3s parsing
//! it back. A profile of a tus upload put that at about 15% of the broker's
//! CPU. Here a body goes straight to the code the store's `PutObject` and
//! `UploadPart` handlers run, so what is stored, checked, announced (the
//! object events) and answered is the same; only the wire is skipped.
//!
//! What the wire did that this must do too: the body is exactly `length`
//! bytes (hyper refused to send more or fewer), and a body that failed on
//! the broker's side is told apart from a store refusing the part (the S3
//! client reported it as a failed dispatch, not as an S3 error).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use s3s::dto::{ChecksumAlgorithm, ETag, PutObjectInput, StreamingBlob, UploadPartInput};
use s3s::{S3, S3Request, S3Result};

use crate::backend::Backend;

/// Writes objects and parts into the store in-process. Cheap to clone;
/// made by [`crate::LocalStore::in_process`].
#[derive(Clone)]
pub struct InProcess {
    pub(crate) backend: Backend,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("bucket", &self.backend.bucket)
            .finish_non_exhaustive()
    }
}

/// Why a body was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The body stream failed, or ended short of or past `length`: the
    /// caller's side stopped, the store said nothing.
    #[error("the body stream failed")]
    BodyFailed,
    /// The store answered an S3 error: `code` as it would be on the wire,
    /// and whether its status is a 5xx.
    #[error("{code}")]
    S3 { code: String, server_error: bool },
}

impl InProcess {
    /// Stores `body`, exactly `length` bytes, as the object at `key`, as a
    /// `PutObject` with that content type and, when given, the body's
    /// SHA-256 (base64) for the store to check. Returns the ETag, unquoted.
    pub async fn put_object(
        &self,
        key: &str,
        content_type: &str,
        length: u64,
        sha256_b64: Option<String>,
        body: BoxStream<'static, io::Result<Bytes>>,
    ) -> Result<String, WriteError> {
        let Ok(content_length) = i64::try_from(length) else {
            return Err(invalid_argument());
        };
        let (body, failed) = Exact::new(body, length);
        let input = PutObjectInput {
            bucket: self.backend.bucket.clone(),
            key: key.to_owned(),
            content_type: Some(content_type.to_owned()),
            content_length: Some(content_length),
            checksum_algorithm: sha256_b64
                .is_some()
                .then(|| ChecksumAlgorithm::from_static(ChecksumAlgorithm::SHA256)),
            checksum_sha256: sha256_b64,
            body: Some(StreamingBlob::wrap(body)),
            ..Default::default()
        };
        let req = S3Request {
            input,
            method: http::Method::PUT,
            uri: http::Uri::default(),
            headers: http::HeaderMap::new(),
            extensions: http::Extensions::new(),
            credentials: None,
            region: None,
            service: None,
            trailing_headers: None,
        };
        let out = S3::put_object(&self.backend, req).await;
        etag(out.map(|r| r.output.e_tag), &failed)
    }

    /// Stores part `number` of `upload_id` at `key` from `body`, which must
    /// be exactly `length` bytes. Returns the part's ETag, unquoted.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        length: u64,
        body: BoxStream<'static, io::Result<Bytes>>,
    ) -> Result<String, WriteError> {
        let (Ok(part_number), Ok(content_length)) = (i32::try_from(number), i64::try_from(length))
        else {
            return Err(invalid_argument());
        };
        let (body, failed) = Exact::new(body, length);
        let input = UploadPartInput {
            bucket: self.backend.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            part_number,
            content_length: Some(content_length),
            body: Some(StreamingBlob::wrap(body)),
            ..Default::default()
        };
        let out = crate::multipart::upload_part(&self.backend, input, None).await;
        etag(out.map(|o| o.e_tag), &failed)
    }
}

fn invalid_argument() -> WriteError {
    WriteError::S3 {
        code: "InvalidArgument".to_owned(),
        server_error: false,
    }
}

/// The ETag of a write's answer, or why it failed: the body's failure
/// (`failed`) before whatever the store made of it.
fn etag(out: S3Result<Option<ETag>>, failed: &AtomicBool) -> Result<String, WriteError> {
    match out {
        Ok(Some(etag)) => Ok(etag.value().to_owned()),
        Ok(None) => Err(WriteError::S3 {
            code: "InternalError".to_owned(),
            server_error: true,
        }),
        Err(_) if failed.load(Ordering::Relaxed) => Err(WriteError::BodyFailed),
        Err(err) => Err(WriteError::S3 {
            code: err.code().as_str().to_owned(),
            server_error: err.status_code().is_none_or(|s| s.is_server_error()),
        }),
    }
}

/// `inner`, held to exactly `remaining` bytes: a chunk past the end, or an
/// end before it, is an error, and any error sets `failed`. The mutex is
/// never contended (polling has `&mut self`); s3s wants a `Sync` stream.
struct Exact {
    inner: Mutex<BoxStream<'static, io::Result<Bytes>>>,
    remaining: u64,
    failed: Arc<AtomicBool>,
}

impl Exact {
    /// `body` held to `length` bytes, and the flag its failure sets.
    fn new(body: BoxStream<'static, io::Result<Bytes>>, length: u64) -> (Self, Arc<AtomicBool>) {
        let failed = Arc::new(AtomicBool::new(false));
        let exact = Self {
            inner: Mutex::new(body),
            remaining: length,
            failed: failed.clone(),
        };
        (exact, failed)
    }

    fn fail(&self, err: io::Error) -> Poll<Option<io::Result<Bytes>>> {
        self.failed.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(err)))
    }
}

impl Stream for Exact {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let inner = this.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        match inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => match this.remaining.checked_sub(chunk.len() as u64) {
                Some(left) => {
                    this.remaining = left;
                    Poll::Ready(Some(Ok(chunk)))
                }
                None => this.fail(io::Error::other("the body is longer than its length")),
            },
            Poll::Ready(Some(Err(err))) => this.fail(err),
            Poll::Ready(None) if this.remaining > 0 => {
                this.fail(io::Error::other("the body ended before its length"))
            }
            other => other,
        }
    }
}
