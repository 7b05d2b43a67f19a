//! Signer benchmarks: ours beside `aws-sigv4` and `rusty-s3`, and the floor.
//!
//! Run with `cargo bench -p latchkey-sigv4 --bench signer` (never part of
//! `scripts/test`). Each group signs the same request the broker signs for a
//! grant — same URL shape, headers, query and time — with:
//!
//! - `latchkey`: [`Signer`], the day's key cached (as in the broker);
//! - `aws-sigv4`: the official crate, identity and settings built once;
//! - `rusty-s3`: bucket and credentials built once;
//! - `floor`: the least any SigV4 signer must do per request once the day's
//!   key is cached and the canonical request is already a string: SHA-256 of
//!   the canonical request, the string to sign, one HMAC-SHA256, hex. A setup
//!   check proves the floor signs exactly the canonical request ours signs.
//!
//! Neither peer builds POST policies or (rusty-s3) header auth, so those
//! groups have fewer entries.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use criterion::{Criterion, criterion_group};
use hmac::{Hmac, Mac};
use latchkey_sigv4::{
    AmzDate, Credentials, Endpoint, PostPolicy, Signer, UNSIGNED_PAYLOAD, canonical_query,
    canonical_request, canonical_uri, credential_scope, signing_key, uri_encode,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const UNIX_TIME: i64 = 1_768_478_400; // 2026-01-15T12:00:00Z
const EXPIRES: u64 = 3600;
const KEY: &str = "u/alice/0190f5c3-8e4b-7c2a-9d1e-3f6a2b1c4d5e.jpg";
const SHA_B64: &str = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
const SHA_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const UPLOAD_ID: &str =
    "YjM5ZWI0ZjktYWE4Mi00ZjE2LWJjYjUtNTE5OTY0ZjA1NzQ1LmM1ZjI4ZTJlLTFhMDUtNGUxNi04NjBm";

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(UNIX_TIME).unwrap()
}

fn endpoint() -> Endpoint {
    Endpoint::new("http://127.0.0.1:9000", "uploads", REGION, true).unwrap()
}

/// What the broker's `put` grant signs for a 200 KB photo on the embedded store.
fn put_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("content-type", "image/jpeg"),
        ("content-length", "204800"),
        ("x-amz-checksum-sha256", SHA_B64),
        ("if-none-match", "*"),
    ]
}

fn part_headers() -> Vec<(&'static str, &'static str)> {
    vec![("content-length", "8388608")]
}

fn part_query() -> Vec<(&'static str, &'static str)> {
    vec![("partNumber", "3"), ("uploadId", UPLOAD_ID)]
}

/// The floor: one SHA-256 over the canonical request and one HMAC over the
/// string to sign, under a cached key, hex-encoded. No parsing, encoding,
/// sorting or URL building.
struct Floor {
    key: [u8; 32],
    scope: String,
    amz_date: AmzDate,
}

impl Floor {
    fn new() -> Self {
        let amz_date = AmzDate::new(now()).unwrap();
        let key = signing_key(
            &latchkey_sigv4::Secret::new(SECRET_KEY),
            amz_date.date(),
            REGION,
            "s3",
        );
        let scope = credential_scope(amz_date.date(), REGION, "s3");
        Self {
            key,
            scope,
            amz_date,
        }
    }

    fn sign(&self, canonical_request: &str) -> String {
        let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
        let mut sts = String::with_capacity(128);
        sts.push_str("AWS4-HMAC-SHA256\n");
        sts.push_str(self.amz_date.datetime());
        sts.push('\n');
        sts.push_str(&self.scope);
        sts.push('\n');
        sts.push_str(&hash);
        self.hmac_hex(sts.as_bytes())
    }

    fn hmac_hex(&self, data: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap();
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The canonical request of a presigned URL, built with the crate's own
    /// public step functions, so the floor hashes exactly what ours hashes.
    fn presign_creq(
        &self,
        method: &str,
        url_path: &str,
        headers: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> String {
        let mut all_headers = headers.to_vec();
        all_headers.push(("host", "127.0.0.1:9000"));
        let probe = canonical_request(method, "/", "", &all_headers, UNSIGNED_PAYLOAD).unwrap();
        let credential = format!("{ACCESS_KEY}/{}", self.scope);
        let expires = EXPIRES.to_string();
        let mut q = query.to_vec();
        q.extend([
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", credential.as_str()),
            ("X-Amz-Date", self.amz_date.datetime()),
            ("X-Amz-Expires", expires.as_str()),
            ("X-Amz-SignedHeaders", probe.signed_headers()),
        ]);
        canonical_request(
            method,
            &canonical_uri(url_path),
            &canonical_query(&q),
            &all_headers,
            UNSIGNED_PAYLOAD,
        )
        .unwrap()
        .as_str()
        .to_owned()
    }
}

fn signature_of(url: &str) -> &str {
    url.rsplit_once("X-Amz-Signature=").unwrap().1
}

struct Aws {
    identity: Identity,
}

impl Aws {
    fn new() -> Self {
        let creds = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "b");
        Self {
            identity: creds.into(),
        }
    }

    /// Query auth, then the URL the client gets (what ours returns).
    fn presign(&self, url: &str, headers: &[(&str, &str)]) -> String {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(EXPIRES));
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(REGION)
            .name("s3")
            .time(UNIX_EPOCH + Duration::from_secs(UNIX_TIME as u64))
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "PUT",
            url,
            headers.iter().copied(),
            SignableBody::UnsignedPayload,
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let (_, query) = instructions.into_parts();
        let mut out = String::with_capacity(url.len() + 512);
        out.push_str(url);
        for (i, (k, v)) in query.iter().enumerate() {
            out.push(if i == 0 && !url.contains('?') {
                '?'
            } else {
                '&'
            });
            out.push_str(k);
            out.push('=');
            out.push_str(&uri_encode(v));
        }
        out
    }

    fn sign_headers(&self, url: &str, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(REGION)
            .name("s3")
            .time(UNIX_EPOCH + Duration::from_secs(UNIX_TIME as u64))
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "PUT",
            url,
            headers.iter().copied(),
            SignableBody::Precomputed(SHA_HEX.to_owned()),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .iter()
            .map(|h| (h.name().to_owned(), h.value().to_owned()))
            .collect()
    }
}

struct Rusty {
    bucket: rusty_s3::Bucket,
    creds: rusty_s3::Credentials,
    time: jiff::Timestamp,
}

impl Rusty {
    fn new() -> Self {
        let bucket = rusty_s3::Bucket::new(
            "http://127.0.0.1:9000".parse().unwrap(),
            rusty_s3::UrlStyle::Path,
            "uploads",
            REGION,
        )
        .unwrap();
        Self {
            bucket,
            creds: rusty_s3::Credentials::new(ACCESS_KEY, SECRET_KEY),
            time: jiff::Timestamp::from_second(UNIX_TIME).unwrap(),
        }
    }

    fn presign_put(&self, headers: &[(&'static str, &'static str)]) -> String {
        use rusty_s3::S3Action;
        let mut action = self.bucket.put_object(Some(&self.creds), KEY);
        for (k, v) in headers {
            action.headers_mut().insert(*k, *v);
        }
        let url = action.sign_with_time(Duration::from_secs(EXPIRES), &self.time);
        url.into()
    }

    fn presign_part(&self) -> String {
        use rusty_s3::S3Action;
        let mut action = self
            .bucket
            .upload_part(Some(&self.creds), KEY, 3, UPLOAD_ID);
        action.headers_mut().insert("content-length", "8388608");
        let url = action.sign_with_time(Duration::from_secs(EXPIRES), &self.time);
        url.into()
    }
}

fn presigned_put(c: &mut Criterion) {
    let signer = Signer::new(Credentials::new(ACCESS_KEY, SECRET_KEY), REGION);
    let endpoint = endpoint();
    let headers = put_headers();
    let floor = Floor::new();
    let aws = Aws::new();
    let rusty = Rusty::new();

    // Everyone signs the same request: same signature from all four.
    let ours = signer
        .presign(
            "PUT",
            &endpoint.object_url(KEY),
            &headers,
            &[],
            EXPIRES,
            now(),
        )
        .unwrap();
    let creq = floor.presign_creq("PUT", &format!("/uploads/{KEY}"), &headers, &[]);
    assert_eq!(signature_of(&ours), floor.sign(&creq), "floor signs ours");
    let theirs = aws.presign(&endpoint.object_url(KEY), &headers);
    assert_eq!(signature_of(&ours), signature_of(&theirs), "aws-sigv4");
    let rs = rusty.presign_put(&headers);
    assert_eq!(signature_of(&ours), signature_of(&rs), "rusty-s3");

    let mut g = c.benchmark_group("presigned_put");
    g.bench_function("latchkey", |b| {
        b.iter(|| {
            // The broker builds the object URL per grant, so it is timed too.
            let url = endpoint.object_url(black_box(KEY));
            signer
                .presign("PUT", &url, black_box(&headers), &[], EXPIRES, now())
                .unwrap()
        })
    });
    g.bench_function("aws-sigv4", |b| {
        b.iter(|| aws.presign(&endpoint.object_url(black_box(KEY)), black_box(&headers)))
    });
    g.bench_function("rusty-s3", |b| {
        b.iter(|| rusty.presign_put(black_box(&headers)))
    });
    g.bench_function("floor", |b| b.iter(|| floor.sign(black_box(&creq))));
    g.finish();
}

fn part_url(c: &mut Criterion) {
    let signer = Signer::new(Credentials::new(ACCESS_KEY, SECRET_KEY), REGION);
    let endpoint = endpoint();
    let headers = part_headers();
    let query = part_query();
    let floor = Floor::new();
    let aws = Aws::new();
    let rusty = Rusty::new();

    let url = endpoint.object_url(KEY);
    let ours = signer
        .presign("PUT", &url, &headers, &query, EXPIRES, now())
        .unwrap();
    let creq = floor.presign_creq("PUT", &format!("/uploads/{KEY}"), &headers, &query);
    assert_eq!(signature_of(&ours), floor.sign(&creq), "floor signs ours");
    let with_query = format!("{url}?partNumber=3&uploadId={UPLOAD_ID}");
    let theirs = aws.presign(&with_query, &headers);
    assert_eq!(signature_of(&ours), signature_of(&theirs), "aws-sigv4");
    let rs = rusty.presign_part();
    assert_eq!(signature_of(&ours), signature_of(&rs), "rusty-s3");

    let mut g = c.benchmark_group("part_url");
    g.bench_function("latchkey", |b| {
        b.iter(|| {
            signer
                .presign(
                    "PUT",
                    black_box(&url),
                    black_box(&headers),
                    black_box(&query),
                    EXPIRES,
                    now(),
                )
                .unwrap()
        })
    });
    g.bench_function("aws-sigv4", |b| {
        b.iter(|| {
            let u = format!("{}?partNumber=3&uploadId={UPLOAD_ID}", black_box(&url));
            aws.presign(&u, black_box(&headers))
        })
    });
    g.bench_function("rusty-s3", |b| b.iter(|| rusty.presign_part()));
    g.bench_function("floor", |b| b.iter(|| floor.sign(black_box(&creq))));
    g.finish();
}

fn signed_headers(c: &mut Criterion) {
    let signer = Signer::new(Credentials::new(ACCESS_KEY, SECRET_KEY), REGION);
    let endpoint = endpoint();
    let headers = vec![
        ("content-type", "image/jpeg"),
        ("content-length", "204800"),
        ("x-amz-checksum-sha256", SHA_B64),
    ];
    let floor = Floor::new();
    let aws = Aws::new();
    let url = endpoint.object_url(KEY);

    let ours = signer
        .sign_headers("PUT", &url, &headers, SHA_HEX, now())
        .unwrap();
    let auth = |h: &[(String, String)]| {
        h.iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let mut all = headers.clone();
    all.extend([
        ("host", "127.0.0.1:9000"),
        ("x-amz-date", floor.amz_date.datetime()),
        ("x-amz-content-sha256", SHA_HEX),
    ]);
    let creq = canonical_request(
        "PUT",
        &canonical_uri(&format!("/uploads/{KEY}")),
        "",
        &all,
        SHA_HEX,
    )
    .unwrap()
    .as_str()
    .to_owned();
    assert!(
        auth(&ours).ends_with(&floor.sign(&creq)),
        "floor signs ours"
    );
    // aws-sigv4 writes `, ` between the parts; the signature is what counts.
    let sig = |a: String| a.rsplit_once("Signature=").unwrap().1.to_owned();
    assert_eq!(
        sig(auth(&ours)),
        sig(auth(&aws.sign_headers(&url, &headers))),
        "aws-sigv4"
    );

    let mut g = c.benchmark_group("signed_headers");
    g.bench_function("latchkey", |b| {
        b.iter(|| {
            signer
                .sign_headers("PUT", black_box(&url), black_box(&headers), SHA_HEX, now())
                .unwrap()
        })
    });
    g.bench_function("aws-sigv4", |b| {
        b.iter(|| aws.sign_headers(black_box(&url), black_box(&headers)))
    });
    g.bench_function("floor", |b| b.iter(|| floor.sign(black_box(&creq))));
    g.finish();
}

fn post_policy(c: &mut Criterion) {
    let signer = Signer::new(Credentials::new(ACCESS_KEY, SECRET_KEY), REGION);
    let floor = Floor::new();
    let policy = PostPolicy {
        bucket: "uploads".into(),
        key: KEY.into(),
        expiration: now() + time::Duration::hours(1),
        content_type: Some("image/jpeg".into()),
        content_length_range: Some((204_800, 204_800)),
        extra_fields: vec![
            ("success_action_status".into(), "201".into()),
            (
                "x-amz-meta-upload-id".into(),
                "0190f5c3-8e4b-7c2a-9d1e-3f6a2b1c4d5e".into(),
            ),
            ("x-amz-checksum-algorithm".into(), "SHA256".into()),
            ("x-amz-checksum-sha256".into(), SHA_B64.into()),
        ],
    };
    let form = signer.post_policy(&policy, now()).unwrap();
    // The floor for a POST form: base64 of the (already serialised) policy
    // document and one HMAC over it.
    let json = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(form.get("policy").unwrap())
            .unwrap()
    };
    let floor_sign = |json: &[u8]| {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(json);
        floor.hmac_hex(encoded.as_bytes())
    };
    assert_eq!(
        form.get("x-amz-signature").unwrap(),
        floor_sign(&json),
        "floor"
    );

    let mut g = c.benchmark_group("post_policy");
    g.bench_function("latchkey", |b| {
        b.iter(|| signer.post_policy(black_box(&policy), now()).unwrap())
    });
    g.bench_function("floor", |b| b.iter(|| floor_sign(black_box(&json))));
    g.finish();
}

criterion_group!(
    benches,
    presigned_put,
    part_url,
    signed_headers,
    post_policy
);

/// `LATCHKEY_SIGV4_PROFILE=<case>:<n>` runs one case `n` times and exits
/// instead of benchmarking, for instruction counts under
/// `valgrind --tool=callgrind` (repeatable on a loaded machine, unlike time).
/// Cases: put, part, headers, post, and each with a `-floor` twin.
fn profile(spec: &str) {
    let (case, n) = spec.split_once(':').unwrap_or((spec, "10000"));
    let n: usize = n.parse().expect("iterations");
    let signer = Signer::new(Credentials::new(ACCESS_KEY, SECRET_KEY), REGION);
    let endpoint = endpoint();
    let floor = Floor::new();
    let headers = put_headers();
    let put_creq = floor.presign_creq("PUT", &format!("/uploads/{KEY}"), &headers, &[]);
    let post = PostPolicy {
        bucket: "uploads".into(),
        key: KEY.into(),
        expiration: now() + time::Duration::hours(1),
        content_type: Some("image/jpeg".into()),
        content_length_range: Some((204_800, 204_800)),
        extra_fields: vec![("success_action_status".into(), "201".into())],
    };
    for _ in 0..n {
        match case {
            "put" => {
                let url = endpoint.object_url(black_box(KEY));
                black_box(signer.presign("PUT", &url, &headers, &[], EXPIRES, now())).unwrap();
            }
            "part" => {
                let url = endpoint.object_url(black_box(KEY));
                let q = part_query();
                black_box(signer.presign("PUT", &url, &part_headers(), &q, EXPIRES, now()))
                    .unwrap();
            }
            "headers" => {
                let url = endpoint.object_url(black_box(KEY));
                black_box(signer.sign_headers("PUT", &url, &headers[..3], SHA_HEX, now())).unwrap();
            }
            "post" => {
                black_box(signer.post_policy(black_box(&post), now())).unwrap();
            }
            "put-floor" => {
                black_box(floor.sign(black_box(&put_creq)));
            }
            other => panic!("unknown case {other}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("LATCHKEY_SIGV4_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
