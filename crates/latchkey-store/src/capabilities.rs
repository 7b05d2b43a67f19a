//! What a store can enforce. Grants only sign what the store will check, and
//! a mode the store cannot honour is refused with a clear error instead of
//! being handed out half-safe (tusd's StoreComposer idea).

/// Per-store feature flags. The embedded store supports everything; for
/// other stores the operator states them in config (and `latchkey store
/// check` probes them).
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
}

impl Capabilities {
    pub const FULL: Capabilities = Capabilities {
        if_none_match: true,
        checksum_sha256: true,
        post_object: true,
        multipart: true,
        temporary_credentials: true,
    };
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::FULL
    }
}
