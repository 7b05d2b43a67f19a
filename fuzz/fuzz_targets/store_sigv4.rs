//! SigV4 as the embedded store checks it: a presigned PUT (content type,
//! length and SHA-256 signed, as latchkey's grants sign them) or a
//! header-signed PUT, with fuzzer-chosen edits to its method, path, query
//! parameters, headers (`Authorization` among them) and body.
//!
//! Whatever the edits: never a panic or a 5xx (but 501 for a method no S3
//! operation has, as HTTP says); a refusal is a 4xx that
//! stores nothing; an accepted PUT stored exactly what was signed (key,
//! bytes, content type), nothing else; any other accepted method (a CORS
//! preflight the edits made) stored nothing. Unedited requests are
//! accepted, so the oracle cannot pass by refusing everything.
#![no_main]

#[path = "common/store.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use base64::Engine as _;
use common::{HOST, path_of, store};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

#[derive(Arbitrary, Debug)]
enum Edit {
    Method(String),
    /// Text added to the path (the key changes, or its encoding does).
    Path(String),
    /// A query parameter given another value, or dropped (`None`).
    Query(u8, Option<String>),
    AddQuery(String, String),
    /// A header given this value, added, or dropped (`None`).
    Header(String, Option<String>),
    /// A header's value edited at one byte.
    Poke(u8, u16, u8),
    Body(Vec<u8>),
    /// A signing clock other than now, by this many seconds.
    Clock(i32),
}

const BODY: &[u8] = b"\x89PNG\r\n\x1a\n fuzzed bytes";
static CASE: AtomicU64 = AtomicU64::new(0);

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

fuzz_target!(|input: (bool, Vec<Edit>)| {
    let (presigned, edits) = input;
    let unedited = edits.is_empty();
    let s = store();
    let key = format!("fuzz/{}.png", CASE.fetch_add(1, Ordering::Relaxed));
    let path = path_of(&key);
    let url = format!("http://{HOST}{path}");
    // Clock edits add up, within two days either way: enough to cross the
    // store's skew allowance and the grant's expiry, and to stay a date.
    let skew: i64 = edits
        .iter()
        .map(|e| match e {
            Edit::Clock(secs) => i64::from(*secs),
            _ => 0,
        })
        .fold(0, i64::saturating_add);
    let now = OffsetDateTime::now_utc() + time::Duration::seconds(skew.clamp(-172_800, 172_800));
    let length = BODY.len().to_string();
    let checksum = base64::engine::general_purpose::STANDARD.encode(sha256(BODY));
    let signed_headers = [
        ("content-type", "image/png"),
        ("content-length", length.as_str()),
        ("x-amz-checksum-sha256", checksum.as_str()),
    ];
    let (pq, mut headers): (String, Vec<(String, String)>) = if presigned {
        let u = s
            .signer
            .presign("PUT", &url, &signed_headers, &[], 300, now)
            .unwrap();
        let pq = u[u.find(HOST).unwrap() + HOST.len()..].to_owned();
        let h = signed_headers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        (pq, h)
    } else {
        let hex: String = sha256(BODY).iter().map(|b| format!("{b:02x}")).collect();
        let mut h: Vec<(String, String)> = signed_headers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        h.extend(
            s.signer
                .sign_headers("PUT", &url, &signed_headers, &hex, now)
                .unwrap(),
        );
        (path.clone(), h)
    };

    let (mut method, mut pq, mut body) = ("PUT".to_owned(), pq, BODY.to_vec());
    let (base, query) = pq
        .split_once('?')
        .map_or((pq.clone(), String::new()), |(a, b)| {
            (a.to_owned(), b.to_owned())
        });
    let mut base = base;
    let mut params: Vec<(String, Option<String>)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (p.to_owned(), None),
        })
        .collect();
    for e in edits {
        match e {
            Edit::Method(m) => method = m,
            Edit::Path(p) => base.push_str(&p),
            Edit::Query(i, v) if !params.is_empty() => {
                let at = usize::from(i) % params.len();
                match v {
                    Some(v) => params[at].1 = Some(v),
                    None => {
                        params.remove(at);
                    }
                }
            }
            Edit::Query(..) => {}
            Edit::AddQuery(k, v) => params.push((k, Some(v))),
            Edit::Header(name, v) => {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
                if let Some(v) = v {
                    headers.push((name, v));
                }
            }
            Edit::Poke(i, at, b) if !headers.is_empty() => {
                let h = usize::from(i) % headers.len();
                let mut v = std::mem::take(&mut headers[h].1).into_bytes();
                if !v.is_empty() {
                    let at = usize::from(at) % v.len();
                    v[at] = b;
                }
                headers[h].1 = String::from_utf8_lossy(&v).into_owned();
            }
            Edit::Poke(..) => {}
            Edit::Body(b) => body = b,
            Edit::Clock(_) => {}
        }
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| v.as_ref().map_or(k.clone(), |v| format!("{k}={v}")))
        .collect();
    pq = if query.is_empty() {
        base
    } else {
        format!("{base}?{}", query.join("&"))
    };

    // Framing is hyper's before the store sees a request: an unreadable
    // or repeated Content-Length is refused there, a longer body is cut
    // at it (the rest would be the next request), a shorter one never
    // ends. Model that, since here the body is handed over whole.
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim())
        .collect();
    match lengths.as_slice() {
        [] => {}
        [one] => match one.parse::<usize>() {
            Ok(n) if n <= body.len() && one.bytes().all(|b| b.is_ascii_digit()) => body.truncate(n),
            _ => return,
        },
        _ => return,
    }

    let Some(answer) = s.send(method.as_bytes(), &pq, &headers, body) else {
        // Not even an HTTP request (a method or header no client could send).
        return;
    };
    let text = String::from_utf8_lossy(&answer.body);
    // 501 is HTTP's answer to a method the server does not know (RFC 9110
    // §15.6.2); to every other request, never a 5xx.
    let known = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"].contains(&method.as_str());
    assert!(
        !answer.status.is_server_error() || (!known && answer.status == 501),
        "{} for {method} {pq} {headers:?}: {text}",
        answer.status
    );

    let listed = s.list();
    if unedited {
        assert!(
            answer.status.is_success(),
            "a signed PUT was refused: {}: {text}",
            answer.status
        );
    }
    if answer.status.is_success() && method != "PUT" {
        // A CORS preflight the edits made, say: answered, nothing stored.
        assert_eq!(
            listed,
            vec![],
            "{method} stored something: {pq} {headers:?}"
        );
    } else if answer.status.is_success() {
        // Exactly the signed object, and nothing else.
        assert_eq!(
            listed,
            vec![(key.clone(), BODY.len() as u64)],
            "{pq} {headers:?}"
        );
        let got = s.signed("GET", &path);
        assert_eq!(got.body, BODY, "{pq}");
        assert_eq!(
            got.headers.get("content-type").unwrap(),
            "image/png",
            "{pq} {headers:?}"
        );
        assert!(
            !got.headers
                .keys()
                .any(|k| k.as_str().starts_with("x-amz-meta-")),
            "unsigned metadata stored: {headers:?}"
        );
        let gone = s.signed("DELETE", &path);
        assert!(gone.status.is_success(), "delete: {}", gone.status);
    } else {
        assert!(
            answer.status.is_client_error() || answer.status == 501,
            "{} for {method} {pq}",
            answer.status
        );
        assert!(
            text.contains("<Error>") || method == "HEAD",
            "{}: {text}",
            answer.status
        );
        assert_eq!(
            listed,
            vec![],
            "a refused request stored something: {pq} {headers:?}"
        );
    }
});
