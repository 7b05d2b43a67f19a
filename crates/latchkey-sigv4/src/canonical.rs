//! The SigV4 steps — canonical request, string to sign, signing key, signature —
//! as separate pure functions.
//!
//! They are public so that tests (ours, and the embedded store's) can check each
//! intermediate value against AWS's worked examples, and so a benchmark can time
//! them apart. [`crate::Signer`] uses the crate-private builders below, which
//! borrow where they can and feed the hasher without an intermediate string to
//! sign, because signing sits on every grant's hot path.

use std::ops::Range;

use hmac::{Hmac, Mac};
use latchkey_domain::Secret;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::Error;
use crate::encode::AmzDate;
use crate::normalize::{CanonicalHeaders, CanonicalQuery};

/// The only algorithm this crate speaks.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Payload hash for presigned URLs and for header grants whose body is unknown.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256, the one primitive SigV4 is built from.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The per-day key: HMAC chain over date, region, service and `aws4_request`.
/// It is as powerful as the secret for that scope, so callers must not log it.
pub fn signing_key(secret: &Secret, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut seed = Vec::with_capacity(4 + secret.expose().len());
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret.expose().as_bytes());
    let k_date = hmac_sha256(&seed, date.as_bytes());
    // The seed holds the raw secret; wipe it rather than leave it in freed memory.
    seed.zeroize();
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// `date/region/service/aws4_request`, the scope named in every credential.
pub fn credential_scope(date: &str, region: &str, service: &str) -> String {
    let mut scope = String::with_capacity(date.len() + region.len() + service.len() + 15);
    for part in [date, "/", region, "/", service, "/aws4_request"] {
        scope.push_str(part);
    }
    scope
}

/// The string to sign for a canonical request (step 2 of the spec).
pub fn string_to_sign(amz_date: &AmzDate, scope: &str, canonical_request: &str) -> String {
    let hash = sha256_hex(canonical_request.as_bytes());
    format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        amz_date.datetime(),
        hash.as_str()
    )
}

/// Lower-case hex HMAC of `string_to_sign` under a signing key (step 4).
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    Hex64::of(&hmac_sha256(signing_key, string_to_sign.as_bytes()))
        .as_str()
        .to_owned()
}

/// Hashes the canonical request and signs the string to sign without building
/// it: the hot path shared by presigning and header signing.
pub(crate) fn sign_canonical(
    key: &[u8; 32],
    amz_date: &AmzDate,
    scope: &str,
    canonical_request: &str,
) -> Hex64 {
    let hash = sha256_hex(canonical_request.as_bytes());
    let mut mac = new_mac(key);
    for part in [
        ALGORITHM,
        "\n",
        amz_date.datetime(),
        "\n",
        scope,
        "\n",
        hash.as_str(),
    ] {
        mac.update(part.as_bytes());
    }
    Hex64::of(&mac.finalize().into_bytes().into())
}

/// Lower-case hex SHA-256, the form SigV4 uses for payload hashes.
pub fn sha256_hex(data: &[u8]) -> Hex64 {
    Hex64::of(&Sha256::digest(data).into())
}

/// 32 bytes as 64 hex characters on the stack, so a signature costs no allocation
/// until the caller decides where it goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex64([u8; 64]);

impl Hex64 {
    fn of(bytes: &[u8; 32]) -> Self {
        let mut out = [0u8; 64];
        // 32 bytes always fit 64 hex characters.
        let _ = hex::encode_to_slice(bytes, &mut out);
        Self(out)
    }

    /// The hex text, ready to put in a header or URL.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Hex64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A canonical request plus where its signed-headers line sits, because the
/// signed-headers list is needed again for the credential and is already there.
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    text: String,
    signed_headers: Range<usize>,
}

impl CanonicalRequest {
    /// The text that gets hashed; useful to diff against a server's error
    /// message (S3 returns its own canonical request on a mismatch).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `host;range;x-amz-date`-style list of the signed header names.
    pub fn signed_headers(&self) -> &str {
        &self.text[self.signed_headers.clone()]
    }
}

impl std::fmt::Debug for CanonicalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // It may contain a session token header; the token is not a secret key
        // but is still a bearer credential, so keep Debug short and safe.
        f.debug_struct("CanonicalRequest")
            .field("signed_headers", &self.signed_headers())
            .finish_non_exhaustive()
    }
}

/// Builds a canonical request from an already-canonical URI (see
/// [`crate::canonical_uri`]) and query (see [`canonical_query`]), and raw
/// headers, which are normalised here: names lower-cased and trimmed, values
/// trimmed with inner runs of spaces collapsed, repeated names joined by `,`.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &[(&str, &str)],
    payload_hash: &str,
) -> Result<CanonicalRequest, Error> {
    let mut h = CanonicalHeaders::with_capacity(headers.len());
    for (name, value) in headers {
        h.push(name, value)?;
    }
    h.finish();
    let mut text = String::new();
    let signed_headers = write_canonical_request(
        &mut text,
        method,
        canonical_uri,
        canonical_query,
        &h,
        payload_hash,
    );
    Ok(CanonicalRequest {
        text,
        signed_headers,
    })
}

/// Canonical query string from decoded pairs: each side S3-encoded, then
/// sorted by encoded key and value, joined with `&`.
pub fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut q = CanonicalQuery::with_capacity(params.len());
    for (k, v) in params {
        q.push(k, v);
    }
    q.finish()
}

/// Writes the canonical request into `out` and returns the byte range of the
/// signed-headers line.
pub(crate) fn write_canonical_request(
    out: &mut String,
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &CanonicalHeaders<'_>,
    payload_hash: &str,
) -> Range<usize> {
    out.reserve(
        method.len() + canonical_uri.len() + canonical_query.len() + headers.text_len() * 2 + 80,
    );
    out.push_str(method);
    out.push('\n');
    out.push_str(canonical_uri);
    out.push('\n');
    out.push_str(canonical_query);
    out.push('\n');
    headers.write_canonical(out);
    out.push('\n');
    let start = out.len();
    headers.write_signed(out);
    let range = start..out.len();
    out.push('\n');
    out.push_str(payload_hash);
    range
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_normalised_sorted_and_joined() {
        let creq = canonical_request(
            "GET",
            "/",
            "",
            &[
                ("X-Amz-Meta-B", "  two   spaces  "),
                ("Host", "example.com"),
                ("x-amz-meta-b", "second"),
                ("A", ""),
            ],
            UNSIGNED_PAYLOAD,
        )
        .unwrap();
        assert_eq!(
            creq.as_str(),
            "GET\n/\n\na:\nhost:example.com\nx-amz-meta-b:two spaces,second\n\n\
             a;host;x-amz-meta-b\nUNSIGNED-PAYLOAD"
        );
        assert_eq!(creq.signed_headers(), "a;host;x-amz-meta-b");
    }

    #[test]
    fn refuses_header_injection() {
        assert!(canonical_request("GET", "/", "", &[("a", "x\r\nb: y")], "").is_err());
        assert!(canonical_request("GET", "/", "", &[("a b", "x")], "").is_err());
        assert!(canonical_request("GET", "/", "", &[("", "x")], "").is_err());
    }
}
