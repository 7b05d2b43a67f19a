//! The signer's own contract beyond the AWS vectors: expiry bounds, session
//! tokens, URL styles, refusals, POST policy shape, caching and redaction.

use base64::Engine;
use latchkey_sigv4::{
    Credentials, Endpoint, Error, PostPolicy, Secret, Signer, hmac_sha256, redact_presigned_url,
    signing_key,
};
use time::macros::{datetime, offset};
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2025-03-01 12:00:00 UTC);
const HASH: &str = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";

fn creds() -> Credentials {
    Credentials::new("AKIDEXAMPLE", "very/secret+key")
}

fn local() -> Endpoint {
    Endpoint::new("http://127.0.0.1:9000", "photos", "us-east-1", true).unwrap()
}

#[test]
fn signer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Signer>();
    assert_send_sync::<Endpoint>();
}

#[test]
fn expiry_bounds() {
    let s = Signer::new(creds(), "us-east-1");
    let url = local().object_url("k");
    assert_eq!(
        s.presign("GET", &url, &[], &[], 0, NOW),
        Err(Error::Expiry(0))
    );
    assert_eq!(
        s.presign("GET", &url, &[], &[], 604_801, NOW),
        Err(Error::Expiry(604_801))
    );
    assert!(
        s.presign("GET", &url, &[], &[], 1, NOW)
            .unwrap()
            .contains("X-Amz-Expires=1&")
    );
    assert!(
        s.presign("GET", &url, &[], &[], 604_800, NOW)
            .unwrap()
            .contains("X-Amz-Expires=604800&")
    );
}

#[test]
fn session_token_is_sent_and_signed_everywhere() {
    let plain = Signer::new(creds(), "us-east-1");
    let temp = Signer::new(creds().with_session_token("tok/en+=="), "us-east-1");
    let url = local().object_url("k");

    let a = plain.presign("GET", &url, &[], &[], 60, NOW).unwrap();
    let b = temp.presign("GET", &url, &[], &[], 60, NOW).unwrap();
    assert!(!a.contains("X-Amz-Security-Token"));
    assert!(b.contains("&X-Amz-Security-Token=tok%2Fen%2B%3D%3D&"));
    // Signed, not merely appended: the signature differs.
    assert_ne!(a.rsplit('=').next(), b.rsplit('=').next());

    let h = temp.sign_headers("PUT", &url, &[], HASH, NOW).unwrap();
    assert!(h.contains(&("x-amz-security-token".into(), "tok/en+==".into())));
    let auth = &h.iter().find(|(n, _)| n == "authorization").unwrap().1;
    assert!(
        auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,")
    );
    assert!(
        !plain
            .sign_headers("PUT", &url, &[], HASH, NOW)
            .unwrap()
            .iter()
            .any(|(n, _)| n == "x-amz-security-token")
    );

    let form = temp.post_policy(&policy(), NOW).unwrap();
    assert_eq!(form.get("x-amz-security-token"), Some("tok/en+=="));
    assert!(
        decoded_policy(form.get("policy").unwrap())
            .contains(r#"{"x-amz-security-token":"tok/en+=="}"#)
    );
}

#[test]
fn path_style_and_virtual_hosted_sign_their_own_host() {
    let s = Signer::new(creds(), "eu-west-3");
    let path = Endpoint::new(
        "https://s3.eu-west-3.amazonaws.com",
        "bkt",
        "eu-west-3",
        true,
    )
    .unwrap();
    let virt = Endpoint::new(
        "https://s3.eu-west-3.amazonaws.com",
        "bkt",
        "eu-west-3",
        false,
    )
    .unwrap();
    assert_eq!(
        path.object_url("a b/c"),
        "https://s3.eu-west-3.amazonaws.com/bkt/a%20b/c"
    );
    assert_eq!(
        virt.object_url("a b/c"),
        "https://bkt.s3.eu-west-3.amazonaws.com/a%20b/c"
    );
    assert_eq!(path.host(), "s3.eu-west-3.amazonaws.com");
    assert_eq!(virt.host(), "bkt.s3.eu-west-3.amazonaws.com");
    let p = s
        .presign("PUT", &path.object_url("a b/c"), &[], &[], 60, NOW)
        .unwrap();
    let v = s
        .presign("PUT", &virt.object_url("a b/c"), &[], &[], 60, NOW)
        .unwrap();
    assert!(p.starts_with("https://s3.eu-west-3.amazonaws.com/bkt/a%20b/c?"));
    assert!(v.starts_with("https://bkt.s3.eu-west-3.amazonaws.com/a%20b/c?"));
    assert_ne!(p.rsplit('=').next(), v.rsplit('=').next());
}

#[test]
fn presign_puts_extra_query_in_canonical_order() {
    let s = Signer::new(creds(), "us-east-1");
    let url = format!("{}?uploadId=x%2By", local().object_url("big.bin"));
    let signed = s
        .presign(
            "PUT",
            &url,
            &[("Content-Length", "5242880")],
            &[("partNumber", "3")],
            900,
            NOW,
        )
        .unwrap();
    let query = signed.split_once('?').unwrap().1;
    let names: Vec<&str> = query
        .split('&')
        .map(|p| p.split('=').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "partNumber",
            "uploadId",
            "X-Amz-Signature"
        ]
    );
    assert!(query.contains("X-Amz-SignedHeaders=content-length%3Bhost&"));
    assert!(query.contains("uploadId=x%2By&"));
}

#[test]
fn refuses_what_would_sign_one_thing_and_send_another() {
    let s = Signer::new(creds(), "us-east-1");
    let url = local().object_url("k");
    let reserved_query = s.presign("GET", &url, &[], &[("x-amz-signature", "0")], 60, NOW);
    assert_eq!(
        reserved_query,
        Err(Error::ReservedQuery("X-Amz-Signature".into()))
    );
    let reserved_header = s.presign("GET", &url, &[("X-Amz-Date", "x")], &[], 60, NOW);
    assert_eq!(
        reserved_header,
        Err(Error::ReservedHeader("x-amz-date".into()))
    );
    let dup_hash = s.sign_headers("PUT", &url, &[("x-amz-content-sha256", HASH)], HASH, NOW);
    assert_eq!(
        dup_hash,
        Err(Error::ReservedHeader("x-amz-content-sha256".into()))
    );
    assert_eq!(
        s.sign_headers("PUT", &url, &[], &HASH.to_uppercase(), NOW),
        Err(Error::PayloadHash)
    );
    assert_eq!(
        s.sign_headers("PUT", &url, &[], "abc", NOW),
        Err(Error::PayloadHash)
    );
    assert!(matches!(
        s.presign("get", &url, &[], &[], 60, NOW),
        Err(Error::InvalidMethod(_))
    ));
    assert!(matches!(
        s.presign("PUT", &url, &[("x", "a\nb")], &[], 60, NOW),
        Err(Error::InvalidHeader(_))
    ));
    assert!(matches!(
        s.presign("PUT", "/no/host", &[], &[], 60, NOW),
        Err(Error::InvalidUrl(_))
    ));
}

#[test]
fn signing_time_offset_does_not_matter() {
    let s = Signer::new(creds(), "us-east-1");
    let url = local().object_url("k");
    let utc = s.presign("GET", &url, &[], &[], 60, NOW).unwrap();
    let paris = s
        .presign("GET", &url, &[], &[], 60, NOW.to_offset(offset!(+1)))
        .unwrap();
    assert_eq!(utc, paris);
}

#[test]
fn cached_key_follows_the_day() {
    let shared = Signer::new(creds(), "us-east-1");
    let url = local().object_url("k");
    for day in 0..3 {
        let t = NOW + Duration::days(day) + Duration::hours(11);
        let fresh = Signer::new(creds(), "us-east-1");
        // Twice on the shared signer: once to fill the cache, once from it.
        for _ in 0..2 {
            assert_eq!(
                shared.presign("GET", &url, &[], &[], 60, t).unwrap(),
                fresh.presign("GET", &url, &[], &[], 60, t).unwrap()
            );
        }
    }
}

fn policy() -> PostPolicy {
    PostPolicy {
        bucket: "photos".into(),
        key: "u/42/01J.jpg".into(),
        expiration: NOW + Duration::minutes(15),
        content_type: Some("image/jpeg".into()),
        content_length_range: Some((1, 10_485_760)),
        extra_fields: vec![
            ("success_action_status".into(), "201".into()),
            ("x-amz-meta-owner".into(), "user \"42\"".into()),
        ],
    }
}

fn decoded_policy(b64: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn post_policy_shape_and_signature() {
    let s = Signer::new(creds(), "us-east-1");
    let form = s.post_policy(&policy(), NOW).unwrap();
    let names: Vec<&str> = form.fields.iter().map(|(n, _)| n.as_ref()).collect();
    assert_eq!(
        names,
        [
            "key",
            "Content-Type",
            "success_action_status",
            "x-amz-meta-owner",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "policy",
            "x-amz-signature"
        ]
    );
    assert_eq!(
        form.get("x-amz-credential"),
        Some("AKIDEXAMPLE/20250301/us-east-1/s3/aws4_request")
    );
    assert_eq!(form.get("x-amz-date"), Some("20250301T120000Z"));
    let b64 = form.get("policy").unwrap();
    let json: serde_json::Value = serde_json::from_str(&decoded_policy(b64)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "expiration": "2025-03-01T12:15:00.000Z",
            "conditions": [
                {"bucket": "photos"},
                {"key": "u/42/01J.jpg"},
                {"Content-Type": "image/jpeg"},
                {"success_action_status": "201"},
                {"x-amz-meta-owner": "user \"42\""},
                {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                {"x-amz-credential": "AKIDEXAMPLE/20250301/us-east-1/s3/aws4_request"},
                {"x-amz-date": "20250301T120000Z"},
                ["content-length-range", 1, 10485760]
            ]
        })
    );
    let key = signing_key(
        &Secret::new("very/secret+key"),
        "20250301",
        "us-east-1",
        "s3",
    );
    assert_eq!(
        form.get("x-amz-signature").unwrap(),
        hex::encode(hmac_sha256(&key, b64.as_bytes()))
    );
}

#[test]
fn post_policy_refusals() {
    let s = Signer::new(creds(), "us-east-1");
    let expired = PostPolicy {
        expiration: NOW,
        ..policy()
    };
    assert!(matches!(
        s.post_policy(&expired, NOW),
        Err(Error::Policy(_))
    ));
    let inverted = PostPolicy {
        content_length_range: Some((10, 9)),
        ..policy()
    };
    assert!(matches!(
        s.post_policy(&inverted, NOW),
        Err(Error::Policy(_))
    ));
    let clash = PostPolicy {
        extra_fields: vec![("Policy".into(), "x".into())],
        ..policy()
    };
    assert!(matches!(s.post_policy(&clash, NOW), Err(Error::Policy(_))));
    // Names no form field could meet (stores drop a leading `$` from
    // condition names only), and a second field of one name (stores read
    // the last).
    for extra in [
        vec![("$key".into(), "x".into())],
        vec![("x-amz-meta-a b".into(), "x".into())],
        vec![(String::new(), "x".into())],
        vec![
            ("x-amz-meta-a".into(), "1".into()),
            ("X-Amz-Meta-A".into(), "2".into()),
        ],
    ] {
        let bad = PostPolicy {
            extra_fields: extra.clone(),
            ..policy()
        };
        assert!(
            matches!(s.post_policy(&bad, NOW), Err(Error::Policy(_))),
            "{extra:?}"
        );
    }
}

#[test]
fn nothing_secret_in_debug() {
    let temp = creds().with_session_token("session-token-value");
    let s = Signer::new(temp.clone(), "us-east-1");
    let url = local().object_url("k");
    let _ = s.presign("GET", &url, &[], &[], 60, NOW).unwrap(); // fills the key cache
    let form = s.post_policy(&policy(), NOW).unwrap();
    for text in [
        format!("{temp:?}"),
        format!("{s:?}"),
        format!("{form:?}"),
        format!("{:?}", local()),
    ] {
        assert!(!text.contains("very/secret+key"), "{text}");
        assert!(!text.contains("session-token-value"), "{text}");
        assert!(
            !text.contains(form.get("x-amz-signature").unwrap()),
            "{text}"
        );
    }
}

#[test]
fn redaction_of_presigned_urls() {
    let s = Signer::new(creds().with_session_token("tok"), "us-east-1");
    let url = s
        .presign(
            "GET",
            &local().object_url("k"),
            &[],
            &[("x-id", "GetObject")],
            60,
            NOW,
        )
        .unwrap();
    let red = redact_presigned_url(&url);
    assert!(red.contains("X-Amz-Signature=[redacted]"));
    assert!(red.contains("X-Amz-Credential=[redacted]"));
    assert!(red.contains("X-Amz-Security-Token=[redacted]"));
    assert!(red.contains("x-id=GetObject") && red.contains("X-Amz-Expires=60"));
    assert!(!red.contains("AKIDEXAMPLE"));
}
