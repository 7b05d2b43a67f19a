//! Where a bucket's objects live, and the URL of each one.
//!
//! Path-style (`http://127.0.0.1:9000/bucket/key`) is what local and
//! self-hosted stores (the embedded store, Garage, MinIO) answer to;
//! virtual-hosted (`https://bucket.s3.amazonaws.com/key`) is what AWS prefers.
//! The choice changes both the URL and the signed `Host`, so it is made once
//! here rather than by every caller.

use crate::Error;
use crate::encode::uri_encode_path;
use crate::url::{is_ip_literal, split};

/// One bucket at one S3-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: &'static str,
    bucket: String,
    region: String,
    path_style: bool,
    /// `Host` header value for requests on this bucket's objects.
    host: String,
    /// Everything up to and including the `/` before the object key.
    object_prefix: String,
}

impl Endpoint {
    /// `endpoint` is `scheme://host[:port]` with no path: a path prefix would
    /// have to be threaded through every canonical URI, and no store we target
    /// needs one. A default port is dropped, as HTTP clients drop it from `Host`.
    pub fn new(
        endpoint: &str,
        bucket: &str,
        region: &str,
        path_style: bool,
    ) -> Result<Self, Error> {
        let bad = |why: &'static str| Error::InvalidEndpoint(why);
        let parts = split(endpoint).map_err(|_| bad("expected scheme://host[:port]"))?;
        if !(parts.path.is_empty() || parts.path == "/") || !parts.query.is_empty() {
            return Err(bad("the endpoint must not have a path or query"));
        }
        validate_bucket(bucket, path_style)?;
        if region.is_empty() || !region.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            return Err(bad("the region must be non-empty, without spaces or '/'"));
        }
        if !path_style && is_ip_literal(&parts.authority) {
            return Err(bad(
                "virtual-hosted style needs a DNS name, not an IP address",
            ));
        }
        let (host, object_prefix) = if path_style {
            let host = parts.authority.into_owned();
            let prefix = format!("{}://{host}/{bucket}/", parts.scheme);
            (host, prefix)
        } else {
            let host = format!("{bucket}.{}", parts.authority);
            let prefix = format!("{}://{host}/", parts.scheme);
            (host, prefix)
        };
        Ok(Self {
            scheme: parts.scheme,
            bucket: bucket.to_owned(),
            region: region.to_owned(),
            path_style,
            host,
            object_prefix,
        })
    }

    /// The object's URL with the key encoded as S3 canonicalises it, so the
    /// URL sent is byte-for-byte the URI that was signed.
    pub fn object_url(&self, key: &str) -> String {
        let encoded = uri_encode_path(key);
        let mut url = String::with_capacity(self.object_prefix.len() + encoded.len());
        url.push_str(&self.object_prefix);
        url.push_str(&encoded);
        url
    }

    /// Target of bucket-level requests and of browser POST uploads. Spelled as
    /// the AWS SDKs spell it (`…/bucket` path-style, `…://bucket.host/`
    /// virtual-hosted) so it matches what stores are tested against.
    pub fn bucket_url(&self) -> String {
        if self.path_style {
            self.object_prefix.trim_end_matches('/').to_owned()
        } else {
            self.object_prefix.clone()
        }
    }

    /// `host[:port]` exactly as it goes in the `Host` header (and is signed).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http` or `https`, lower-case.
    pub fn scheme(&self) -> &str {
        self.scheme
    }

    /// The bucket name, as validated at construction.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The region to sign for; a [`crate::Signer`] for this endpoint must use it too.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether the bucket is in the path (true) or the host name (false).
    pub fn path_style(&self) -> bool {
        self.path_style
    }
}

/// Bucket names end up in paths or host names unencoded, so only the
/// characters that are safe in both are accepted (S3's own naming rules,
/// loosened to allow upper case and `_` for path-style legacy buckets).
fn validate_bucket(bucket: &str, path_style: bool) -> Result<(), Error> {
    let allowed = |b: u8| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || b == b'.'
            || (path_style && (b.is_ascii_uppercase() || b == b'_'))
    };
    if bucket.is_empty() || bucket.len() > 255 || !bucket.bytes().all(allowed) {
        return Err(Error::InvalidEndpoint(if path_style {
            "the bucket name may only use letters, digits, '-', '.' and '_'"
        } else {
            "a virtual-hosted bucket name may only use a-z, 0-9, '-' and '.'"
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_style_urls() {
        let e = Endpoint::new("http://127.0.0.1:9000/", "photos", "us-east-1", true).unwrap();
        assert_eq!(e.host(), "127.0.0.1:9000");
        assert_eq!(e.bucket_url(), "http://127.0.0.1:9000/photos");
        assert_eq!(
            e.object_url("u/1/été +%~.jpg"),
            "http://127.0.0.1:9000/photos/u/1/%C3%A9t%C3%A9%20%2B%25~.jpg"
        );
    }

    #[test]
    fn virtual_hosted_urls() {
        let e = Endpoint::new(
            "https://s3.amazonaws.com:443",
            "examplebucket",
            "us-east-1",
            false,
        )
        .unwrap();
        assert_eq!(e.host(), "examplebucket.s3.amazonaws.com");
        assert_eq!(e.bucket_url(), "https://examplebucket.s3.amazonaws.com/");
        assert_eq!(
            e.object_url("test$file.text"),
            "https://examplebucket.s3.amazonaws.com/test%24file.text"
        );
    }

    #[test]
    fn refuses_unusable_endpoints() {
        assert!(Endpoint::new("http://h:9000/prefix", "b", "r", true).is_err());
        assert!(Endpoint::new("http://h:9000?x", "b", "r", true).is_err());
        assert!(Endpoint::new("h:9000", "b", "r", true).is_err());
        assert!(Endpoint::new("http://h", "", "r", true).is_err());
        assert!(Endpoint::new("http://h", "a/b", "r", true).is_err());
        assert!(Endpoint::new("http://h", "b", "", true).is_err());
        assert!(Endpoint::new("http://h", "Upper", "r", false).is_err());
        assert!(Endpoint::new("http://10.0.0.1:9000", "b", "r", false).is_err());
    }
}
