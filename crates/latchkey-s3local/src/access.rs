//! What every request must satisfy before any operation runs.
//!
//! s3s verifies signatures (header SigV4, presigned query, POST policy); this
//! adds the store's own rules on top:
//! - anonymous requests are refused (s3s's default, restated here because
//!   installing an `S3Access` replaces it);
//! - ACL headers are refused. The store has no ACLs, and a presigned PUT
//!   carrying an unsigned `x-amz-acl: public-read` must not look like it
//!   succeeded. `x-amz-acl: private` is what every object already is, so it is
//!   accepted; some clients send it by default.
//! - on a SigV4 request, presigned or signed in its `Authorization` header,
//!   every `x-amz-*` header must be among the signed ones
//!   (`X-Amz-SignedHeaders`, or the header's `SignedHeaders`), as AWS
//!   requires ("There were headers present in the request which were not
//!   signed"): otherwise the holder of a URL, or anything on the way, could
//!   add metadata, a website redirect, tagging or a storage class the
//!   signer never signed. `x-amz-content-sha256` is exempt, as on AWS (SDKs
//!   send it, and s3s checks it against the body). The header-signed case
//!   was found by the `store_sigv4` fuzz target: an unsigned, empty
//!   `x-amz-meta-*` header was stored with the object.

use s3s::S3Result;
use s3s::access::{S3Access, S3AccessContext};
use s3s::s3_error;

pub(crate) struct Access {
    /// Checks requests signed with temporary (write-only) keys.
    pub(crate) temporary: std::sync::Arc<latchkey_sigv4::temporary::TokenKey>,
    pub(crate) bucket: String,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        }
        if cx
            .credentials()
            .is_some_and(|c| crate::temporary::is_temporary(&c.access_key))
        {
            crate::temporary::check(&self.temporary, &self.bucket, cx)?;
        }
        if let Some(signed) = presigned_signed_headers(cx.uri().query()) {
            refuse_unsigned_amz_headers(cx.headers(), &signed)?;
        } else {
            check_header_signature(cx.headers())?;
        }
        for (name, value) in cx.headers() {
            let name = name.as_str();
            let acl = name == "x-amz-acl" && value.as_bytes() != b"private";
            if acl || name.starts_with("x-amz-grant-") {
                return Err(s3_error!(
                    NotImplemented,
                    "This store does not support ACLs; remove the {name} header."
                ));
            }
        }
        Ok(())
    }

    async fn post_object(
        &self,
        req: &mut s3s::S3Request<s3s::dto::PostObjectInput>,
    ) -> S3Result<()> {
        crate::post::refuse_uncovered_fields(&req.input)?;
        crate::post::refuse_unservable_fields(&req.input)
    }
}

/// The same rule for ACLs that arrive as operation input rather than headers
/// (POST object form fields become `PutObject` input).
pub(crate) fn refuse_acl(
    acl: Option<&s3s::dto::ObjectCannedACL>,
    grants: [Option<&String>; 4],
) -> S3Result<()> {
    let acl = acl.is_some_and(|a| a.as_str() != s3s::dto::ObjectCannedACL::PRIVATE);
    if acl || grants.iter().any(Option::is_some) {
        return Err(s3_error!(
            NotImplemented,
            "This store does not support ACLs."
        ));
    }
    Ok(())
}

/// The `X-Amz-SignedHeaders` of a presigned (query-signed) request, or
/// `None` for other requests.
fn presigned_signed_headers(query: Option<&str>) -> Option<Vec<String>> {
    let query = query?;
    let mut presigned = false;
    let mut signed = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name.eq_ignore_ascii_case("X-Amz-Signature") {
            presigned = true;
        } else if name.eq_ignore_ascii_case("X-Amz-SignedHeaders") {
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            signed = value
                .split(';')
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
        }
    }
    presigned.then_some(signed)
}

/// What s3s 0.14 leaves unchecked in an `Authorization: AWS4-…` header,
/// each found by the header-signature property test (tests/s3/props.rs):
/// - the algorithm: s3s verifies the signature as AWS4-HMAC-SHA256
///   whatever the header names; S3 refuses any other name (400).
/// - `SignedHeaders` naming a header the request lacks: s3s leaves it out
///   of the canonical request, so the signature still matched; S3 signs
///   it as empty, so the signature does not (403 `SignatureDoesNotMatch`).
/// - an `x-amz-*` header left out of `SignedHeaders` (found by the
///   `store_sigv4` fuzz target): refused as on a presigned request.
fn check_header_signature(headers: &http::HeaderMap) -> S3Result<()> {
    let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(());
    };
    let auth = String::from_utf8_lossy(auth.as_bytes());
    // Only SigV4 has a credential scope (SigV2 is `AWS key:signature`,
    // which s3s checks on its own); s3s takes any header with one for
    // SigV4, `AWS Credential=…` included.
    if !auth.contains("Credential=") {
        return Ok(());
    }
    let algorithm = auth.split_ascii_whitespace().next().unwrap_or_default();
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(s3_error!(
            AuthorizationHeaderMalformed,
            "Unsupported Authorization Type: {algorithm:?}"
        ));
    }
    let signed: Vec<String> = auth
        .split_once("SignedHeaders=")
        .map(|(_, rest)| rest.split([',', ' ']).next().unwrap_or_default())
        .unwrap_or_default()
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    for name in &signed {
        // HTTP/2 requests carry `host` as the URI's authority.
        if name != "host" && !headers.contains_key(name.as_str()) {
            return Err(s3_error!(
                SignatureDoesNotMatch,
                "The signed header {name:?} is not in the request"
            ));
        }
    }
    refuse_unsigned_amz_headers(headers, &signed)
}

fn refuse_unsigned_amz_headers(headers: &http::HeaderMap, signed: &[String]) -> S3Result<()> {
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with("x-amz-")
            && name != "x-amz-content-sha256"
            && !signed.iter().any(|s| s == name)
        {
            return Err(s3_error!(
                AccessDenied,
                "There were headers present in the request which were not signed: {name}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> http::HeaderMap {
        names
            .iter()
            .map(|n| {
                (
                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    http::HeaderValue::from_static("v"),
                )
            })
            .collect()
    }

    #[test]
    fn presigned_requests_carry_only_signed_amz_headers() {
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-checksum-sha256&X-Amz-Signature=ab";
        let signed = presigned_signed_headers(Some(q)).unwrap();
        assert!(
            refuse_unsigned_amz_headers(
                &headers(&["content-type", "x-amz-checksum-sha256"]),
                &signed
            )
            .is_ok()
        );
        assert!(refuse_unsigned_amz_headers(&headers(&["x-amz-content-sha256"]), &signed).is_ok());
        for extra in [
            "x-amz-acl",
            "x-amz-meta-owner",
            "x-amz-website-redirect-location",
            "x-amz-copy-source",
        ] {
            let err = refuse_unsigned_amz_headers(&headers(&[extra]), &signed).unwrap_err();
            assert_eq!(err.code(), &s3s::S3ErrorCode::AccessDenied, "{extra}");
        }
        // Header-signed requests are not presigned: their SignedHeaders
        // are read from the Authorization header (below).
        assert!(presigned_signed_headers(Some("uploads")).is_none());
        assert!(presigned_signed_headers(None).is_none());
    }

    fn header_signed(signed: &str, extra: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = headers(&["content-type", "x-amz-date", "x-amz-content-sha256"]);
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/s3/aws4_request,\
             SignedHeaders={signed},Signature=ab"
        );
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&auth).unwrap(),
        );
        for (name, value) in extra {
            h.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn header_signed_requests_carry_only_signed_amz_headers() {
        let signed = "content-type;host;x-amz-content-sha256;x-amz-date";
        assert!(check_header_signature(&header_signed(signed, &[])).is_ok());
        // The fuzzer's find: an empty, unsigned metadata header.
        for (name, value) in [
            ("x-amz-meta-x-aiz-akchhhhh", ""),
            ("x-amz-meta-owner", "mallory"),
            ("x-amz-website-redirect-location", "/elsewhere"),
            ("x-amz-tagging", "a=b"),
        ] {
            let err = check_header_signature(&header_signed(signed, &[(name, value)])).unwrap_err();
            assert_eq!(err.code(), &s3s::S3ErrorCode::AccessDenied, "{name}");
        }
        // Signed, it is the signer's to send (the signature covers it).
        let with_meta = format!("{signed};x-amz-meta-owner");
        let h = header_signed(&with_meta, &[("x-amz-meta-owner", "alice")]);
        assert!(check_header_signature(&h).is_ok());
        // x-amz-content-sha256 is exempt, as on a presigned request.
        let h = header_signed("content-type;host;x-amz-date", &[]);
        assert!(check_header_signature(&h).is_ok());
    }
}
