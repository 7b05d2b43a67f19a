//! AWS Signature Version 4 for S3, as pure functions: presigned URLs, signed
//! request headers and browser POST policies.
//!
//! Nothing here does IO or reads a clock. The signing time is always a
//! parameter, so grants can carry the broker's time (see DESIGN §3) and tests
//! can replay AWS's published examples. The crate knows nothing about which
//! store is behind an [`Endpoint`]; provider quirks live elsewhere.
//!
//! Layout: [`encode`] (S3's percent-encoding and timestamps), [`canonical`]
//! (the four SigV4 steps, public for tests and benchmarks), `url` (splitting a
//! URL into the signed parts), [`endpoint`] (object URLs), [`signer`]
//! (credentials, query and header auth) and [`post`] (POST policies).

pub mod canonical;
pub mod encode;
pub mod endpoint;
mod normalize;
pub mod post;
pub mod signer;
pub mod temporary;
mod url;

pub use canonical::{
    ALGORITHM, CanonicalRequest, Hex64, UNSIGNED_PAYLOAD, canonical_query, canonical_request,
    credential_scope, hmac_sha256, sha256_hex, signature, signing_key, string_to_sign,
};
pub use encode::{AmzDate, canonical_uri, uri_encode, uri_encode_path};
pub use endpoint::Endpoint;
pub use latchkey_domain::Secret;
pub use post::{FieldName, PostForm, PostPolicy};
pub use signer::{Credentials, MAX_EXPIRES_SECS, Signer};

/// Everything that can go wrong while signing. All of these are caller
/// mistakes (bad input), never transient, so none carries a source error; none
/// carries a secret or a signed URL either, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configured store endpoint, bucket or region cannot form URLs.
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(&'static str),
    /// A URL to sign is not an absolute http(s) URL we can sign exactly.
    #[error("invalid URL: {0}")]
    InvalidUrl(&'static str),
    /// Methods are signed verbatim, so a lower-case one would never match.
    #[error("invalid HTTP method {0:?}")]
    InvalidMethod(String),
    /// A header name that is not an HTTP token, or a value with CR/LF.
    #[error("invalid header {0:?}: bad name, or a control character in the value")]
    InvalidHeader(String),
    /// The caller passed a header the signer writes itself.
    #[error("header {0:?} is set by the signer")]
    ReservedHeader(String),
    /// The caller passed an `X-Amz-*` query-auth parameter.
    #[error("query parameter {0:?} is set by the signer")]
    ReservedQuery(String),
    /// Presigned URLs live between one second and seven days (S3's limit).
    #[error("expiry must be between 1 and {MAX_EXPIRES_SECS} seconds, got {0}")]
    Expiry(u64),
    /// Not a lower-case hex SHA-256 nor `UNSIGNED-PAYLOAD`.
    #[error("payload hash must be 64 lower-case hex digits or UNSIGNED-PAYLOAD")]
    PayloadHash,
    /// SigV4 timestamps have four-digit years.
    #[error("time outside the years 0000-9999")]
    TimeOutOfRange,
    /// A POST policy that would be useless or self-contradictory.
    #[error("POST policy: {0}")]
    Policy(&'static str),
}

/// A presigned URL safe to log: the values of `X-Amz-Signature`,
/// `X-Amz-Credential` and `X-Amz-Security-Token` become `[redacted]`, since
/// anyone holding the URL can use it until it expires.
pub fn redact_presigned_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(base);
    for (i, pair) in query.split('&').enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        let (name, _) = pair.split_once('=').unwrap_or((pair, ""));
        let secret = [
            "X-Amz-Signature",
            "X-Amz-Credential",
            "X-Amz-Security-Token",
        ]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s));
        if secret {
            out.push_str(name);
            out.push_str("=[redacted]");
        } else {
            out.push_str(pair);
        }
    }
    out
}
