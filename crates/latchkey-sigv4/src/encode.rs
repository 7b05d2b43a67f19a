//! Percent-encoding and timestamp formatting exactly as SigV4 wants them.
//!
//! S3 canonicalises paths and query strings with its own rule (every byte except
//! `A-Z a-z 0-9 - . _ ~` becomes `%XX`, upper-case hex), which differs from both
//! `application/x-www-form-urlencoded` and RFC 3986's "encode only what you must".
//! Getting one byte of this wrong breaks the signature, so the rule lives here once.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use time::{OffsetDateTime, UtcOffset};

use crate::Error;

/// Bytes S3 leaves literal in a query key or value: `A-Z a-z 0-9 - . _ ~`.
/// A table rather than `percent_encoding`'s set walk, because encoding sits
/// on every grant's hot path (profiled: it was the largest cost after SHA-256).
const UNRESERVED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    t
};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Encodes `bytes` with the S3 rule (`/` kept when `keep_slash`), borrowing
/// when nothing needs encoding and allocating exactly once otherwise.
fn encode_bytes(bytes: &[u8], keep_slash: bool) -> Option<String> {
    let literal = |b: &u8| UNRESERVED[*b as usize] || (keep_slash && *b == b'/');
    let first = bytes.iter().position(|b| !literal(b))?;
    let mut out = Vec::with_capacity(bytes.len() + 2 * (bytes.len() - first));
    let mut rest = bytes;
    let mut run = first;
    loop {
        // Copy the run of literal bytes at once, then escape one byte.
        out.extend_from_slice(&rest[..run]);
        let Some(&b) = rest.get(run) else { break };
        out.extend_from_slice(&[
            b'%',
            HEX_UPPER[(b >> 4) as usize],
            HEX_UPPER[(b & 15) as usize],
        ]);
        rest = &rest[run + 1..];
        run = rest.iter().position(|b| !literal(b)).unwrap_or(rest.len());
    }
    // Only ASCII was written for every non-literal byte, and literal bytes are ASCII.
    Some(String::from_utf8(out).unwrap_or_default())
}

/// Encodes one query key or value (or any single path segment) the S3 way.
/// Borrows when nothing needs encoding, which is the common case for the
/// `X-Amz-*` parameters and most header-derived values.
pub fn uri_encode(s: &str) -> Cow<'_, str> {
    encode_bytes(s.as_bytes(), false).map_or(Cow::Borrowed(s), Cow::Owned)
}

/// Encodes an object key or path, keeping `/`. S3 keys are signed once-encoded
/// (unlike other AWS services, which double-encode), so this is also the
/// canonical URI of a decoded path.
pub fn uri_encode_path(s: &str) -> Cow<'_, str> {
    encode_bytes(s.as_bytes(), true).map_or(Cow::Borrowed(s), Cow::Owned)
}

/// Turns the path of a URL into its canonical URI: decode once, then encode with
/// the S3 rule. This is idempotent on paths we produced ourselves and also
/// accepts paths written with bytes a browser leaves alone (`$`, `+`, `!`),
/// which the server decodes before recomputing the signature.
pub fn canonical_uri(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    if path.bytes().all(|b| is_unreserved(b) || b == b'/') {
        return Cow::Borrowed(path);
    }
    let decoded: Cow<'_, [u8]> = percent_decode_str(path).into();
    match encode_bytes(&decoded, true) {
        Some(encoded) => Cow::Owned(encoded),
        // Decoding changed nothing that needs encoding back: it was all literal.
        None => Cow::Owned(String::from_utf8_lossy(&decoded).into_owned()),
    }
}

/// Decodes a `%XX` component of a URL's query. `+` is kept literally: the URLs
/// this crate produces never use `+` for space, and treating it as a space would
/// make `a+b` sign as `a%20b`.
pub(crate) fn query_decode(s: &str) -> Cow<'_, str> {
    percent_decode_str(s).decode_utf8_lossy()
}

pub(crate) fn is_unreserved(b: u8) -> bool {
    UNRESERVED[b as usize]
}

/// A signing timestamp, pre-formatted as `YYYYMMDDTHHMMSSZ`, with the date
/// (`YYYYMMDD`) as its first eight bytes. Kept on the stack because every
/// signature needs both forms and formatting through `time`'s descriptions
/// would allocate and parse a format string each time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AmzDate {
    buf: [u8; 16],
}

impl AmzDate {
    /// Formats `now` in UTC; any offset is converted first, because the scope
    /// date must be the UTC day the server will compute.
    pub fn new(now: OffsetDateTime) -> Result<Self, Error> {
        let t = now.to_offset(UtcOffset::UTC);
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return Err(Error::TimeOutOfRange);
        }
        let mut buf = *b"00000000T000000Z";
        put_digits(&mut buf[0..4], year as u32);
        put_digits(&mut buf[4..6], u8::from(t.month()) as u32);
        put_digits(&mut buf[6..8], t.day() as u32);
        put_digits(&mut buf[9..11], t.hour() as u32);
        put_digits(&mut buf[11..13], t.minute() as u32);
        put_digits(&mut buf[13..15], t.second() as u32);
        Ok(Self { buf })
    }

    /// `YYYYMMDDTHHMMSSZ`, the `x-amz-date` value.
    pub fn datetime(&self) -> &str {
        // The buffer only ever holds ASCII digits, 'T' and 'Z'.
        std::str::from_utf8(&self.buf).unwrap_or_default()
    }

    /// `YYYYMMDD`, the scope date and signing-key input.
    pub fn date(&self) -> &str {
        &self.datetime()[..8]
    }
}

impl std::fmt::Debug for AmzDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.datetime())
    }
}

fn put_digits(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form POST policies use for `expiration`.
#[cfg(test)]
pub(crate) fn iso8601_millis(t: OffsetDateTime) -> Result<String, Error> {
    let mut out = String::with_capacity(24);
    write_iso8601_millis(&mut out, t)?;
    Ok(out)
}

/// [`iso8601_millis`] appended to `out` (the policy document), with the
/// digit writer [`AmzDate`] uses: `format!` machinery was a visible share of
/// a POST grant.
pub(crate) fn write_iso8601_millis(out: &mut String, t: OffsetDateTime) -> Result<(), Error> {
    let t = t.to_offset(UtcOffset::UTC);
    if !(0..=9999).contains(&t.year()) {
        return Err(Error::TimeOutOfRange);
    }
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut buf[0..4], t.year() as u32);
    put_digits(&mut buf[5..7], u8::from(t.month()) as u32);
    put_digits(&mut buf[8..10], t.day() as u32);
    put_digits(&mut buf[11..13], t.hour() as u32);
    put_digits(&mut buf[14..16], t.minute() as u32);
    put_digits(&mut buf[17..19], t.second() as u32);
    put_digits(&mut buf[20..23], t.millisecond() as u32);
    // Only ASCII digits and separators.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn encodes_everything_but_unreserved() {
        assert_eq!(uri_encode("a b+c%d~e/f"), "a%20b%2Bc%25d~e%2Ff");
        assert_eq!(
            uri_encode_path("photos/été 1.jpg"),
            "photos/%C3%A9t%C3%A9%201.jpg"
        );
        assert!(matches!(uri_encode("plain-key_1.txt~"), Cow::Borrowed(_)));
    }

    #[test]
    fn canonical_uri_is_idempotent_and_normalises() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/test$file.text"), "/test%24file.text");
        assert_eq!(canonical_uri("/test%24file.text"), "/test%24file.text");
        assert_eq!(canonical_uri("/a%20b/c+d"), "/a%20b/c%2Bd");
        assert_eq!(canonical_uri("/%ff"), "/%FF");
    }

    #[test]
    fn formats_dates_in_utc() {
        let d = AmzDate::new(datetime!(2013-05-24 02:00:00 +02:00)).unwrap();
        assert_eq!(d.datetime(), "20130524T000000Z");
        assert_eq!(d.date(), "20130524");
        assert_eq!(
            iso8601_millis(datetime!(2015-12-30 12:00:00.5 UTC)).unwrap(),
            "2015-12-30T12:00:00.500Z"
        );
        assert!(AmzDate::new(datetime!(-0001-01-01 0:00 UTC)).is_err());
    }

    #[test]
    fn iso8601_millis_matches_format_over_the_range() {
        let expected = |t: OffsetDateTime| {
            let t = t.to_offset(UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        };
        let first = datetime!(0000-01-01 0:00 UTC).unix_timestamp_nanos();
        let last = datetime!(9999-12-31 23:59:59.999 UTC).unix_timestamp_nanos();
        // ~10,000 steps of a year and about a day, plus 1.234567891 s: each
        // step moves the year, the day of the year, the hour and the
        // milliseconds, so every field width and value range comes up.
        let stride = (last - first) / 9973 + 1_234_567_891;
        let mut at = first;
        while at <= last {
            let t = OffsetDateTime::from_unix_timestamp_nanos(at).unwrap();
            assert_eq!(iso8601_millis(t).unwrap(), expected(t));
            at += stride;
        }
        for t in [
            datetime!(0000-01-01 0:00 UTC),
            datetime!(0005-06-07 08:09:01.007 UTC),
            datetime!(9999-12-31 23:59:59.999 UTC),
            datetime!(2026-01-15 12:00:00.5 +05:30),
        ] {
            assert_eq!(iso8601_millis(t).unwrap(), expected(t));
        }
        assert!(iso8601_millis(datetime!(-0001-12-31 23:59 UTC)).is_err());
    }
}
