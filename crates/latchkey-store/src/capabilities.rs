//! What a store can enforce. Grants only sign what the store will check, and
//! a mode the store cannot honour is refused with a clear error instead of
//! being handed out half-safe (tusd's StoreComposer idea).

/// Per-store feature flags. The embedded store supports everything; for
/// other stores the operator states them in config (and `latchkey store
/// check` probes them: see [`crate::probe`]). Fields missing from a config
/// default to `true`, as in [`Capabilities::FULL`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// `If-None-Match: *` on PUT refuses to overwrite (Garage ignores it).
    pub if_none_match: bool,
    /// `x-amz-checksum-sha256` is verified against the body.
    pub checksum_sha256: bool,
    /// Browser POST uploads with a policy document.
    pub post_object: bool,
    pub multipart: bool,
    /// Scoped temporary credentials can be minted.
    pub temporary_credentials: bool,
    /// The bucket's CORS configuration can be read (and so set) through the
    /// S3 API. The embedded store answers CORS itself instead.
    pub cors_config: bool,
    /// Lifecycle rules (e.g. aborting incomplete multipart uploads) can be
    /// read through the S3 API.
    pub lifecycle: bool,
    /// The store can post bucket event notifications (AWS, MinIO), so commits
    /// need not wait for the reconciler. Garage cannot.
    pub event_notifications: bool,
    /// A header-signed request whose `x-amz-date` is 20 minutes old is
    /// refused (AWS allows 15 minutes; Garage accepts it). Informational: a
    /// store that does not enforce it makes replayed `headers` grants live
    /// longer, which short grant TTLs do not limit.
    pub clock_skew_enforced: bool,
}

impl Capabilities {
    pub const FULL: Capabilities = Capabilities {
        if_none_match: true,
        checksum_sha256: true,
        post_object: true,
        multipart: true,
        temporary_credentials: true,
        cors_config: true,
        lifecycle: true,
        event_notifications: true,
        clock_skew_enforced: true,
    };
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::FULL
    }
}
