//! Objects and parts written in-process (`InProcess`, what the broker
//! beside the store uses), read back and compared with the SDK's.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use latchkey_s3local::WriteError;

use crate::common::{BUCKET, TestStore, md5_hex, sha256_b64, start};

const MIB: usize = 1024 * 1024;

/// `data` as a body of `chunk`-byte pieces, as a proxied request arrives.
fn chunks(data: &[u8], chunk: usize) -> BoxStream<'static, std::io::Result<Bytes>> {
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

async fn create(s: &TestStore, key: &str) -> String {
    s.client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .content_type("video/mp4")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned()
}

/// Completes `id` from `etags` (parts 1, 2 …) and reads the object back
/// with its SHA-256.
async fn complete_and_read(
    s: &TestStore,
    key: &str,
    id: &str,
    etags: &[String],
) -> (Vec<u8>, Option<String>) {
    let parts = etags
        .iter()
        .zip(1..)
        .map(|(e, n)| CompletedPart::builder().part_number(n).e_tag(e).build())
        .collect();
    s.client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let sha = got.checksum_sha256().map(str::to_owned);
    (got.body.collect().await.unwrap().to_vec(), sha)
}

async fn listed_parts(s: &TestStore, key: &str, id: &str) -> Vec<(i32, i64, String)> {
    s.client
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .send()
        .await
        .unwrap()
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn parts_written_in_process_make_the_object_the_sdk_parts_make() {
    let s = start().await;
    let part1: Vec<u8> = (0..5 * MIB).map(|i| (i % 251) as u8).collect();
    let part2 = vec![7u8; 1000];

    let over_http = create(&s, "a/http.mp4").await;
    let mut http_etags = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let up = s
            .client
            .upload_part()
            .bucket(BUCKET)
            .key("a/http.mp4")
            .upload_id(&over_http)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        http_etags.push(up.e_tag().unwrap().to_owned());
    }

    let direct = create(&s, "a/direct.mp4").await;
    let mut etags = Vec::new();
    for (n, data) in [(1u32, &part1), (2, &part2)] {
        let etag = s
            .parts
            .upload_part(
                "a/direct.mp4",
                &direct,
                n,
                data.len() as u64,
                chunks(data, 64 * 1024),
            )
            .await
            .unwrap();
        assert_eq!(etag, md5_hex(data), "unquoted, the part's MD5");
        assert_eq!(format!("\"{etag}\""), http_etags[n as usize - 1]);
        etags.push(etag);
    }
    // The SDK sees the parts as if it had sent them.
    let listed = listed_parts(&s, "a/direct.mp4", &direct).await;
    assert_eq!(
        listed,
        vec![
            (1, part1.len() as i64, http_etags[0].clone()),
            (2, part2.len() as i64, http_etags[1].clone()),
        ]
    );

    let (http_body, http_sha) = complete_and_read(&s, "a/http.mp4", &over_http, &http_etags).await;
    let (body, sha) = complete_and_read(&s, "a/direct.mp4", &direct, &etags).await;
    assert_eq!(body, [part1, part2].concat());
    assert_eq!(body, http_body);
    assert!(sha.is_some(), "the store hashed the in-process parts too");
    assert_eq!(sha, http_sha);
}

#[tokio::test]
async fn a_body_that_fails_or_is_not_its_length_stores_nothing() {
    let s = start().await;
    let id = create(&s, "b/clip.mp4").await;
    let data = vec![3u8; 100_000];
    let broken: BoxStream<'static, std::io::Result<Bytes>> = futures::stream::iter(vec![
        Ok(Bytes::from(vec![3u8; 50_000])),
        Err(std::io::Error::other("the client went away")),
    ])
    .boxed();
    let cases = [
        ("short", data.len() as u64 + 1, chunks(&data, 10_000)),
        ("long", data.len() as u64 - 1, chunks(&data, 10_000)),
        ("empty", 10, chunks(&[], 1)),
        ("broken", data.len() as u64, broken),
    ];
    for (what, length, body) in cases {
        let err = s
            .parts
            .upload_part("b/clip.mp4", &id, 1, length, body)
            .await
            .unwrap_err();
        assert_eq!(err, WriteError::BodyFailed, "{what}");
    }
    assert_eq!(listed_parts(&s, "b/clip.mp4", &id).await, vec![]);
    // The upload is unharmed: a good part still goes in.
    let etag = s
        .parts
        .upload_part("b/clip.mp4", &id, 1, data.len() as u64, chunks(&data, 7))
        .await
        .unwrap();
    assert_eq!(etag, md5_hex(&data));
}

#[tokio::test]
async fn what_the_store_refuses_is_its_s3_error() {
    let s = start().await;
    let id = create(&s, "c/clip.mp4").await;
    let refused = |code: &str| WriteError::S3 {
        code: code.to_owned(),
        server_error: false,
    };
    let cases = [
        ("c/clip.mp4", "no-such-upload", 1, "NoSuchUpload"),
        ("c/other.mp4", id.as_str(), 1, "NoSuchUpload"),
        ("c/clip.mp4", id.as_str(), 0, "InvalidArgument"),
        ("c/clip.mp4", id.as_str(), 10_001, "InvalidArgument"),
        ("c/clip.mp4", id.as_str(), u32::MAX, "InvalidArgument"),
    ];
    for (key, upload, number, code) in cases {
        let err = s
            .parts
            .upload_part(key, upload, number, 3, chunks(b"abc", 3))
            .await
            .unwrap_err();
        assert_eq!(err, refused(code), "{key} {upload} {number}");
    }
    assert_eq!(listed_parts(&s, "c/clip.mp4", &id).await, vec![]);
}

#[tokio::test]
async fn an_object_put_in_process_is_the_object_the_sdk_reads_and_is_announced() {
    let s = start().await;
    let data: Vec<u8> = (0..300_000).map(|i| (i % 253) as u8).collect();
    let etag = s
        .parts
        .put_object(
            "d/photo.jpg",
            "image/jpeg",
            data.len() as u64,
            Some(sha256_b64(&data)),
            chunks(&data, 16 * 1024),
        )
        .await
        .unwrap();
    assert_eq!(etag, md5_hex(&data));
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("d/photo.jpg")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("image/jpeg"));
    assert_eq!(got.e_tag(), Some(format!("\"{etag}\"").as_str()));
    assert_eq!(got.checksum_sha256(), Some(sha256_b64(&data).as_str()));
    assert_eq!(got.body.collect().await.unwrap().to_vec(), data);
    assert_eq!(
        s.events.take(),
        vec![format!("created d/photo.jpg {} {etag}", data.len())]
    );
}

#[tokio::test]
async fn an_object_the_store_refuses_or_whose_body_fails_is_not_stored() {
    let s = start().await;
    let data = vec![9u8; 50_000];
    let wrong = s
        .parts
        .put_object(
            "e/photo.jpg",
            "image/jpeg",
            data.len() as u64,
            Some(sha256_b64(b"something else")),
            chunks(&data, 4096),
        )
        .await
        .unwrap_err();
    assert_eq!(
        wrong,
        WriteError::S3 {
            code: "BadDigest".to_owned(),
            server_error: false
        }
    );
    let short = s
        .parts
        .put_object(
            "e/photo.jpg",
            "image/jpeg",
            data.len() as u64 + 1,
            None,
            chunks(&data, 4096),
        )
        .await
        .unwrap_err();
    assert_eq!(short, WriteError::BodyFailed);
    assert!(!s.exists("e/photo.jpg").await);
    assert_eq!(s.events.take(), Vec::<String>::new());
}
