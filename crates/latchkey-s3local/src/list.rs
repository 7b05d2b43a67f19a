//! `ListObjectsV2` and `ListObjects` over the sorted on-disk index: prefix,
//! delimiter (common prefixes), max-keys, continuation tokens, start-after,
//! markers and `encoding-type=url`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as TOKEN;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::{
    CommonPrefix, ETag, EncodingType, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input,
    ListObjectsV2Output, Object, ObjectStorageClass, Timestamp,
};
use s3s::{S3Result, s3_error};

use crate::backend::{Backend, owner};
use crate::disk::ObjectMeta;
use crate::ingest::internal;

const MAX_KEYS: i32 = 1000;

/// Where a page resumes: after a key, or after every key under a common
/// prefix that the previous page already reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    AfterKey(String),
    AfterPrefix(String),
}

impl Resume {
    fn bound(&self) -> &str {
        match self {
            Resume::AfterKey(s) | Resume::AfterPrefix(s) => s,
        }
    }

    fn encode(&self) -> String {
        let (tag, s) = match self {
            Resume::AfterKey(s) => ('k', s),
            Resume::AfterPrefix(s) => ('p', s),
        };
        TOKEN.encode(format!("{tag}{s}"))
    }

    fn decode(token: &str) -> Option<Self> {
        let raw = String::from_utf8(TOKEN.decode(token).ok()?).ok()?;
        let mut chars = raw.chars();
        match chars.next()? {
            'k' => Some(Resume::AfterKey(chars.as_str().to_owned())),
            'p' => Some(Resume::AfterPrefix(chars.as_str().to_owned())),
            _ => None,
        }
    }
}

pub(crate) struct Page {
    pub objects: Vec<ObjectMeta>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    pub last: Option<Resume>,
}

/// The least byte string greater than every string starting with `prefix`;
/// `None` when there is none (empty, or all `0xff`).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Rows read per index query when no delimiter can cut a scan short.
const SCAN_CHUNK: usize = 1000;
/// With a delimiter, a run of keys under one common prefix is skipped by
/// seeking past it, so a query reads only a little past the last needed row.
const ROLLED_CHUNK: usize = 64;

/// One page of keys under `prefix`, rolled up at `delimiter`, after `resume`.
pub(crate) async fn walk(
    backend: &Backend,
    prefix: &str,
    delimiter: Option<&str>,
    resume: Option<&Resume>,
    max: usize,
) -> S3Result<Page> {
    let mut page = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    if max == 0 {
        // Nothing fits; reporting truncation without a token would make
        // clients loop forever.
        return Ok(page);
    }
    // Where the scan stands: the next row is the first key above (or at,
    // when inclusive) this bound.
    let (mut from, mut inclusive) = match resume {
        // Past every key under `p`, and never before the prefix.
        Some(Resume::AfterPrefix(p)) => match successor(p.as_bytes()) {
            Some(next) => (next.max(prefix.as_bytes().to_vec()), true),
            None => return Ok(page),
        },
        Some(Resume::AfterKey(k)) if k.as_str() >= prefix => (k.as_bytes().to_vec(), false),
        _ => (prefix.as_bytes().to_vec(), true),
    };
    // Keys with a given prefix are contiguous in byte order.
    let upper = successor(prefix.as_bytes());
    let index = backend.disk.index();
    loop {
        let wanted = max - page.objects.len() - page.prefixes.len() + 1;
        let chunk = wanted.min(if delimiter.is_some() {
            ROLLED_CHUNK
        } else {
            SCAN_CHUNK
        });
        let rows = index
            .scan(
                &from,
                inclusive,
                upper.as_deref(),
                delimiter.map(|d| (prefix.len(), d)),
                chunk,
            )
            .await
            .map_err(internal)?;
        let exhausted = rows.len() < chunk;
        let mut seek = None;
        for row in rows {
            if page.objects.len() + page.prefixes.len() >= max {
                page.truncated = true;
                return Ok(page);
            }
            let key = String::from_utf8(row.key).map_err(internal)?;
            // The scan's bounds keep every row under the prefix.
            let rest = key
                .strip_prefix(prefix)
                .ok_or_else(|| internal("listing: a key outside the prefix"))?;
            let rolled =
                delimiter.and_then(|d| rest.find(d).map(|i| &key[..prefix.len() + i + d.len()]));
            if let Some(cp) = rolled {
                page.prefixes.push(cp.to_owned());
                page.last = Some(Resume::AfterPrefix(cp.to_owned()));
                // Every other key under `cp` is part of this entry: go past them.
                seek = Some(successor(cp.as_bytes()));
                break;
            }
            let meta = row
                .meta
                .ok_or_else(|| internal("listing: a key without metadata"))?;
            page.last = Some(Resume::AfterKey(key));
            page.objects.push(meta);
        }
        match seek {
            Some(Some(next)) => (from, inclusive) = (next, true),
            Some(None) => return Ok(page),
            None if exhausted => return Ok(page),
            None => match &page.last {
                Some(Resume::AfterKey(k)) => (from, inclusive) = (k.as_bytes().to_vec(), false),
                // A chunk always ends on an object or a seek.
                _ => return Ok(page),
            },
        }
    }
}

/// Like `encodeURIComponent` but keeping `/`, as S3 does for `encoding-type=url`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

struct Encoder(bool);

impl Encoder {
    fn new(encoding: Option<&EncodingType>) -> S3Result<Self> {
        match encoding.map(EncodingType::as_str) {
            None => Ok(Self(false)),
            Some(e) if e == EncodingType::URL => Ok(Self(true)),
            Some(_) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request"
            )),
        }
    }

    fn enc(&self, s: &str) -> String {
        if self.0 {
            utf8_percent_encode(s, URL_ENCODE).to_string()
        } else {
            s.to_owned()
        }
    }
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
    }
}

fn object(meta: &ObjectMeta, enc: &Encoder, with_owner: bool) -> Object {
    Object {
        key: Some(enc.enc(&meta.key)),
        e_tag: Some(ETag::Strong(meta.etag.clone())),
        last_modified: Some(Timestamp::from(meta.last_modified())),
        size: i64::try_from(meta.size).ok(),
        storage_class: Some(ObjectStorageClass::from(
            ObjectStorageClass::STANDARD.to_owned(),
        )),
        owner: with_owner.then(owner),
        ..Default::default()
    }
}

fn prefixes(page: &Page, enc: &Encoder) -> Vec<CommonPrefix> {
    page.prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc.enc(p)),
        })
        .collect()
}

pub(crate) async fn list_objects_v2(
    backend: &Backend,
    input: ListObjectsV2Input,
) -> S3Result<ListObjectsV2Output> {
    let enc = Encoder::new(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let resume = match &input.continuation_token {
        Some(token) => Some(Resume::decode(token).ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })?),
        None => input.start_after.clone().map(Resume::AfterKey),
    };
    let page = walk(backend, &prefix, delimiter.as_deref(), resume.as_ref(), max).await?;
    let with_owner = input.fetch_owner.unwrap_or(false);
    let contents: Vec<Object> = page
        .objects
        .iter()
        .map(|m| object(m, &enc, with_owner))
        .collect();
    let common_prefixes = prefixes(&page, &enc);
    Ok(ListObjectsV2Output {
        name: Some(backend.bucket.clone()),
        prefix: Some(enc.enc(&prefix)),
        delimiter: delimiter.as_deref().map(|d| enc.enc(d)),
        start_after: input.start_after.as_deref().map(|s| enc.enc(s)),
        max_keys: input.max_keys.or(Some(MAX_KEYS)),
        key_count: i32::try_from(contents.len() + common_prefixes.len()).ok(),
        is_truncated: Some(page.truncated),
        continuation_token: input.continuation_token,
        next_continuation_token: page
            .truncated
            .then(|| page.last.as_ref().map(Resume::encode))
            .flatten(),
        contents: Some(contents),
        common_prefixes: Some(common_prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}

pub(crate) async fn list_objects_v1(
    backend: &Backend,
    input: ListObjectsInput,
) -> S3Result<ListObjectsOutput> {
    let enc = Encoder::new(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    // V1 markers are plain strings; one ending in the delimiter is taken as a
    // common prefix the previous page already reported.
    let resume = input
        .marker
        .clone()
        .filter(|m| !m.is_empty())
        .map(|m| match &delimiter {
            Some(d) if m.ends_with(d.as_str()) && m.starts_with(prefix.as_str()) => {
                Resume::AfterPrefix(m)
            }
            _ => Resume::AfterKey(m),
        });
    let page = walk(backend, &prefix, delimiter.as_deref(), resume.as_ref(), max).await?;
    let contents: Vec<Object> = page.objects.iter().map(|m| object(m, &enc, true)).collect();
    let common_prefixes = prefixes(&page, &enc);
    let next_marker = (page.truncated && delimiter.is_some())
        .then(|| page.last.as_ref().map(|r| enc.enc(r.bound())))
        .flatten();
    Ok(ListObjectsOutput {
        name: Some(backend.bucket.clone()),
        prefix: Some(enc.enc(&prefix)),
        marker: input.marker.as_deref().map(|m| enc.enc(m)),
        delimiter: delimiter.as_deref().map(|d| enc.enc(d)),
        max_keys: input.max_keys.or(Some(MAX_KEYS)),
        is_truncated: Some(page.truncated),
        next_marker,
        contents: Some(contents),
        common_prefixes: Some(common_prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::{Resume, successor};

    #[test]
    fn continuation_tokens_round_trip_any_key() {
        for r in [
            Resume::AfterKey("ünï/../x y".into()),
            Resume::AfterPrefix("a/".into()),
            Resume::AfterKey(String::new()),
        ] {
            assert_eq!(Resume::decode(&r.encode()), Some(r.clone()));
        }
        assert_eq!(Resume::decode("not base64!"), None);
        assert_eq!(Resume::decode("eGFiYw"), None); // "xabc": unknown tag
    }

    #[test]
    fn successor_bounds_every_key_with_the_prefix() {
        assert_eq!(successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor("é".as_bytes()), Some(vec![0xc3, 0xaa]));
        assert_eq!(successor(b"\xff\xff"), None);
        assert_eq!(successor(b""), None);
        for key in ["a/", "a/b", "a/\u{10ffff}", "a/\u{7f}"] {
            assert!(key.as_bytes() < successor(b"a/").unwrap().as_slice());
        }
        assert!(b"a0".as_slice() >= successor(b"a/").unwrap().as_slice());
    }
}
