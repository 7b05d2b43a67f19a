//! Normalisation of headers and query parameters on their way into a
//! canonical request: validated, trimmed, encoded and sorted.
//!
//! Crate-private builders that borrow the caller's strings wherever nothing
//! needs rewriting, so the common case allocates only the vectors themselves.

use std::borrow::Cow;

use crate::Error;
use crate::encode::{query_decode, uri_encode};

/// Headers on their way into a canonical request: validated, normalised, and
/// (after [`CanonicalHeaders::finish`]) sorted by name.
pub(crate) struct CanonicalHeaders<'a> {
    entries: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> CanonicalHeaders<'a> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n + 4),
        }
    }

    pub(crate) fn push(&mut self, name: &'a str, value: &'a str) -> Result<(), Error> {
        let name = normalize_name(name)?;
        let value = normalize_value(&name, value)?;
        self.entries.push((name, value));
        Ok(())
    }

    pub(crate) fn contains(&self, lower_name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == lower_name)
    }

    /// Stable sort, so repeated names keep the caller's order when joined.
    pub(crate) fn finish(&mut self) {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
    }

    pub(crate) fn text_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum()
    }

    pub(crate) fn write_canonical(&self, out: &mut String) {
        let mut prev: Option<&str> = None;
        for (name, value) in &self.entries {
            if prev == Some(name.as_ref()) {
                out.push(',');
            } else {
                if prev.is_some() {
                    out.push('\n');
                }
                out.push_str(name);
                out.push(':');
            }
            out.push_str(value);
            prev = Some(name);
        }
        if prev.is_some() {
            out.push('\n');
        }
    }

    pub(crate) fn write_signed(&self, out: &mut String) {
        let mut prev: Option<&str> = None;
        for (name, _) in &self.entries {
            if prev == Some(name.as_ref()) {
                continue;
            }
            if prev.is_some() {
                out.push(';');
            }
            out.push_str(name);
            prev = Some(name);
        }
    }
}

/// HTTP token characters (RFC 9110 `tchar`), as a table: checked for every
/// byte of every signed header name on the grant path.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

fn normalize_name(name: &str) -> Result<Cow<'_, str>, Error> {
    let name = name.trim_matches([' ', '\t']);
    let mut upper = false;
    for b in name.bytes() {
        if !TCHAR[b as usize] {
            return Err(Error::InvalidHeader(name.to_owned()));
        }
        upper |= b.is_ascii_uppercase();
    }
    if name.is_empty() {
        return Err(Error::InvalidHeader(String::new()));
    }
    if upper {
        Ok(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(name))
    }
}

/// Trims spaces and tabs (an HTTP parser strips them before the server ever
/// sees the value) and collapses runs of spaces, as S3 does when it recomputes.
/// Control characters are refused: a CR or LF would let a header value smuggle
/// extra headers into the request we hand out.
fn normalize_value<'a>(name: &str, value: &'a str) -> Result<Cow<'a, str>, Error> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::InvalidHeader(name.to_owned()));
    }
    let value = value.trim_matches([' ', '\t']);
    if !value.contains("  ") {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut last_space = false;
    for c in value.chars() {
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    Ok(Cow::Owned(out))
}

/// Query parameters on their way into a canonical query: stored encoded, since
/// the sort order is defined on the encoded form.
pub(crate) struct CanonicalQuery<'a> {
    params: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> CanonicalQuery<'a> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            params: Vec::with_capacity(n + 8),
        }
    }

    /// Adds a decoded pair.
    pub(crate) fn push(&mut self, key: &'a str, value: &'a str) {
        self.params.push((uri_encode(key), uri_encode(value)));
    }

    /// Adds every pair of a URL's raw query (`a=1&b=%20`): decoded, then
    /// re-encoded, so any valid spelling of a value signs the same way.
    pub(crate) fn push_raw(&mut self, raw: &'a str) {
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            self.params
                .push((reencode(query_decode(k)), reencode(query_decode(v))));
        }
    }

    /// Whether any parameter's decoded name equals `name`, ignoring ASCII case.
    pub(crate) fn has_name(&self, name: &str) -> bool {
        self.params
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// Sorts and joins. The result is both the canonical query and the query
    /// we put on the URL we hand out, so what is sent is exactly what was signed.
    pub(crate) fn finish(mut self) -> String {
        self.params.sort();
        let len: usize = self.params.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut out = String::with_capacity(len + 64);
        for (i, (k, v)) in self.params.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

fn reencode(decoded: Cow<'_, str>) -> Cow<'_, str> {
    match decoded {
        Cow::Borrowed(s) => uri_encode(s),
        Cow::Owned(s) => Cow::Owned(uri_encode(&s).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonical_query;

    #[test]
    fn query_sorts_on_encoded_form() {
        assert_eq!(
            canonical_query(&[("b", "2"), ("a", "z y"), ("a", "+"), ("uploads", "")]),
            "a=%2B&a=z%20y&b=2&uploads="
        );
        let mut q = CanonicalQuery::with_capacity(0);
        q.push_raw("uploadId=a%2Bb+c&&partNumber=1&uploads");
        assert_eq!(q.finish(), "partNumber=1&uploadId=a%2Bb%2Bc&uploads=");
    }
}
