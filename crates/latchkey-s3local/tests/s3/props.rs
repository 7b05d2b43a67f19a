//! Property tests of the store's SigV4 handling (proptest; the
//! coverage-guided side is `fuzz/`'s `store_sigv4` target): a presigned PUT
//! with random edits to its query (a parameter dropped, changed, duplicated
//! or added; the key changed), and a header-signed PUT with random edits to
//! its `Authorization`, `x-amz-date`, `x-amz-content-sha256`, signed
//! headers, key or body, are always refused with a 4xx XML error, never a
//! 5xx, and store nothing. Real HTTP, so few cases.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use latchkey_sigv4::{Credentials, Signer};
use proptest::prelude::*;
use time::OffsetDateTime;

use crate::common::{AK, BUCKET, SK, TestStore, sha256_hex, start};

const BODY: &[u8] = b"\x89PNG pretend image bytes";
const REGRESSIONS: &str = "tests/proptest-regressions/props.txt";

/// `cases` cases, or `PROPTEST_CASES` when it is set (scripts/test's
/// bounded fuzzing step raises it, docs/SECURITY.md). Failing inputs are
/// kept in `regressions` (relative to the crate, where tests run) and
/// replayed first on every run.
pub fn config(cases: u32, regressions: &'static str) -> ProptestConfig {
    latchkey_testkit::proptest_config(cases, regressions)
}

fn store() -> &'static (tokio::runtime::Runtime, TestStore) {
    static STORE: OnceLock<(tokio::runtime::Runtime, TestStore)> = OnceLock::new();
    STORE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(start());
        (rt, s)
    })
}

#[derive(Clone, Debug)]
enum Edit {
    Drop(prop::sample::Index),
    Set(prop::sample::Index, String),
    Duplicate(prop::sample::Index),
    Add(String, String),
    Expires(String),
    Key(String),
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._~-]{0,24}",
        Just(String::new()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("604801".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("%ZZ".to_owned()),
        Just("%00".to_owned()),
        Just("20000101T000000Z".to_owned()),
        Just("AKIDLATCHKEYTEST%2F20990101%2Fus-east-1%2Fs3%2Faws4_request".to_owned()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::Drop),
        (any::<prop::sample::Index>(), value()).prop_map(|(i, v)| Edit::Set(i, v)),
        any::<prop::sample::Index>().prop_map(Edit::Duplicate),
        (
            prop_oneof![
                Just("x-amz-acl".to_owned()),
                Just("X-Amz-Security-Token".to_owned()),
                Just("uploadId".to_owned()),
                Just("partNumber".to_owned()),
                "[a-z]{1,8}",
            ],
            value()
        )
            .prop_map(|(k, v)| Edit::Add(k, v)),
        value().prop_map(Edit::Expires),
        "[a-z0-9/.]{1,6}".prop_map(Edit::Key),
    ]
}

fn apply(url: &str, edits: &[Edit]) -> String {
    let (path, query) = url.split_once('?').unwrap();
    let mut path = path.to_owned();
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    for e in edits {
        match e {
            Edit::Drop(i) if !pairs.is_empty() => {
                pairs.remove(i.index(pairs.len()));
            }
            Edit::Set(i, v) if !pairs.is_empty() => {
                let at = i.index(pairs.len());
                pairs[at].1 = v.clone();
            }
            Edit::Duplicate(i) if !pairs.is_empty() => {
                let p = pairs[i.index(pairs.len())].clone();
                pairs.push(p);
            }
            Edit::Add(k, v) => pairs.push((k.clone(), v.clone())),
            Edit::Expires(v) => {
                for p in pairs.iter_mut().filter(|p| p.0 == "X-Amz-Expires") {
                    p.1 = v.clone();
                }
            }
            Edit::Key(suffix) => path.push_str(suffix),
            _ => {}
        }
    }
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", query.join("&"))
}

/// The query as a set: SigV4 sorts parameters, so only a different set of
/// pairs (or path) is a different request.
fn canonical(url: &str) -> (String, Vec<String>) {
    let (path, query) = url.split_once('?').unwrap();
    let mut q: Vec<String> = query.split('&').map(str::to_owned).collect();
    q.sort();
    (path.to_owned(), q)
}

static CASE: AtomicU32 = AtomicU32::new(0);

proptest! {
    #![proptest_config(config(64, REGRESSIONS))]

    #[test]
    fn mutated_presigned_urls_are_refused_with_4xx_xml(
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let (rt, s) = store();
        let key = format!("props/{}.png", CASE.fetch_add(1, Ordering::Relaxed));
        let (status, body, stored) = rt.block_on(async {
            let p = s
                .client
                .put_object()
                .bucket(BUCKET)
                .key(&key)
                .content_type("image/png")
                .content_length(BODY.len() as i64)
                .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
                .await
                .unwrap();
            let url = apply(p.uri(), &edits);
            if canonical(&url) == canonical(p.uri()) {
                return (None, String::new(), false);
            }
            let mut req = s.http.put(&url).body(BODY.to_vec());
            for (k, v) in p.headers() {
                if k != "host" {
                    req = req.header(k, v);
                }
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            let body = res.text().await.unwrap();
            let stored = s.exists(&key).await;
            (Some(status), body, stored)
        });
        let Some(status) = status else { return Ok(()); };
        prop_assert!(status.is_client_error(), "{status} for {edits:?}: {body}");
        prop_assert!(body.contains("<Error>"), "{status} for {edits:?}: {body}");
        prop_assert!(!stored, "{edits:?} stored an object");
    }
}

#[derive(Clone, Debug)]
enum HeaderEdit {
    /// One of `Credential=`, `SignedHeaders=`, `Signature=` given another value.
    Part(prop::sample::Index, String),
    /// One of them left out.
    DropPart(prop::sample::Index),
    /// A second `Name=value` after them.
    Duplicate(prop::sample::Index, String),
    Algorithm(String),
    /// The header cut short.
    Truncate(prop::sample::Index),
    /// Any text instead.
    Authorization(String),
    /// `None` drops the header.
    Date(Option<String>),
    ContentSha256(Option<String>),
    /// The (signed) content type changed.
    ContentType(String),
    /// A byte of the body changed.
    Body(prop::sample::Index),
    Key(String),
}

/// `{day}` stands for the signing day, so a value can be right in all but one way.
fn part_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9/;_=-]{0,24}",
        Just(String::new()),
        Just(format!("{AK}/20000101/us-east-1/s3/aws4_request")),
        Just("OTHERKEY/{day}/us-east-1/s3/aws4_request".to_owned()),
        Just(format!("{AK}/{{day}}/eu-west-1/s3/aws4_request")),
        Just(format!("{AK}/{{day}}/us-east-1/iam/aws4_request")),
        Just(format!("{AK}/{{day}}/us-east-1/sts/aws4_request")),
        Just(format!("{AK}/{{day}}/us-east-1/s3/aws4_request/extra")),
        Just(format!("{AK}/{{day}}/us-east-1/s3")),
        Just("host".to_owned()),
        Just("host;x-amz-date".to_owned()),
        Just("content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-evil".to_owned()),
        Just("0".repeat(64)),
        Just("zz".to_owned()),
    ]
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    let date = prop_oneof![
        Just("20000101T000000Z".to_owned()),
        Just("20991231T235959Z".to_owned()),
        Just("{day}T000000".to_owned()),
        Just("{day}T250000Z".to_owned()),
        "[0-9TZ]{0,18}",
    ];
    let sha = prop_oneof![
        Just("UNSIGNED-PAYLOAD".to_owned()),
        Just("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_owned()),
        Just("STREAMING-UNSIGNED-PAYLOAD-TRAILER".to_owned()),
        Just(sha256_hex(b"other bytes")),
        Just("0".repeat(64)),
        "[0-9a-fA-Z-]{0,70}",
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), part_value()).prop_map(|(i, v)| HeaderEdit::Part(i, v)),
        any::<prop::sample::Index>().prop_map(HeaderEdit::DropPart),
        (any::<prop::sample::Index>(), part_value()).prop_map(|(i, v)| HeaderEdit::Duplicate(i, v)),
        prop_oneof![
            Just(String::new()),
            Just("AWS4-HMAC-SHA1".to_owned()),
            Just("AWS4-ECDSA-P256-SHA256".to_owned()),
            Just("aws4-hmac-sha256".to_owned()),
            Just("AWS".to_owned()),
        ]
        .prop_map(HeaderEdit::Algorithm),
        any::<prop::sample::Index>().prop_map(HeaderEdit::Truncate),
        "[ -~]{0,80}".prop_map(HeaderEdit::Authorization),
        proptest::option::of(date).prop_map(HeaderEdit::Date),
        proptest::option::of(sha).prop_map(HeaderEdit::ContentSha256),
        prop_oneof![
            Just("text/html".to_owned()),
            Just("image/PNG".to_owned()),
            "[a-z/]{0,12}"
        ]
        .prop_map(HeaderEdit::ContentType),
        any::<prop::sample::Index>().prop_map(HeaderEdit::Body),
        "[a-z0-9/.]{1,6}".prop_map(HeaderEdit::Key),
    ]
}

/// A header-signed PUT: URL, headers, body.
type Put = (String, Vec<(String, String)>, Vec<u8>);

fn signed_put(s: &TestStore, key: &str, now: OffsetDateTime) -> Put {
    let url = s.url(key);
    let signer = Signer::new(Credentials::new(AK, SK), "us-east-1");
    let mut headers = vec![("content-type".to_owned(), "image/png".to_owned())];
    headers.extend(
        signer
            .sign_headers(
                "PUT",
                &url,
                &[("content-type", "image/png")],
                &sha256_hex(BODY),
                now,
            )
            .unwrap(),
    );
    (url, headers, BODY.to_vec())
}

/// Applies `edit`; `None` when it changes nothing. The `bool` says whether
/// the store may still accept it: a second `Name=value` in the header may
/// be ignored, as long as what is stored is what was signed.
fn edit_put(put: &Put, edit: &HeaderEdit, day: &str) -> Option<(Put, bool)> {
    let (mut url, mut headers, mut body) = put.clone();
    let value = |v: &str| v.replace("{day}", day);
    let auth_at = headers
        .iter()
        .position(|(n, _)| n == "authorization")
        .unwrap();
    let auth = headers[auth_at].1.clone();
    let (algorithm, rest) = auth.split_once(' ').unwrap();
    let mut parts: Vec<(String, String)> = rest
        .split(',')
        .map(|p| {
            let (k, v) = p.trim().split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let join = |algorithm: &str, parts: &[(String, String)]| {
        let parts: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{algorithm} {}", parts.join(","))
    };
    let set = |headers: &mut Vec<(String, String)>, name: &str, v: Option<String>| {
        headers.retain(|(n, _)| n != name);
        if let Some(v) = v {
            headers.push((name.to_owned(), v));
        }
    };
    let mut may_pass = false;
    match edit {
        HeaderEdit::Part(i, v) => {
            let at = i.index(parts.len());
            parts[at].1 = value(v);
            headers[auth_at].1 = join(algorithm, &parts);
        }
        HeaderEdit::DropPart(i) => {
            parts.remove(i.index(parts.len()));
            headers[auth_at].1 = join(algorithm, &parts);
        }
        HeaderEdit::Duplicate(i, v) => {
            let name = parts[i.index(parts.len())].0.clone();
            parts.push((name, value(v)));
            headers[auth_at].1 = join(algorithm, &parts);
            may_pass = true;
        }
        HeaderEdit::Algorithm(a) => headers[auth_at].1 = join(a, &parts),
        HeaderEdit::Truncate(i) => {
            let cut = i.index(auth.len());
            headers[auth_at].1 = auth[..cut].to_owned();
        }
        HeaderEdit::Authorization(a) => headers[auth_at].1 = a.clone(),
        HeaderEdit::Date(d) => set(&mut headers, "x-amz-date", d.as_deref().map(value)),
        HeaderEdit::ContentSha256(v) => set(&mut headers, "x-amz-content-sha256", v.clone()),
        HeaderEdit::ContentType(t) => set(&mut headers, "content-type", Some(t.clone())),
        HeaderEdit::Body(i) => {
            let at = i.index(body.len());
            body[at] ^= 0x20;
        }
        HeaderEdit::Key(suffix) => url.push_str(suffix),
    }
    let edited = (url, headers, body);
    (edited != *put).then_some((edited, may_pass))
}

async fn send(s: &TestStore, (url, headers, body): &Put) -> (u16, String) {
    let mut req = s.http.put(url).body(body.clone());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

proptest! {
    #![proptest_config(config(64, REGRESSIONS))]

    #[test]
    fn mutated_header_signatures_are_refused_with_4xx_xml(edit in header_edit()) {
        let (rt, s) = store();
        let key = format!("props/header/{}.png", CASE.fetch_add(1, Ordering::Relaxed));
        let now = OffsetDateTime::now_utc();
        let day = format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day());
        let put = signed_put(s, &key, now);
        rt.block_on(async {
            if let Some((edited, may_pass)) = edit_put(&put, &edit, &day) {
                let (status, body) = send(s, &edited).await;
                if may_pass && status == 200 {
                    let got = s.client.get_object().bucket(BUCKET).key(&key).send().await.unwrap();
                    let bytes = got.body.collect().await.unwrap().into_bytes();
                    prop_assert_eq!(&bytes[..], BODY);
                    return Ok(());
                }
                prop_assert!((400..500).contains(&status), "{status} for {edit:?}: {body}");
                prop_assert!(body.contains("<Error>"), "{status} for {edit:?}: {body}");
                prop_assert!(!s.exists(&key).await, "{edit:?} stored an object");
                // Nor under the edited key.
                if let HeaderEdit::Key(suffix) = &edit {
                    let edited_key = format!("{key}{suffix}");
                    prop_assert!(!s.exists(&edited_key).await, "{}", edited_key);
                }
            }
            let (status, body) = send(s, &put).await;
            prop_assert_eq!(status, 200, "{}", body);
            prop_assert!(s.exists(&key).await);
            Ok(())
        })?;
    }
}

/// Regression (found by `mutated_presigned_urls_are_refused_with_4xx_xml`):
/// s3s answered an unsupported `X-Amz-Algorithm` with 501; it is the
/// client's error, so 400.
#[tokio::test]
async fn another_signing_algorithm_is_a_400_not_a_501() {
    let s = start().await;
    let p = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("props/algorithm.png")
        .content_type("image/png")
        .content_length(BODY.len() as i64)
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    for alg in ["", "AWS4-HMAC-SHA1", "AWS4-ECDSA-P256-SHA256"] {
        let url = p.uri().replace(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            &format!("X-Amz-Algorithm={alg}"),
        );
        let mut req = s.http.put(&url).body(BODY.to_vec());
        for (k, v) in p.headers() {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 400, "{alg:?}");
        let body = res.text().await.unwrap();
        assert!(
            body.contains("<Code>AuthorizationQueryParametersError</Code>"),
            "{body}"
        );
    }
    assert!(!s.exists("props/algorithm.png").await);
}

/// Regressions (found by `mutated_header_signatures_are_refused_with_4xx_xml`):
/// s3s never checked the algorithm a header signature names, nor that the
/// headers `SignedHeaders` lists are in the request, so such PUTs were
/// stored (src/access.rs); another service in the scope was a 501.
#[tokio::test]
async fn header_signatures_s3s_leaves_unchecked_are_refused() {
    let s = start().await;
    let now = OffsetDateTime::now_utc();
    let put = signed_put(&s, "props/header-regressions.png", now);
    let cases = [
        (
            "AWS4-HMAC-SHA256 ",
            "AWS4-HMAC-SHA1 ",
            400,
            "AuthorizationHeaderMalformed",
        ),
        (
            "AWS4-HMAC-SHA256 ",
            "aws4-hmac-sha256 ",
            400,
            "AuthorizationHeaderMalformed",
        ),
        (
            "AWS4-HMAC-SHA256 ",
            "AWS ",
            400,
            "AuthorizationHeaderMalformed",
        ),
        (
            "x-amz-date,",
            "x-amz-date;x-amz-meta-evil,",
            403,
            "SignatureDoesNotMatch",
        ),
        // s3s's 501 for this was never turned into a 400: the message
        // src/signature_answers.rs looked for is XML-escaped in the body.
        (
            "/s3/aws4_request",
            "/iam/aws4_request",
            400,
            "AuthorizationHeaderMalformed",
        ),
    ];
    for (from, to, want, code) in cases {
        let mut edited = put.clone();
        for (name, value) in &mut edited.1 {
            if name == "authorization" {
                assert!(value.contains(from), "{value}");
                *value = value.replacen(from, to, 1);
            }
        }
        let (status, body) = send(&s, &edited).await;
        assert_eq!(status, want, "{to}: {body}");
        assert!(
            body.contains(&format!("<Code>{code}</Code>")),
            "{to}: {body}"
        );
        assert!(!s.exists("props/header-regressions.png").await, "{to}");
    }
    let (status, body) = send(&s, &put).await;
    assert_eq!(status, 200, "{body}");
}
