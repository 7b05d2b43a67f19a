//! Property tests of the tus header parsers (proptest; the coverage-guided
//! side is `fuzz/`'s `tus_headers` target): any header value is parsed or
//! refused with a 4xx, never a panic, and what is accepted keeps its
//! contract.

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::{
    UPLOAD_CHECKSUM, UPLOAD_LENGTH, UPLOAD_OFFSET, number, parse_checksum, parse_metadata,
};
use crate::broker::modes::tus::Algorithm;

fn headers(name: axum::http::HeaderName, raw: &[u8]) -> Option<HeaderMap> {
    let v = HeaderValue::from_bytes(raw).ok()?;
    let mut h = HeaderMap::new();
    h.insert(name, v);
    Some(h)
}

fn is_4xx(e: &crate::error::ApiError) -> bool {
    e.parts().0.is_client_error()
}

/// `cases` cases, or `PROPTEST_CASES` when set; failing inputs are kept
/// in (and replayed first from) the file named here.
fn config(cases: u32) -> ProptestConfig {
    latchkey_testkit::proptest_config(cases, "proptest-regressions/routes/tus_props.txt")
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn metadata_never_panics_and_keeps_only_safe_keys(raw in prop_oneof![
        any::<String>(),
        "([a-z_\\-é ]{0,8} [A-Za-z0-9+/=]{0,12},?){0,6}",
    ]) {
        match parse_metadata(Some(&raw)) {
            Ok((meta, _)) => {
                for k in meta.keys() {
                    prop_assert!(!k.is_empty() && k.len() <= 64, "{k:?}");
                    prop_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{k:?}");
                }
            }
            Err(e) => prop_assert!(is_4xx(&e)),
        }
    }

    #[test]
    fn metadata_round_trips(pairs in proptest::collection::btree_map("[a-z0-9_-]{1,16}", any::<String>(), 0..6)) {
        let raw = pairs
            .iter()
            .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
            .collect::<Vec<_>>()
            .join(",");
        let (meta, f) = parse_metadata(Some(&raw)).unwrap();
        for (k, v) in &pairs {
            match k.as_str() {
                "profile" | "filename" | "name" | "filetype" | "type" => {}
                _ => prop_assert_eq!(meta.get(k), Some(v)),
            }
        }
        if let Some(p) = pairs.get("profile").filter(|p| !p.is_empty()) {
            prop_assert_eq!(f.profile.as_ref(), Some(p));
        }
    }

    #[test]
    fn checksum_never_panics(raw in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "(sha1|SHA256|md5|sha256|) {0,2}[A-Za-z0-9+/=]{0,60}".prop_map(String::into_bytes),
    ]) {
        let Some(h) = headers(UPLOAD_CHECKSUM, &raw) else { return Ok(()); };
        match parse_checksum(&h) {
            Ok(Some(sum)) => {
                let text = std::str::from_utf8(&raw).unwrap().trim();
                let (_, b64) = text.split_once(' ').unwrap();
                prop_assert_eq!(&STANDARD.decode(b64.trim()).unwrap(), &sum.digest);
                prop_assert!(matches!(sum.algorithm, Algorithm::Sha1 | Algorithm::Sha256));
            }
            Ok(None) => prop_assert!(false, "a present header is parsed or refused"),
            Err(e) => prop_assert!(is_4xx(&e)),
        }
    }

    #[test]
    fn offsets_and_lengths_are_plain_digits(raw in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..30),
        "[0-9+\\- ]{0,25}".prop_map(String::into_bytes),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
    ]) {
        for name in [UPLOAD_OFFSET, UPLOAD_LENGTH] {
            let Some(h) = headers(name.clone(), &raw) else { return Ok(()); };
            match number(&h, &name) {
                Ok(Some(n)) => {
                    let text = std::str::from_utf8(&raw).unwrap().trim();
                    prop_assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
                    prop_assert_eq!(text.parse::<u64>().unwrap(), n);
                }
                Ok(None) => prop_assert!(false, "a present header is parsed or refused"),
                Err(e) => prop_assert!(is_4xx(&e)),
            }
        }
    }
}
