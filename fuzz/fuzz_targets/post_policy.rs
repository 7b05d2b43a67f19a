//! Browser POST uploads: s3s's policy parser (the one the embedded store
//! runs) and the store's evaluation of a form against a policy.
//!
//! Input, one item a line: the policy JSON; the `key` field; the file's
//! length; then extra form fields as `name=value` (repeats allowed). The
//! policy is signed with the store's own key, whatever it says, so the
//! store gets past the signature and must evaluate it. `{date}` and
//! `{credential}` in the input stand for this run's `x-amz-date` and
//! `x-amz-credential` (a policy must state the date it was signed at).
//!
//! Whatever the input: never a panic or a 5xx; a refusal is a 4xx that
//! stores nothing; an accepted form's policy parses, has not expired, and
//! every object it stored meets each `key`, `content-type` and
//! `content-length-range` condition of that policy.
#![no_main]

#[path = "common/store.rs"]
mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{AK, BUCKET, REGION, path_of, store};
use latchkey_sigv4::AmzDate;
use libfuzzer_sys::fuzz_target;
use s3s::post_policy::{PostPolicy, PostPolicyCondition as Cond};
use time::OffsetDateTime;

const BOUNDARY: &str = "----latchkeyFuzzBoundary7d6c5b4a";

fn holds(c: &Cond, field: &str, value: &str) -> bool {
    match c {
        Cond::Eq { field: f, value: v } if f == field => value == v,
        Cond::StartsWith { field: f, prefix } if f == field => value.starts_with(prefix.as_str()),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let (json, key) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    let length: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(16)
        .min(1 << 16);
    let extra: Vec<(&str, &str)> = lines
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect();

    let s = store();
    let now = OffsetDateTime::now_utc();
    let date = AmzDate::new(now).unwrap();
    let credential = format!("{AK}/{}/{REGION}/s3/aws4_request", date.date());
    let fill = |t: &str| {
        t.replace("{date}", date.datetime())
            .replace("{credential}", &credential)
    };
    let (json, key) = (fill(json), fill(key));
    let extra: Vec<(String, String)> = extra.iter().map(|(n, v)| (fill(n), fill(v))).collect();
    let json = json.as_str();

    // The parser alone, on the text as JSON and as base64.
    let parsed = PostPolicy::from_json(json);
    for p in [&parsed, &PostPolicy::from_base64(json)] {
        if let Ok(p) = p
            && let Some((min, max)) = p.content_length_range()
        {
            assert!(min <= max, "{json}");
        }
    }

    let policy = STANDARD.encode(json);
    let signature = s.signer.sign_policy(&policy, now).unwrap();
    let mut fields = vec![
        ("key", key.as_str()),
        ("policy", policy.as_str()),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        ("x-amz-credential", credential.as_str()),
        ("x-amz-date", date.datetime()),
        ("x-amz-signature", signature.as_str()),
    ];
    fields.extend(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut body = Vec::new();
    for (name, value) in &fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
    );
    body.extend(std::iter::repeat_n(b'x', length));
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let headers = vec![(
        "content-type".to_owned(),
        format!("multipart/form-data; boundary={BOUNDARY}"),
    )];

    let answer = s
        .send(b"POST", &format!("/{BUCKET}"), &headers, body)
        .unwrap();
    let reply = String::from_utf8_lossy(&answer.body);
    assert!(
        !answer.status.is_server_error(),
        "{}: {reply}\n{json}",
        answer.status
    );

    let listed = s.list();
    if !answer.status.is_success() && !answer.status.is_redirection() {
        assert!(
            answer.status.is_client_error(),
            "{}: {reply}",
            answer.status
        );
        assert_eq!(listed, vec![], "a refused form stored something");
        return;
    }
    let policy = parsed.unwrap_or_else(|e| panic!("accepted an unparseable policy ({e}): {json}"));
    assert!(
        OffsetDateTime::from(policy.expiration.clone()) > now - time::Duration::seconds(1),
        "accepted an expired policy: {json}"
    );
    assert!(!listed.is_empty(), "{} but nothing stored", answer.status);
    for (stored, size) in &listed {
        let path = path_of(stored);
        let head = s.signed("HEAD", &path);
        // An object the store took must be servable: a field it stored
        // that no response header can carry was the first find here.
        assert!(head.status.is_success(), "HEAD {stored:?}: {}", head.status);
        let content_type = head
            .headers
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        for c in &policy.conditions {
            assert!(holds(c, "key", stored), "{c:?} vs key {stored:?}");
            assert!(
                holds(c, "content-type", &content_type),
                "{c:?} vs {content_type:?}"
            );
            if let Cond::ContentLengthRange { min, max } = c {
                assert!((*min..=*max).contains(size), "{c:?} vs {size}");
            }
        }
        assert!(s.signed("DELETE", &path).status.is_success());
    }
});
