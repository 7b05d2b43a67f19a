//! What every handler can reach: ledger, store, signer, profiles, auth and
//! limits. Built once by latchkey-server and shared behind an `Arc`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use latchkey_domain::Profile;
use latchkey_ledger::UploadRepo;
use latchkey_sigv4::{Endpoint, Signer};
use latchkey_store::ObjectStore;

use crate::auth::Authenticator;
use crate::metrics::Metrics;

/// Limits that shape requests; all from configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a presigned download URL stays valid.
    pub download_ttl: Duration,
    /// Largest page `GET /v1/uploads` returns.
    pub max_page: u32,
    /// Largest JSON request body accepted.
    pub json_body_bytes: usize,
    /// Part size for multipart uploads (at least S3's 5 MiB); grown for
    /// files that would otherwise need more than 10,000 parts.
    pub part_size: u64,
    /// Proxied bodies up to this size go to the store as one streamed
    /// PutObject; larger ones as a multipart upload.
    pub proxy_single_put_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            download_ttl: Duration::from_secs(300),
            max_page: 100,
            json_body_bytes: 64 * 1024,
            part_size: 8 * 1024 * 1024,
            proxy_single_put_max: crate::MAX_SINGLE_PUT,
        }
    }
}

/// The largest object one S3 PutObject may carry (5 GiB): above it, a
/// proxied body can only go to the store as a multipart upload.
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// Who may post store event notifications (`POST /v1/events/s3`).
#[derive(Clone, Debug, Default)]
pub struct EventSettings {
    /// Shared secret: `Authorization: Bearer <token>` or `?token=<token>`
    /// (SNS cannot send headers). No token, no event endpoint.
    pub token: Option<latchkey_domain::Secret>,
    /// Hosts an SNS `SubscribeURL` may point at (suffix match), so a forged
    /// confirmation cannot make the broker fetch arbitrary URLs.
    pub subscribe_hosts: Vec<String>,
    /// Events for other buckets are ignored.
    pub bucket: String,
}

pub struct AppState {
    pub ledger: Arc<dyn UploadRepo>,
    pub store: Arc<dyn ObjectStore>,
    /// Signs grants with the store's credentials.
    pub signer: Signer,
    /// The store as clients reach it (may differ from how the broker does).
    pub endpoint: Endpoint,
    /// The broker's own URL as clients reach it (proxy grants point here).
    pub public_url: String,
    pub profiles: BTreeMap<String, Profile>,
    /// Used when a request names no profile.
    pub default_profile: String,
    pub auth: Authenticator,
    pub limits: Limits,
    /// This broker's own registry, rendered at `/metrics`.
    pub metrics: Metrics,
    /// Store event notifications.
    pub events: EventSettings,
    /// Per-user limit on grant creation; `None` means unlimited.
    pub grant_limiter: Option<crate::ratelimit::GrantLimiter>,
    /// Upload tokens for Uppy's Companion routes, and dev sign-in.
    pub uppy: crate::broker::uppy::UppySettings,
    /// The tus endpoint's buffers and write locks.
    pub tus: crate::broker::modes::tus::TusSettings,
}
