//! tus request headers are client text: `Upload-Metadata`,
//! `Upload-Checksum` and `Upload-Offset`/`Upload-Length` are parsed or
//! refused with a 4xx, never a panic, and what is accepted keeps its
//! contract (metadata keys are safe tokens; a checksum is sha1/sha256 with
//! the digest the header spelled; a number is plain digits). Input: the
//! `Upload-Metadata` value, a newline, then the bytes tried as
//! `Upload-Checksum` and as `Upload-Offset`.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use latchkey_api::broker::modes::tus::Algorithm;
use latchkey_api::tus_header_parsers::{checksum, metadata, offset};
use libfuzzer_sys::fuzz_target;

fn client_error(e: &latchkey_api::ApiError) -> bool {
    e.parts().0.is_client_error()
}

fuzz_target!(|data: &[u8]| {
    let (meta, raw) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    match metadata(&String::from_utf8_lossy(meta)) {
        Ok((kept, _)) => {
            for k in kept.keys() {
                assert!(!k.is_empty() && k.len() <= 64, "{k:?}");
                assert!(
                    k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "{k:?}"
                );
            }
        }
        Err(e) => assert!(client_error(&e), "{e:?}"),
    }

    let Ok(value) = HeaderValue::from_bytes(raw) else {
        return;
    };
    match checksum(value.clone()) {
        Ok(Some(sum)) => {
            let text = std::str::from_utf8(raw).unwrap().trim();
            let (alg, b64) = text.split_once(' ').unwrap();
            assert_eq!(STANDARD.decode(b64.trim()).unwrap(), sum.digest);
            let want = match alg.to_ascii_lowercase().as_str() {
                "sha1" => Algorithm::Sha1,
                "sha256" => Algorithm::Sha256,
                other => panic!("accepted algorithm {other:?}"),
            };
            assert!(want == sum.algorithm);
        }
        Ok(None) => panic!("a present Upload-Checksum is parsed or refused"),
        Err(e) => assert!(client_error(&e), "{e:?}"),
    }
    match offset(value) {
        Ok(Some(n)) => {
            let text = std::str::from_utf8(raw).unwrap().trim();
            assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
            assert_eq!(text.parse::<u64>().unwrap(), n);
        }
        Ok(None) => panic!("a present Upload-Offset is parsed or refused"),
        Err(e) => assert!(client_error(&e), "{e:?}"),
    }
});
