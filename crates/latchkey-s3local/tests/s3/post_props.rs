//! Property tests of browser POST uploads (proptest; the coverage-guided
//! side is `fuzz/`'s `post_policy` target): the policy latchkey's signer
//! writes, s3s's parser that reads it, and the store's evaluation of a form
//! against it.
//!
//! - In process, many cases: whatever the policy holds, the document the
//!   signer writes parses back (s3s's parser, the one the store runs) into
//!   exactly its conditions, with a signature the `aws-sigv4` crate agrees
//!   with, and every field of the form meets its own condition; the signer
//!   refuses exactly what it cannot sign faithfully. Arbitrary base64 and
//!   JSON are parsed or refused, never a panic.
//! - Over real HTTP, fewer cases: a signed form is stored as signed; the
//!   same form with one field changed, dropped or added, the file outside
//!   the length range, the policy edited or posted to another bucket is
//!   refused with a 4xx XML error and stores nothing (or, when the change
//!   leaves what the store reads unchanged, stores exactly what was
//!   signed). A form whose policy is arbitrary JSON, signed, never gets a
//!   5xx.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_sigv4::{Credentials, PostForm, PostPolicy, Signer};
use proptest::prelude::*;
use s3s::post_policy::{PostPolicy as Parsed, PostPolicyCondition as Cond};
use time::OffsetDateTime;

use crate::common::{AK, BUCKET, SK, TestStore, sha256_b64, start};
use crate::props::config;

const REGRESSIONS: &str = "tests/proptest-regressions/post_props.txt";
const BOUNDARY: &str = "----latchkeyPropsBoundary9f8e7d6c5b4a";

fn signer() -> Signer {
    Signer::new(Credentials::new(AK, SK), "us-east-1")
}

fn field<'a>(form: &'a PostForm, name: &str) -> &'a str {
    form.get(name)
        .unwrap_or_else(|| panic!("{name} in {form:?}"))
}

/// Field names the signer must refuse as extra fields.
fn reserved(name: &str) -> bool {
    [
        "key",
        "bucket",
        "content-type",
        "policy",
        "file",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-signature",
        "x-amz-security-token",
    ]
    .contains(&name.to_ascii_lowercase().as_str())
}

fn token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn extra_name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "x-amz-meta-[a-z0-9-]{0,8}",
        "[A-Za-z_-]{1,12}",
        "\\$?(key|Key|KEY|bucket|Content-Type|policy|file|X-Amz-Signature|x-amz-date|x-amz-security-token)",
        Just("success_action_status".to_owned()),
    ]
}

/// Seconds from 2001 to 2099: any signing day.
fn instant() -> impl Strategy<Value = OffsetDateTime> {
    (978_307_200i64..4_102_444_800).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
}

fn millis(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap()
}

/// Policy fragments glued at random, so the parser gets past the first
/// brace and into conditions.
fn policy_json() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{\"expiration\":\"2099-01-01T00:00:00.000Z\",\"conditions\":[".to_owned()),
        Just("{\"expiration\":".to_owned()),
        Just("\"2099-13-45T25:61:61Z\"".to_owned()),
        Just("\"conditions\":".to_owned()),
        Just("{\"bucket\":\"uploads\"}".to_owned()),
        Just("{\"key\":\"a\",\"x\":\"b\"}".to_owned()),
        Just("[\"eq\",\"$key\",\"a\"]".to_owned()),
        Just("[\"starts-with\",\"$key\",\"\"]".to_owned()),
        Just("[\"content-length-range\",".to_owned()),
        Just("[\"EQ\",1,2,3]".to_owned()),
        Just("[]".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just("1e3".to_owned()),
        Just("null".to_owned()),
        Just(",".to_owned()),
        Just("]}".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(1000, REGRESSIONS))]

    #[test]
    fn the_policy_parser_never_panics(
        raw in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9+/=]{0,64}",
            policy_json().prop_map(|j| STANDARD.encode(j)),
        ],
        json in policy_json(),
    ) {
        for parsed in [Parsed::from_base64(&raw), Parsed::from_json(&json)] {
            if let Ok(p) = parsed
                && let Some((min, max)) = p.content_length_range()
            {
                prop_assert!(min <= max);
            }
        }
    }

    #[test]
    fn signed_policies_parse_back_to_exactly_their_conditions(
        key in any::<String>(),
        content_type in proptest::option::of(any::<String>()),
        extra in proptest::collection::vec((extra_name(), any::<String>()), 0..5),
        range in proptest::option::of((any::<u64>(), any::<u64>())),
        now in instant(),
        lifetime_ms in prop_oneof![-1000i64..=0, 1i64..3_000_000_000_000],
    ) {
        let expiration = now + time::Duration::milliseconds(lifetime_ms);
        let policy = PostPolicy {
            bucket: BUCKET.to_owned(),
            key,
            expiration,
            content_type,
            content_length_range: range,
            extra_fields: extra,
        };
        let signed = signer().post_policy(&policy, now);
        let names = &policy.extra_fields;
        let faithful = expiration > now
            && range.is_none_or(|(min, max)| min <= max)
            && names.iter().enumerate().all(|(i, (n, _))| {
                token(n)
                    && !reserved(n)
                    && !names[..i].iter().any(|(m, _)| m.eq_ignore_ascii_case(n))
            });
        prop_assert_eq!(signed.is_ok(), faithful, "{:?}", signed);
        let Ok(form) = signed else { return Ok(()); };

        let parsed = Parsed::from_base64(field(&form, "policy")).unwrap();
        prop_assert_eq!(OffsetDateTime::from(parsed.expiration.clone()), millis(expiration));
        // The conditions, in order: the bucket, then one `eq` per form
        // field (names as the store compares them), then the range.
        let mut want = vec![Cond::Eq { field: "bucket".into(), value: BUCKET.into() }];
        for (name, value) in &form.fields {
            if name != "policy" && name != "x-amz-signature" {
                want.push(Cond::Eq { field: name.to_ascii_lowercase(), value: value.clone() });
            }
        }
        if let Some((min, max)) = range {
            want.push(Cond::ContentLengthRange { min, max });
        }
        prop_assert_eq!(&parsed.conditions, &want);
        // The form meets its own policy as the store evaluates it: each
        // condition against the last field of its (lowercased) name, and
        // every field covered by a condition.
        let last = effective(&form.fields);
        for c in &parsed.conditions {
            if let Cond::Eq { field, value } = c
                && field != "bucket"
            {
                prop_assert_eq!(last.get(field), Some(value), "{}", field);
            }
        }
        for name in last.keys().filter(|n| *n != "policy" && *n != "x-amz-signature") {
            prop_assert!(
                parsed.conditions.iter().any(|c| matches!(c, Cond::Eq { field, .. } if field == name)),
                "{}", name
            );
        }
        prop_assert_eq!(field(&form, "key"), policy.key.as_str());
        prop_assert_eq!(form.get("Content-Type"), policy.content_type.as_deref());
        for (name, value) in &policy.extra_fields {
            prop_assert_eq!(form.get(name), Some(value.as_str()));
        }

        // The signature is the reference implementation's.
        let day_key = v4::generate_signing_key(SK, SystemTime::from(now), "us-east-1", "s3");
        let reference = v4::calculate_signature(day_key, field(&form, "policy").as_bytes());
        prop_assert_eq!(field(&form, "x-amz-signature"), reference.as_str());
    }
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

static CASE: AtomicU32 = AtomicU32::new(0);

/// A policy the broker could sign: plain keys, a content type, metadata,
/// perhaps a success status and the file's checksum; a length range
/// around the file.
#[derive(Clone, Debug)]
struct Upload {
    key: String,
    content_type: Option<String>,
    meta: BTreeMap<String, String>,
    status: Option<&'static str>,
    checksum: bool,
    file: Vec<u8>,
    below: u64,
    above: u64,
}

fn upload() -> impl Strategy<Value = Upload> {
    (
        "[a-z0-9_-][a-z0-9._-]{0,7}(/[a-z0-9_-][a-z0-9._-]{0,7}){0,3}",
        proptest::option::of("[a-z]{1,8}/[a-z0-9.+-]{1,12}"),
        proptest::collection::btree_map("[a-z0-9][a-z0-9-]{0,7}", "[!-~]{0,16}", 0..3),
        proptest::option::of(prop_oneof![Just("200"), Just("201"), Just("204")]),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        0u64..3,
        0u64..3,
    )
        .prop_map(
            |(key, content_type, meta, status, checksum, file, below, above)| Upload {
                key,
                content_type,
                meta,
                status,
                checksum,
                file,
                below,
                above,
            },
        )
}

impl Upload {
    fn range(&self) -> (u64, u64) {
        let len = self.file.len() as u64;
        (len.saturating_sub(self.below), len + self.above)
    }

    fn sign(&self, key: &str) -> PostForm {
        let mut extra_fields: Vec<(String, String)> = self
            .meta
            .iter()
            .map(|(k, v)| (format!("x-amz-meta-{k}"), v.clone()))
            .collect();
        if let Some(s) = self.status {
            extra_fields.push(("success_action_status".into(), s.into()));
        }
        if self.checksum {
            extra_fields.push(("x-amz-checksum-sha256".into(), sha256_b64(&self.file)));
        }
        let now = OffsetDateTime::now_utc();
        signer()
            .post_policy(
                &PostPolicy {
                    bucket: BUCKET.to_owned(),
                    key: key.to_owned(),
                    expiration: now + time::Duration::minutes(10),
                    content_type: self.content_type.clone(),
                    content_length_range: Some(self.range()),
                    extra_fields,
                },
                now,
            )
            .unwrap()
    }
}

#[derive(Clone, Debug)]
enum Change {
    /// A field's value replaced.
    Set(prop::sample::Index, String),
    Drop(prop::sample::Index),
    /// A field added at some position (perhaps a second one of a name).
    Add(prop::sample::Index, String, String),
    /// The file one byte shorter than the range allows, or longer.
    FileOutside(bool),
    /// The policy document edited (without signing it again).
    Policy(String),
    /// Posted to another bucket.
    Bucket(String),
}

fn change() -> impl Strategy<Value = Change> {
    let value = prop_oneof![
        Just(String::new()),
        "[!-~]{1,12}",
        Just("AWS4-HMAC-SHA1".to_owned()),
        Just("20000101T000000Z".to_owned()),
        Just(format!("{AK}/20000101/us-east-1/s3/aws4_request")),
        Just("image/svg+xml".to_owned()),
        Just("text/html".to_owned()),
    ];
    let name = prop_oneof![
        "x-amz-meta-[a-z0-9]{1,6}",
        Just("key".to_owned()),
        Just("Content-Type".to_owned()),
        Just("x-amz-acl".to_owned()),
        Just("acl".to_owned()),
        Just("cache-control".to_owned()),
        Just("content-disposition".to_owned()),
        Just("x-amz-storage-class".to_owned()),
        Just("x-amz-website-redirect-location".to_owned()),
        Just("x-amz-server-side-encryption".to_owned()),
        Just("x-amz-checksum-crc32".to_owned()),
        Just("success_action_redirect".to_owned()),
        Just("success_action_status".to_owned()),
        Just("tagging".to_owned()),
        Just("x-amz-security-token".to_owned()),
        Just("x-amz-signature".to_owned()),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), value.clone()).prop_map(|(i, v)| Change::Set(i, v)),
        any::<prop::sample::Index>().prop_map(Change::Drop),
        (any::<prop::sample::Index>(), name, value).prop_map(|(i, n, v)| Change::Add(i, n, v)),
        any::<bool>().prop_map(Change::FileOutside),
        prop_oneof![
            Just("u/someone-else.jpg".to_owned()),
            Just("text/html".to_owned()),
            Just("99999999999".to_owned()),
        ]
        .prop_map(Change::Policy),
        prop_oneof![
            Just("other".to_owned()),
            Just("UPLOADS".to_owned()),
            "[a-z0-9]{3,12}"
        ]
        .prop_map(Change::Bucket),
    ]
}

/// What the store reads from a form: each name (lowercased) with its last
/// value. Two forms that agree on it are the same request to the store.
fn effective<N: AsRef<str>>(fields: &[(N, String)]) -> BTreeMap<String, String> {
    fields
        .iter()
        .map(|(n, v)| (n.as_ref().to_ascii_lowercase(), v.clone()))
        .collect()
}

fn body(fields: &[(String, String)], file: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(file);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn post(
    s: &TestStore,
    bucket: &str,
    fields: &[(String, String)],
    file: &[u8],
) -> (u16, String) {
    let res = s
        .http
        .post(format!("{}/{bucket}", s.handle.endpoint_url()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body(fields, file))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The object at `key`, if any: content type, user metadata and bytes.
async fn stored(
    s: &TestStore,
    key: &str,
) -> Option<(Option<String>, BTreeMap<String, String>, Vec<u8>)> {
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .ok()?;
    let content_type = got.content_type().map(str::to_owned);
    let meta: BTreeMap<String, String> = got
        .metadata()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
    Some((content_type, meta, bytes))
}

/// The object at `key` is what `up` signed.
async fn check_stored(s: &TestStore, key: &str, up: &Upload) -> Result<(), TestCaseError> {
    let (content_type, meta, bytes) = stored(s, key).await.expect("stored");
    // Without a `Content-Type` condition any type is allowed.
    if let Some(want) = &up.content_type {
        prop_assert_eq!(content_type.as_deref(), Some(want.as_str()));
    }
    prop_assert_eq!(&meta, &up.meta);
    prop_assert_eq!(&bytes, &up.file);
    Ok(())
}

/// The form's fields as plain strings, to edit and send.
fn owned(form: &PostForm) -> Vec<(String, String)> {
    form.fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect()
}

/// A form post: bucket, fields, file.
type Post = (String, Vec<(String, String)>, Vec<u8>);

/// Applies `change`; `None` when it changes nothing.
fn apply(form: &PostForm, file: &[u8], range: (u64, u64), change: &Change) -> Option<Post> {
    let mut fields = owned(form);
    let mut file = file.to_vec();
    let mut bucket = BUCKET.to_owned();
    match change {
        Change::Set(i, v) => {
            let at = i.index(fields.len());
            if fields[at].1 == *v {
                return None;
            }
            fields[at].1 = v.clone();
        }
        Change::Drop(i) => {
            fields.remove(i.index(fields.len()));
        }
        Change::Add(i, n, v) => fields.insert(i.index(fields.len() + 1), (n.clone(), v.clone())),
        Change::FileOutside(longer) => {
            if *longer {
                file.resize(range.1 as usize + 1, b'!');
            } else if range.0 == 0 {
                return None;
            } else {
                file.truncate(range.0 as usize - 1);
            }
        }
        Change::Policy(to) => {
            let at = fields.iter().position(|(n, _)| n == "policy").unwrap();
            let json = String::from_utf8(STANDARD.decode(&fields[at].1).unwrap()).unwrap();
            // Replace the first string or number of a condition.
            let start = json.find("\"key\":\"").unwrap() + 7;
            let end = start + json[start..].find('"').unwrap();
            let edited = format!("{}{to}{}", &json[..start], &json[end..]);
            if edited == json {
                return None;
            }
            fields[at].1 = STANDARD.encode(edited);
        }
        Change::Bucket(b) => {
            if b == BUCKET {
                return None;
            }
            bucket = b.clone();
        }
    }
    Some((bucket, fields, file))
}

proptest! {
    #![proptest_config(config(48, REGRESSIONS))]

    #[test]
    fn a_changed_form_is_refused_and_the_signed_one_is_stored_as_signed(
        up in upload(),
        change in change(),
    ) {
        let (rt, s) = store();
        let key = format!("post-props/{}/{}", CASE.fetch_add(1, Ordering::Relaxed), up.key);
        let form = up.sign(&key);
        let range = up.range();
        rt.block_on(async {
            if let Some((bucket, fields, file)) = apply(&form, &up.file, range, &change) {
                let (status, text) = post(s, &bucket, &fields, &file).await;
                let same = bucket == BUCKET
                    && file == up.file
                    && effective(&fields) == effective(&form.fields);
                if same && status < 300 {
                    // Only the order or an overridden duplicate differs.
                    check_stored(s, &key, &up).await?;
                } else {
                    prop_assert!((400..500).contains(&status), "{status} for {change:?}: {text}");
                    prop_assert!(text.contains("<Error>"), "{status} for {change:?}: {text}");
                    prop_assert!(stored(s, &key).await.is_none(), "{change:?} stored an object");
                }
            }
            let (status, text) = post(s, BUCKET, &owned(&form), &up.file).await;
            let want = up.status.map_or(204, |c| c.parse().unwrap());
            prop_assert_eq!(status, want, "{}", text);
            check_stored(s, &key, &up).await
        })?;
    }

    #[test]
    fn a_signed_policy_of_any_json_is_never_a_5xx(json in policy_json(), file in proptest::collection::vec(any::<u8>(), 0..32)) {
        let (rt, s) = store();
        let now = OffsetDateTime::now_utc();
        let policy = STANDARD.encode(&json);
        let signature = signer().sign_policy(&policy, now).unwrap();
        let date = format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let key = format!("post-props/json/{}", CASE.fetch_add(1, Ordering::Relaxed));
        let fields: Vec<(String, String)> = vec![
            ("key".into(), key),
            ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
            ("x-amz-credential".into(), format!("{AK}/{date}/us-east-1/s3/aws4_request")),
            (
                "x-amz-date".into(),
                format!("{date}T{:02}{:02}{:02}Z", now.hour(), now.minute(), now.second()),
            ),
            ("policy".into(), policy),
            ("x-amz-signature".into(), signature),
        ];
        let (status, text) = rt.block_on(post(s, BUCKET, &fields, &file));
        prop_assert!(status < 500, "{status} for {json:?}: {text}");
    }
}
