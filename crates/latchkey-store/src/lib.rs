//! The broker's own calls to the object store: HEAD to verify an upload,
//! DELETE to clean up, and the capability set that says which grant modes the
//! store can honour. Protocol code above this crate never learns which store
//! (embedded, Garage, AWS, MinIO…) is behind it.
//!
//! [`probe`] is the other direction: it finds out what a store really
//! enforces (`latchkey store check`) and answers with the same
//! [`Capabilities`].

mod capabilities;
mod multipart;
pub mod probe;
mod read;
mod s3;
mod stream;
pub mod temporary;

pub use capabilities::Capabilities;
pub use probe::{ProbeReport, ProbeResult, ProbeRow, ProbeTarget, probe};
pub use s3::{S3Store, S3StoreConfig};

use async_trait::async_trait;
use latchkey_domain::{ObjectKey, Sha256Digest};
use time::OffsetDateTime;

/// The most keys one S3 `DeleteObjects` call may name.
pub const DELETE_BATCH: usize = 1000;

/// What a HEAD tells about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub content_type: Option<String>,
    /// Without the surrounding quotes.
    pub etag: Option<String>,
    /// Present when the object was stored with a SHA-256 checksum and the
    /// store reports it.
    pub sha256: Option<Sha256Digest>,
    pub last_modified: Option<OffsetDateTime>,
}

/// One part of a multipart upload, as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub size: u64,
    /// Without the surrounding quotes.
    pub etag: String,
}

/// A request body the broker streams to the store, chunk by chunk. An error
/// from the stream aborts the request (the store keeps nothing).
pub type ByteBody = futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// Takes the bodies the broker streams (`PutObject` and `UploadPart`) by
/// another way than S3 over HTTP: the embedded store in the broker's own
/// process (see [`S3Store::with_body_writer`]). Must answer exactly as the
/// store would through the S3 client: the ETag unquoted; a body stream that
/// failed or was not `length` bytes as [`StoreError::body_failed`]; an S3
/// error as `Refused(code)`, or `Unavailable(code)` for a 5xx.
#[async_trait]
pub trait BodyWriter: Send + Sync + 'static {
    /// [`ObjectStore::put_stream`].
    async fn put_stream(
        &self,
        key: &ObjectKey,
        content_type: &str,
        length: u64,
        sha256: Option<Sha256Digest>,
        body: ByteBody,
    ) -> Result<Option<String>, StoreError>;

    /// [`ObjectStore::upload_part`].
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        length: u64,
        body: ByteBody,
    ) -> Result<String, StoreError>;
}

/// One object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<OffsetDateTime>,
}

/// A multipart upload the store holds open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenMultipart {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<OffsetDateTime>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// Pass back to continue; `None` after the last page.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered 5xx: the caller should
    /// retry later rather than treat the object as missing.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the broker's own credentials or request.
    #[error("object store refused the request: {0}")]
    Refused(String),
}

/// The S3 error codes for a body that does not match a digest sent with
/// it: `BadDigest` (AWS, the embedded store), `InvalidDigest` (Garage, for
/// `x-amz-checksum-*`), `XAmzContentSHA256Mismatch` (a signed payload hash).
const DIGEST_REFUSALS: [&str; 3] = ["BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"];

impl StoreError {
    /// A body the broker streamed failed on its side (the client's upload
    /// broke off, or it was not the length declared): the store has said
    /// nothing about it.
    pub fn body_failed() -> Self {
        StoreError::Unavailable("the body stream failed".into())
    }

    /// Whether the store refused a body because it did not match the digest
    /// sent with it. Only a refusal (4xx) counts: a store that failed (5xx,
    /// unreachable) has said nothing about the body.
    pub fn is_digest_refusal(&self) -> bool {
        matches!(self, StoreError::Refused(code) if DIGEST_REFUSALS.contains(&code.as_str()))
    }
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    fn capabilities(&self) -> &Capabilities;

    /// `Ok(None)` when the object does not exist.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError>;

    /// Server-side copy, keeping content type and metadata and recording a
    /// SHA-256 checksum on the copy. `Ok(false)` when `from` does not exist.
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<bool, StoreError>;

    /// Deleting a missing object succeeds, as in S3.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Deletes every key in `keys` with S3 `DeleteObjects`, at most
    /// [`DELETE_BATCH`] keys per call, so a sweep that removes hundreds of
    /// objects makes a handful of round trips instead of one each. Missing
    /// keys succeed, as in S3; an empty slice makes no call. Fails on the
    /// first call the store refuses or on any key it reports as not
    /// deleted (the keys of earlier calls stay deleted).
    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<(), StoreError>;

    /// Checks that the bucket is reachable with the broker's credentials.
    async fn ping(&self) -> Result<(), StoreError>;

    /// One page (at most `max` keys) of the objects under `prefix`, in key
    /// order, continuing from `continuation` — for the reconciler's sweep.
    async fn list(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max: u32,
    ) -> Result<ListPage, StoreError>;

    /// Multipart uploads in progress under `prefix` (at most `max`), for the
    /// reconciler to abort the ones no pending upload owns.
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        max: u32,
    ) -> Result<Vec<OpenMultipart>, StoreError>;

    /// Starts a multipart upload at `key` and returns its upload id.
    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StoreError>;

    /// Every part the store holds for the upload, in part-number order
    /// (all pages). `Ok(None)` when the store does not know the upload id:
    /// it was completed, aborted, or never existed.
    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Option<Vec<Part>>, StoreError>;

    /// Completes the upload from exactly `parts` and returns the object's
    /// ETag; `Ok(None)` when the store no longer knows the upload id.
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<Option<String>, StoreError>;

    /// Aborting an upload the store no longer knows succeeds.
    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError>;

    /// One PutObject whose body is streamed: exactly `length` bytes, with
    /// the declared SHA-256 for the store to check when given. Returns the
    /// ETag.
    async fn put_stream(
        &self,
        key: &ObjectKey,
        content_type: &str,
        length: u64,
        sha256: Option<Sha256Digest>,
        body: ByteBody,
    ) -> Result<Option<String>, StoreError>;

    /// One streamed part of `length` bytes; returns its ETag.
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        length: u64,
        body: ByteBody,
    ) -> Result<String, StoreError>;

    /// The whole object in memory, for objects known to be small (a photo
    /// the pipeline processes). `Ok(None)` when the object does not exist;
    /// `Refused` when it is larger than `max` bytes.
    async fn read(&self, key: &ObjectKey, max: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// One PutObject of `bytes` (what the photo pipeline wrote), with its
    /// SHA-256 for the store to check. Returns the ETag.
    async fn put_bytes(
        &self,
        key: &ObjectKey,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<String>, StoreError>;

    /// The SHA-256 of a stored object, read back in chunks (for objects the
    /// store cannot report one for, such as completed multipart uploads).
    /// `Ok(None)` when the object does not exist.
    async fn sha256(&self, key: &ObjectKey) -> Result<Option<Sha256Digest>, StoreError>;

    /// Write-only credentials for keys under `req.prefix` (the `credentials`
    /// grant mode): minted for the embedded store, STS `AssumeRole` on
    /// AWS/MinIO/Ceph. A store with neither answers `Refused` (the broker
    /// checks the `temporary_credentials` capability first).
    async fn temporary_credentials(
        &self,
        req: &temporary::CredentialRequest<'_>,
    ) -> Result<temporary::TemporaryCredentials, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn only_a_refusal_with_a_digest_code_is_a_digest_refusal() {
        for code in ["BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"] {
            assert!(
                StoreError::Refused(code.into()).is_digest_refusal(),
                "{code}"
            );
            assert!(
                !StoreError::Unavailable(code.into()).is_digest_refusal(),
                "{code}"
            );
        }
        for code in ["AccessDenied", "InternalError", "unknown", "BadDigestX"] {
            assert!(
                !StoreError::Refused(code.into()).is_digest_refusal(),
                "{code}"
            );
        }
    }
}
