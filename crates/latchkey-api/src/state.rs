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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            download_ttl: Duration::from_secs(300),
            max_page: 100,
            json_body_bytes: 64 * 1024,
        }
    }
}

pub struct AppState {
    pub ledger: Arc<dyn UploadRepo>,
    pub store: Arc<dyn ObjectStore>,
    /// Signs grants with the store's credentials.
    pub signer: Signer,
    /// The store as clients reach it (may differ from how the broker does).
    pub endpoint: Endpoint,
    pub profiles: BTreeMap<String, Profile>,
    /// Used when a request names no profile.
    pub default_profile: String,
    pub auth: Authenticator,
    pub limits: Limits,
    /// This broker's own registry, rendered at `/metrics`.
    pub metrics: Metrics,
}
