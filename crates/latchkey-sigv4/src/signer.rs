//! Signing with one set of credentials: presigned URLs and header auth.
//!
//! A [`Signer`] is built once per store and shared by every request handler, so
//! it is `Send + Sync` and caches the day's signing key: four HMACs that would
//! otherwise be repeated for every grant.

use std::sync::Mutex;

use latchkey_domain::Secret;
use time::OffsetDateTime;
use zeroize::Zeroize;

use crate::Error;
use crate::canonical::{
    ALGORITHM, Hex64, UNSIGNED_PAYLOAD, sign_canonical, signing_key, write_canonical_request,
};
use crate::encode::{AmzDate, canonical_uri};
use crate::normalize::{CanonicalHeaders, CanonicalQuery};
use crate::url::split;

/// Longest presigned-URL lifetime S3 accepts (seven days).
pub const MAX_EXPIRES_SECS: u64 = 604_800;

/// Headers the signer writes itself; a caller-supplied copy would either be
/// overwritten or produce a request that signs one value and sends another.
const RESERVED_HEADERS: [&str; 2] = ["authorization", "x-amz-date"];
const RESERVED_HEADERS_FOR_HEADER_AUTH: [&str; 2] =
    ["x-amz-content-sha256", "x-amz-security-token"];
/// Query parameters that make up query auth.
const RESERVED_QUERY: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// An access key pair, optionally temporary (with a session token).
/// `Debug` is safe: both secrets are [`Secret`]s, which redact themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Public half; appears in every credential scope and URL.
    pub access_key_id: String,
    /// Never sent; only the derived per-day key touches it.
    pub secret_access_key: Secret,
    /// Present for temporary credentials; sent (and signed) with every request.
    pub session_token: Option<Secret>,
}

impl Credentials {
    /// Long-lived credentials; the secret is wrapped at once so it cannot be logged.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret::new(secret_access_key),
            session_token: None,
        }
    }

    /// Temporary credentials (STS, or ones the embedded store minted) must send
    /// their token with every request, signed.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Secret::new(token));
        self
    }
}

/// Signs S3 requests for one credential, region and service. Cheap to share
/// behind an `Arc`; all methods take `&self` and the current time as a
/// parameter, so tests and clock-offset logic control it.
pub struct Signer {
    creds: Credentials,
    region: String,
    service: String,
    /// The last day's signing key. A mutex held for a 40-byte copy is cheaper
    /// than the HMAC chain it saves and keeps the type `Sync` without atomics.
    cache: Mutex<Option<CachedKey>>,
}

struct CachedKey {
    date: [u8; 8],
    key: [u8; 32],
}

impl Drop for CachedKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl Signer {
    /// A signer for S3 in `region`.
    pub fn new(creds: Credentials, region: &str) -> Self {
        Self::with_service(creds, region, "s3")
    }

    /// For other services that accept S3-style (single-encoded, unnormalised)
    /// canonical URIs, e.g. STS, whose path is always `/`.
    pub fn with_service(creds: Credentials, region: &str, service: &str) -> Self {
        Self {
            creds,
            region: region.to_owned(),
            service: service.to_owned(),
            cache: Mutex::new(None),
        }
    }

    /// The key id, e.g. to tell which credential a grant was signed with.
    pub fn access_key_id(&self) -> &str {
        &self.creds.access_key_id
    }

    /// The region in every scope this signer writes.
    pub fn region(&self) -> &str {
        &self.region
    }

    pub(crate) fn session_token(&self) -> Option<&str> {
        self.creds.session_token.as_ref().map(Secret::expose)
    }

    /// Presigned URL (query auth). `headers` are signed and must be sent
    /// verbatim by the client (`host` is always signed, from the URL unless
    /// given); `query` adds parameters such as `partNumber` and `uploadId` to
    /// any already on the URL. The payload is `UNSIGNED-PAYLOAD`. The returned
    /// URL carries the query in canonical order and encoding, so it is exactly
    /// what was signed.
    pub fn presign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        query: &[(&str, &str)],
        expires_secs: u64,
        now: OffsetDateTime,
    ) -> Result<String, Error> {
        if !(1..=MAX_EXPIRES_SECS).contains(&expires_secs) {
            return Err(Error::Expiry(expires_secs));
        }
        validate_method(method)?;
        let parts = split(url)?;
        let date = AmzDate::new(now)?;
        let uri = canonical_uri(parts.path);

        let mut h = collect_headers(headers, &RESERVED_HEADERS)?;
        if !h.contains("host") {
            h.push("host", &parts.authority)?;
        }
        h.finish();
        let mut signed_headers = String::with_capacity(h.text_len());
        h.write_signed(&mut signed_headers);

        let mut q = CanonicalQuery::with_capacity(query.len());
        q.push_raw(parts.query);
        for (k, v) in query {
            q.push(k, v);
        }
        if let Some(name) = RESERVED_QUERY.iter().find(|n| q.has_name(n)) {
            return Err(Error::ReservedQuery((*name).to_owned()));
        }
        let credential = self.credential(&date);
        let scope = self.scope_of(&credential);
        let mut digits = [0u8; 20];
        let expires = decimal(expires_secs, &mut digits);
        q.push("X-Amz-Algorithm", ALGORITHM);
        q.push("X-Amz-Credential", &credential);
        q.push("X-Amz-Date", date.datetime());
        q.push("X-Amz-Expires", expires);
        q.push("X-Amz-SignedHeaders", &signed_headers);
        if let Some(token) = &self.creds.session_token {
            q.push("X-Amz-Security-Token", token.expose());
        }
        let canonical_query = q.finish();

        let mut creq = String::new();
        write_canonical_request(
            &mut creq,
            method,
            &uri,
            &canonical_query,
            &h,
            UNSIGNED_PAYLOAD,
        );
        let sig = self.sign(&date, scope, &creq);

        let mut out = String::with_capacity(
            parts.scheme.len() + parts.authority.len() + uri.len() + canonical_query.len() + 96,
        );
        for piece in [
            parts.scheme,
            "://",
            &parts.authority,
            &uri,
            "?",
            &canonical_query,
        ] {
            out.push_str(piece);
        }
        out.push_str("&X-Amz-Signature=");
        out.push_str(sig.as_str());
        Ok(out)
    }

    /// Header auth for one request. Returns the headers to add to the ones
    /// given (which are all signed, with `host`): `x-amz-date`,
    /// `x-amz-content-sha256` (= `payload_sha256_hex`, or `UNSIGNED-PAYLOAD`),
    /// `x-amz-security-token` when present, and `authorization`. The URL's path
    /// and query should be in canonical encoding (as [`crate::Endpoint`] and
    /// [`crate::uri_encode`] produce), since the client sends it as is.
    pub fn sign_headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload_sha256_hex: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, String)>, Error> {
        validate_method(method)?;
        validate_payload_hash(payload_sha256_hex)?;
        let parts = split(url)?;
        let date = AmzDate::new(now)?;
        let uri = canonical_uri(parts.path);

        let mut h = collect_headers(headers, &RESERVED_HEADERS)?;
        if let Some(name) = RESERVED_HEADERS_FOR_HEADER_AUTH
            .iter()
            .find(|n| h.contains(n))
        {
            return Err(Error::ReservedHeader((*name).to_owned()));
        }
        if !h.contains("host") {
            h.push("host", &parts.authority)?;
        }
        h.push("x-amz-date", date.datetime())?;
        h.push("x-amz-content-sha256", payload_sha256_hex)?;
        if let Some(token) = &self.creds.session_token {
            h.push("x-amz-security-token", token.expose())?;
        }
        h.finish();

        let mut q = CanonicalQuery::with_capacity(0);
        q.push_raw(parts.query);
        let canonical_query = q.finish();

        let mut creq = String::new();
        let signed = write_canonical_request(
            &mut creq,
            method,
            &uri,
            &canonical_query,
            &h,
            payload_sha256_hex,
        );
        let credential = self.credential(&date);
        let sig = self.sign(&date, self.scope_of(&credential), &creq);
        let authorization = format!(
            "{ALGORITHM} Credential={credential},SignedHeaders={},Signature={}",
            &creq[signed],
            sig.as_str()
        );

        let mut out = Vec::with_capacity(4);
        out.push(("x-amz-date".to_owned(), date.datetime().to_owned()));
        out.push((
            "x-amz-content-sha256".to_owned(),
            payload_sha256_hex.to_owned(),
        ));
        if let Some(token) = &self.creds.session_token {
            out.push(("x-amz-security-token".to_owned(), token.expose().to_owned()));
        }
        out.push(("authorization".to_owned(), authorization));
        Ok(out)
    }

    /// `date/region/service/aws4_request` for this signer.
    /// `access-key-id/scope`: every signature needs both, so the scope is
    /// not built on its own but read back from here ([`Self::scope_of`]).
    pub(crate) fn credential(&self, date: &AmzDate) -> String {
        let id = &self.creds.access_key_id;
        let mut out = String::with_capacity(id.len() + self.region.len() + self.service.len() + 25);
        for part in [
            id,
            "/",
            date.date(),
            "/",
            &self.region,
            "/",
            &self.service,
            "/aws4_request",
        ] {
            out.push_str(part);
        }
        out
    }

    /// The scope part of a [`Self::credential`].
    fn scope_of<'c>(&self, credential: &'c str) -> &'c str {
        &credential[self.creds.access_key_id.len() + 1..]
    }

    pub(crate) fn sign(&self, date: &AmzDate, scope: &str, canonical_request: &str) -> Hex64 {
        let key = self.day_key(date);
        sign_canonical(&key, date, scope, canonical_request)
    }

    /// HMAC of an arbitrary string under the day's key: the POST-policy signature.
    pub(crate) fn sign_raw(&self, date: &AmzDate, data: &str) -> String {
        crate::canonical::signature(&self.day_key(date), data)
    }

    /// The signing key for `date`'s day, from the cache when the day matches.
    /// A poisoned lock only means another thread panicked mid-copy; the cache
    /// is rebuilt from scratch, so its contents are never trusted blindly.
    fn day_key(&self, date: &AmzDate) -> [u8; 32] {
        let day: [u8; 8] = date.date().as_bytes().try_into().unwrap_or_default();
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = None;
            guard
        });
        if let Some(cached) = cache.as_ref()
            && cached.date == day
        {
            return cached.key;
        }
        let key = signing_key(
            &self.creds.secret_access_key,
            date.date(),
            &self.region,
            &self.service,
        );
        *cache = Some(CachedKey { date: day, key });
        key
    }
}

impl Clone for Signer {
    fn clone(&self) -> Self {
        Self::with_service(self.creds.clone(), &self.region, &self.service)
    }
}

/// Hand-written so the cached signing key can never be printed.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("creds", &self.creds)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

fn collect_headers<'a>(
    headers: &[(&'a str, &'a str)],
    reserved: &[&str],
) -> Result<CanonicalHeaders<'a>, Error> {
    let mut h = CanonicalHeaders::with_capacity(headers.len());
    for (name, value) in headers {
        h.push(name, value)?;
    }
    if let Some(name) = reserved.iter().find(|n| h.contains(n)) {
        return Err(Error::ReservedHeader((*name).to_owned()));
    }
    Ok(h)
}

/// `v` in decimal, written into `buf` without going through `fmt`.
pub(crate) fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

fn validate_method(method: &str) -> Result<(), Error> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::InvalidMethod(method.to_owned()));
    }
    Ok(())
}

/// A wrong-length or upper-case hash would be signed fine and then rejected by
/// the store with an opaque mismatch; catching it here names the real mistake.
fn validate_payload_hash(hash: &str) -> Result<(), Error> {
    let is_hex = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_hex || hash == UNSIGNED_PAYLOAD {
        Ok(())
    } else {
        Err(Error::PayloadHash)
    }
}
