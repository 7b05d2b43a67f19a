//! The embedded S3-compatible store latchkey runs on one machine.
//!
//! It is the `s3s` protocol layer (SigV4 header and presigned-query auth, XML,
//! routing) over our own local-folder backend that holds exactly one bucket.
//! Browsers and phones PUT to it with presigned URLs the broker made; the
//! broker itself talks to it with an ordinary S3 client.
//!
//! Map of the crate:
//! - [`LocalStore`] / [`StoreHandle`] (this file): configuration, opening, serving.
//! - `disk`: key → file layout, atomic commits.
//! - `index`: the on-disk (SQLite) index of keys that lookups and listing
//!   read, with group commit and the repair at open.
//! - `ingest`: streaming a request body to a temp file while hashing and
//!   verifying it.
//! - `backend`: the `s3s::S3` implementation (object and bucket operations);
//!   `backend::read` serves GET/HEAD.
//! - `list`: `ListObjectsV2` / `ListObjects` paging over the index.
//! - `multipart`: multipart uploads; `multipart::listing` lists parts/uploads.
//! - `pieces`: completed multipart objects kept as their parts (a folder of
//!   pieces), read across piece boundaries, removed once no reader is in them.
//! - [`InProcess`] (`in_process`): objects and parts the broker in the same
//!   process writes without the loopback HTTP hop.
//! - `access`: what every request must satisfy before an operation runs.
//! - `post`: what s3s leaves to us for browser POST uploads.
//! - `server`: the hyper accept loop and the CORS layer around the service.
//! - `temporary`: the write-only temporary keys the broker mints (the
//!   `credentials` grant mode): auth and the prefix/operation check.

mod access;
mod backend;
mod disk;
pub mod idle;
mod in_process;
mod index;
mod ingest;
mod list;
mod multipart;
mod pieces;
mod post;
mod server;
mod signature_answers;
mod temporary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use latchkey_domain::Secret;
use s3s::validation::{AwsNameValidation, NameValidation};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use in_process::{InProcess, WriteError};

/// What the embedded store needs to run.
#[derive(Debug, Clone)]
pub struct LocalStoreConfig {
    /// Data folder; objects, uploads in progress and temp files live under it.
    pub root: PathBuf,
    /// The one bucket this store serves; every other name is `NoSuchBucket`.
    pub bucket: String,
    /// Region reported by `HeadBucket`/`GetBucketLocation`, e.g. `us-east-1`.
    pub region: String,
    /// Access key id of the single key pair allowed to sign requests.
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Bounds on the store's client connections (see `server`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once; at the limit the store stops accepting
    /// and new ones wait in the listen backlog. At least 1.
    pub max_connections: usize,
    /// A request head (the first one included) must arrive by then.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// A hook so the broker learns in-process the moment an object is written or
/// removed, instead of polling the store.
///
/// Called after the change is durable on disk and visible to readers. Keep the
/// work short (hand it to a channel): it runs on the request's task.
pub trait ObjectEvents: Send + Sync + 'static {
    /// A `PutObject`, `CompleteMultipartUpload` or `CopyObject` created or
    /// replaced `key`. `etag` is unquoted.
    fn object_created(&self, key: &str, size: u64, etag: &str);

    /// A `DeleteObject`/`DeleteObjects` removed `key` (only when it existed).
    fn object_removed(&self, key: &str) {
        let _ = key;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid local store configuration: {0}")]
    Config(String),
    #[error("local store: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// An opened store, ready to serve.
pub struct LocalStore {
    backend: backend::Backend,
    cfg: LocalStoreConfig,
    limits: ConnectionLimits,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("root", &self.cfg.root)
            .field("bucket", &self.cfg.bucket)
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Creates the data folder and the bucket if needed, removes temp files a
    /// crash left behind, and opens the object index, repairing it against
    /// the data files (one folder at a time: time grows with the objects,
    /// memory does not).
    pub async fn open(
        cfg: LocalStoreConfig,
        events: Option<Arc<dyn ObjectEvents>>,
    ) -> Result<Self, Error> {
        if !AwsNameValidation::new().validate_bucket_name(&cfg.bucket) {
            return Err(Error::Config(format!("bad bucket name {:?}", cfg.bucket)));
        }
        if cfg.access_key_id.is_empty() || cfg.secret_access_key.is_empty() {
            return Err(Error::Config("access key id and secret must be set".into()));
        }
        if cfg.region.is_empty() {
            return Err(Error::Config("region must be set".into()));
        }
        let disk = disk::Disk::open(cfg.root.clone()).await?;
        let uploads = multipart::Uploads::open(&disk).await?;
        let backend = backend::Backend::new(
            disk,
            uploads,
            cfg.bucket.clone(),
            cfg.region.clone(),
            events,
        );
        Ok(Self {
            backend,
            cfg,
            limits: ConnectionLimits::default(),
        })
    }

    /// Replaces the default [`ConnectionLimits`].
    pub fn with_connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// A handle writing objects and parts into this store in-process (see
    /// [`InProcess`]), whether or not the store is also served.
    pub fn in_process(&self) -> InProcess {
        InProcess {
            backend: self.backend.clone(),
        }
    }

    /// The store as a tower service, without a listener: requests are
    /// answered in-process with the same auth, access rules and CORS as
    /// [`LocalStore::serve`] (for embedding behind another server, and for
    /// the fuzz targets in `fuzz/`, which call it millions of times).
    pub fn into_service(
        self,
    ) -> impl tower::Service<
        http::Request<http_body_util::Full<bytes::Bytes>>,
        Response = s3s::HttpResponse,
        Error = s3s::HttpError,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        server::build_service(self.backend, &self.cfg)
    }

    /// Serves S3 (path-style only) on `listener` until the returned handle is
    /// shut down or dropped. Must be called inside a tokio runtime.
    pub fn serve(self, listener: TcpListener) -> StoreHandle {
        let local_addr = listener.local_addr().unwrap_or_else(|err| {
            // A bound listener practically always knows its address; keep
            // serving rather than panic, but say so.
            tracing::warn!(%err, "local store listener has no local address");
            SocketAddr::from(([0, 0, 0, 0], 0))
        });
        let service = server::build_service(self.backend, &self.cfg);
        let (stop_tx, stop_rx) = watch::channel(());
        let task = tokio::spawn(server::run(listener, service, self.limits, stop_rx));
        StoreHandle {
            local_addr,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }
}

/// A running store. Dropping it stops accepting connections and lets the open
/// ones finish in the background; [`StoreHandle::shutdown`] waits for that.
#[derive(Debug)]
pub struct StoreHandle {
    pub local_addr: SocketAddr,
    stop: Option<watch::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl StoreHandle {
    /// The base URL clients use, e.g. `http://127.0.0.1:9000`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting connections and waits (bounded) for open requests to end.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::warn!(%err, "local store server task failed");
        }
    }
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        // Dropping the sender is the stop signal; the server task notices.
        self.stop.take();
    }
}
