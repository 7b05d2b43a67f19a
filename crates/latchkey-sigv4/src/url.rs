//! Just enough URL splitting to sign S3 requests: scheme, authority, path, query.
//!
//! A full URL parser would normalise things behind our back (and is another
//! dependency); signing needs the exact pieces, with the host spelled the way an
//! HTTP client will put it in the `Host` header: lower-case, default port dropped.

use std::borrow::Cow;

use crate::Error;

/// The parts of an absolute `http(s)` URL that SigV4 cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlParts<'a> {
    pub scheme: &'static str,
    /// `host[:port]` as sent in the `Host` header.
    pub authority: Cow<'a, str>,
    /// Raw path, possibly empty; canonicalised later.
    pub path: &'a str,
    /// Raw query without the `?`, possibly empty.
    pub query: &'a str,
}

pub(crate) fn split(url: &str) -> Result<UrlParts<'_>, Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(Error::InvalidUrl("missing scheme"))?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else if scheme.eq_ignore_ascii_case("http") {
        "http"
    } else {
        return Err(Error::InvalidUrl("scheme must be http or https"));
    };
    if rest.contains('#') {
        return Err(Error::InvalidUrl(
            "fragments are not sent, so cannot be signed",
        ));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) || query.bytes().any(|b| b <= b' ' || b == 0x7f)
    {
        return Err(Error::InvalidUrl(
            "spaces and control characters must be percent-encoded",
        ));
    }
    Ok(UrlParts {
        scheme,
        authority: normalize_authority(scheme, authority)?,
        path,
        query,
    })
}

/// Lower-cases the host and drops a default port, because HTTP clients do the
/// same when they write the `Host` header, and the server signs what it receives.
fn normalize_authority<'a>(scheme: &str, authority: &'a str) -> Result<Cow<'a, str>, Error> {
    if authority.is_empty() {
        return Err(Error::InvalidUrl("missing host"));
    }
    if authority.contains('@') {
        return Err(Error::InvalidUrl("user info in URLs is not supported"));
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or(Error::InvalidUrl("unterminated IPv6 address"))?;
        let (host, rest) = authority.split_at(close + 1);
        match rest.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if rest.is_empty() => (host, None),
            None => return Err(Error::InvalidUrl("bad authority")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~[]:".contains(&b);
    if host.is_empty() || !host.bytes().all(host_ok) {
        return Err(Error::InvalidUrl("bad host"));
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::InvalidUrl("bad port"));
    }
    let default_port = matches!(
        (scheme, port),
        ("http", Some("80")) | ("https", Some("443"))
    );
    let keep = if default_port { host } else { authority };
    if keep.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(keep.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(keep))
    }
}

/// Whether a host is an IP literal, where virtual-hosted buckets cannot work.
pub(crate) fn is_ip_literal(authority: &str) -> bool {
    if authority.starts_with('[') {
        return true;
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    host.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_normalises() {
        let p = split("HTTPS://Bucket.S3.Amazonaws.com:443/a/b?x=1&y").unwrap();
        assert_eq!(p.scheme, "https");
        assert_eq!(p.authority, "bucket.s3.amazonaws.com");
        assert_eq!((p.path, p.query), ("/a/b", "x=1&y"));
        let p = split("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            (p.authority.as_ref(), p.path, p.query),
            ("127.0.0.1:9000", "", "")
        );
        let p = split("http://[::1]:9000/k").unwrap();
        assert_eq!(p.authority, "[::1]:9000");
        assert!(is_ip_literal("[::1]:9000") && is_ip_literal("10.0.0.1:80"));
        assert!(!is_ip_literal("localhost:9000"));
    }

    #[test]
    fn refuses_what_cannot_be_signed() {
        for bad in [
            "ftp://h/",
            "h/k",
            "http:///k",
            "http://u:p@h/k",
            "http://h/k#frag",
            "http://h:x/k",
            "http://h/a b",
            "http://h\r\n/k",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }
}
