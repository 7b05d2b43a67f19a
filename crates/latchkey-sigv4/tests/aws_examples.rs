//! AWS's published SigV4 worked examples, reproduced byte for byte.
//!
//! Sources: "Signature Calculations for the Authorization Header: Transferring
//! Payload in a Single Chunk", "Authenticating Requests: Using Query
//! Parameters", "Example: Browser-Based Upload using HTTP POST" (S3 API
//! reference) and the signing-key derivation example of the general reference.

use latchkey_sigv4::{
    AmzDate, Credentials, Endpoint, Secret, Signer, UNSIGNED_PAYLOAD, canonical_request,
    credential_scope, sha256_hex, signature, signing_key, string_to_sign,
};
use time::OffsetDateTime;
use time::macros::datetime;

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const NOW: OffsetDateTime = datetime!(2013-05-24 00:00:00 UTC);

fn signer() -> Signer {
    Signer::new(Credentials::new(ACCESS_KEY, SECRET_KEY), "us-east-1")
}

fn example_bucket() -> Endpoint {
    Endpoint::new(
        "https://s3.amazonaws.com",
        "examplebucket",
        "us-east-1",
        false,
    )
    .unwrap()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[test]
fn signing_key_derivation_example() {
    let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    assert_eq!(
        hex::encode(signing_key(&secret, "20120215", "us-east-1", "iam")),
        "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    );
}

#[test]
fn presigned_get_object() {
    let url = signer()
        .presign(
            "GET",
            &example_bucket().object_url("test.txt"),
            &[],
            &[],
            86400,
            NOW,
        )
        .unwrap();
    assert_eq!(
        url,
        "https://examplebucket.s3.amazonaws.com/test.txt\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
}

#[test]
fn header_signed_get_object_with_range() {
    let headers = signer()
        .sign_headers(
            "GET",
            &example_bucket().object_url("test.txt"),
            &[("Range", "bytes=0-9")],
            EMPTY_SHA256,
            NOW,
        )
        .unwrap();
    assert_eq!(header(&headers, "x-amz-date"), "20130524T000000Z");
    assert_eq!(header(&headers, "x-amz-content-sha256"), EMPTY_SHA256);
    assert_eq!(
        header(&headers, "authorization"),
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
         SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
         Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
}

/// The same example through the low-level steps, checking every published
/// intermediate value so a failure points at the step that broke.
#[test]
fn get_object_step_by_step() {
    let creq = canonical_request(
        "GET",
        "/test.txt",
        "",
        &[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ],
        EMPTY_SHA256,
    )
    .unwrap();
    assert_eq!(
        creq.as_str(),
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
         x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
         x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let date = AmzDate::new(NOW).unwrap();
    let scope = credential_scope(date.date(), "us-east-1", "s3");
    let sts = string_to_sign(&date, &scope, creq.as_str());
    assert_eq!(
        sts,
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
         7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    );
    let key = signing_key(&Secret::new(SECRET_KEY), date.date(), "us-east-1", "s3");
    assert_eq!(
        signature(&key, &sts),
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
}

#[test]
fn header_signed_put_object() {
    let body = b"Welcome to Amazon S3.";
    let hash = sha256_hex(body);
    assert_eq!(
        hash.as_str(),
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    );
    // The example writes the key unencoded; the signer canonicalises `$`.
    let headers = signer()
        .sign_headers(
            "PUT",
            "https://examplebucket.s3.amazonaws.com/test$file.text",
            &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            hash.as_str(),
            NOW,
        )
        .unwrap();
    assert_eq!(
        header(&headers, "authorization"),
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
         SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,\
         Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    );
    // Going through Endpoint::object_url gives the same signature.
    let again = signer()
        .sign_headers(
            "PUT",
            &example_bucket().object_url("test$file.text"),
            &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            hash.as_str(),
            NOW,
        )
        .unwrap();
    assert_eq!(headers, again);
}

#[test]
fn header_signed_list_objects() {
    let headers = signer()
        .sign_headers(
            "GET",
            "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
            &[],
            EMPTY_SHA256,
            NOW,
        )
        .unwrap();
    assert!(
        header(&headers, "authorization").ends_with(
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        )
    );
}

/// The POST example's policy has `starts-with` conditions that [`PostPolicy`]
/// does not generate, so its published base64 text is signed directly.
#[test]
fn post_policy_signature_example() {
    const POLICY: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
    let sig = signer()
        .sign_policy(POLICY, datetime!(2015-12-29 00:00:00 UTC))
        .unwrap();
    assert_eq!(
        sig,
        "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
    );
}

#[test]
fn unsigned_payload_header_grant_is_accepted() {
    let headers = signer()
        .sign_headers(
            "PUT",
            &example_bucket().object_url("a"),
            &[],
            UNSIGNED_PAYLOAD,
            NOW,
        )
        .unwrap();
    assert_eq!(header(&headers, "x-amz-content-sha256"), "UNSIGNED-PAYLOAD");
}
