//! The broker's own calls to the object store: HEAD to verify an upload,
//! DELETE to clean up, and the capability set that says which grant modes the
//! store can honour. Protocol code above this crate never learns which store
//! (embedded, Garage, AWS, MinIO…) is behind it.
//!
//! [`probe`] is the other direction: it finds out what a store really
//! enforces (`latchkey store check`) and answers with the same
//! [`Capabilities`].

mod capabilities;
pub mod probe;
mod s3;

pub use capabilities::Capabilities;
pub use probe::{ProbeReport, ProbeResult, ProbeRow, ProbeTarget, probe};
pub use s3::{S3Store, S3StoreConfig};

use async_trait::async_trait;
use latchkey_domain::{ObjectKey, Sha256Digest};
use time::OffsetDateTime;

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

    /// Checks that the bucket is reachable with the broker's credentials.
    async fn ping(&self) -> Result<(), StoreError>;
}
