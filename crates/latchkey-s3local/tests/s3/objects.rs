//! Object and bucket operations through the official SDK.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, MetadataDirective};

use crate::common::{BUCKET, code, md5_hex, sha256_b64, start, status};

#[tokio::test]
async fn put_get_head_delete_round_trip() {
    let s = start().await;
    let body = b"abcdefghij".to_vec();
    let put = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .content_type("image/jpeg")
        .metadata("owner", "u1")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let etag = format!("\"{}\"", md5_hex(&body));
    assert_eq!(put.e_tag(), Some(etag.as_str()));

    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(head.content_length(), Some(10));
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert!(head.last_modified().is_some());
    assert_eq!(
        head.metadata().unwrap().get("owner").map(String::as_str),
        Some("u1")
    );
    assert_eq!(head.checksum_sha256(), Some(sha256_b64(&body).as_str()));
    // The SDK sends a CRC32 by default; it was verified and kept.
    assert_eq!(head.checksum_crc32(), Some(crc32_b64(&body).as_str()));

    // Without checksum mode the checksum is not volunteered.
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), None);

    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("image/jpeg"));
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        body.as_slice()
    );

    let ranged = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .range("bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.content_range(), Some("bytes 2-5/10"));
    assert_eq!(ranged.content_length(), Some(4));
    assert_eq!(
        ranged.body.collect().await.unwrap().into_bytes().as_ref(),
        b"cdef"
    );

    let suffix = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .range("bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        suffix.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hij"
    );

    let bad = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .range("bytes=50-")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&bad), 416);

    s.client
        .delete_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .send()
        .await
        .unwrap();
    // Deleting again is not an error.
    s.client
        .delete_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .send()
        .await
        .unwrap();
    let err = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("photos/cat.jpg")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 404);
    assert_eq!(code(&err), "NoSuchKey");

    let events = s.events.take();
    assert_eq!(
        events,
        vec![
            format!("created photos/cat.jpg 10 {}", md5_hex(&body)),
            "removed photos/cat.jpg".to_owned(),
        ]
    );
}

#[tokio::test]
async fn conditional_get() {
    let s = start().await;
    let put = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();
    let err = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 304);
    let err = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 412);
    s.client
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn buckets() {
    let s = start().await;
    s.client.head_bucket().bucket(BUCKET).send().await.unwrap();
    let err = s
        .client
        .head_bucket()
        .bucket("other")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 404);
    let listed = s.client.list_buckets().send().await.unwrap();
    let names: Vec<_> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, vec![BUCKET]);

    let err = s
        .client
        .put_object()
        .bucket("other")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
    let err = s
        .client
        .list_objects_v2()
        .bucket("other")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
}

#[tokio::test]
async fn awkward_keys_are_independent_objects() {
    let s = start().await;
    // `../x` must not land beside the data folder (something else may have
    // put an `x` there already: only a new one would be ours).
    let beside = s.root().parent().unwrap().join("x");
    let existed = beside.exists();
    let long = "k".repeat(1024);
    let keys = [
        "../x",
        "a",
        "a/b",
        "a/b/../c",
        "ünï/cødé 🐈.txt",
        "with space+plus%25",
        long.as_str(),
    ];
    for (i, key) in keys.iter().enumerate() {
        s.client
            .put_object()
            .bucket(BUCKET)
            .key(*key)
            .body(ByteStream::from(vec![b'0' + i as u8; i + 1]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }
    for (i, key) in keys.iter().enumerate() {
        let got = s
            .client
            .get_object()
            .bucket(BUCKET)
            .key(*key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().to_vec(),
            vec![b'0' + i as u8; i + 1],
            "{key}"
        );
    }
    let listed = s
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort();
    let got: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(got, expected);
    // Nothing escaped the data folder.
    assert_eq!(beside.exists(), existed);

    let too_long = "k".repeat(1025);
    let err = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key(too_long)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 400);
}

#[tokio::test]
async fn list_pagination_prefix_delimiter() {
    let s = start().await;
    let mut keys = Vec::new();
    for i in 0..50 {
        keys.push(format!("p/{i:03}"));
    }
    keys.extend(["a/1", "a/2", "b/x/1", "b/y/2", "c", "q/z"].map(String::from));
    for key in &keys {
        s.client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from_static(b"1"))
            .send()
            .await
            .unwrap();
    }

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s
            .client
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("p/")
            .max_keys(7)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(page.contents().len() <= 7);
        seen.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if page.is_truncated() == Some(true) {
            token = page.next_continuation_token().map(str::to_owned);
        } else {
            break;
        }
    }
    assert_eq!(pages, 8);
    let expected: Vec<String> = (0..50).map(|i| format!("p/{i:03}")).collect();
    assert_eq!(seen, expected);

    // Delimiter: common prefixes and top-level keys, paged one entry at a time.
    let mut entries = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s
            .client
            .list_objects_v2()
            .bucket(BUCKET)
            .delimiter("/")
            .max_keys(1)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        entries.extend(
            page.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        entries.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
        token = page.next_continuation_token().map(str::to_owned);
        if page.is_truncated() != Some(true) {
            break;
        }
    }
    assert_eq!(entries, vec!["a/", "b/", "c", "p/", "q/"]);

    let nested = s
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("b/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let cps: Vec<_> = nested
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(cps, vec!["b/x/", "b/y/"]);
    assert_eq!(nested.key_count(), Some(2));

    let after = s
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("p/")
        .start_after("p/047")
        .send()
        .await
        .unwrap();
    let got: Vec<_> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(got, vec!["p/048", "p/049"]);

    let v1 = s
        .client
        .list_objects()
        .bucket(BUCKET)
        .prefix("a/")
        .send()
        .await
        .unwrap();
    assert_eq!(v1.contents().len(), 2);
}

#[tokio::test]
async fn copy_object_keeps_or_replaces_metadata() {
    let s = start().await;
    let body = b"copy me".to_vec();
    s.client
        .put_object()
        .bucket(BUCKET)
        .key("src")
        .content_type("text/plain")
        .metadata("m", "1")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    s.events.take();
    let copied = s
        .client
        .copy_object()
        .bucket(BUCKET)
        .key("dst")
        .copy_source(format!("{BUCKET}/src"))
        .send()
        .await
        .unwrap();
    let etag = format!("\"{}\"", md5_hex(&body));
    assert_eq!(
        copied.copy_object_result().unwrap().e_tag(),
        Some(etag.as_str())
    );
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("dst")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(
        head.metadata().unwrap().get("m").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        s.events.take(),
        vec![format!("created dst 7 {}", md5_hex(&body))]
    );

    s.client
        .copy_object()
        .bucket(BUCKET)
        .key("dst2")
        .copy_source(format!("{BUCKET}/src"))
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/octet-stream")
        .send()
        .await
        .unwrap();
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("dst2")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert!(head.metadata().is_none_or(|m| m.is_empty()));

    // Deleting the source leaves the copies intact (hard links or not).
    s.client
        .delete_object()
        .bucket(BUCKET)
        .key("src")
        .send()
        .await
        .unwrap();
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("dst")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        body.as_slice()
    );

    let err = s
        .client
        .copy_object()
        .bucket(BUCKET)
        .key("dst3")
        .copy_source(format!("{BUCKET}/missing"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 404);
}

fn crc32_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    use s3s::crypto::Checksum as _;
    base64::engine::general_purpose::STANDARD.encode(s3s::crypto::Crc32::checksum(data))
}

/// A file body makes the SDK stream with aws-chunked encoding and send its
/// CRC32 as a trailer, which must be verified after the last chunk.
#[tokio::test]
async fn large_streamed_body_with_trailing_checksum() {
    let s = start().await;
    let body: Vec<u8> = (0..(24 * 1024 * 1024u32))
        .map(|i| (i % 251) as u8)
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    s.client
        .put_object()
        .bucket(BUCKET)
        .key("big")
        .body(ByteStream::from_path(file.path()).await.unwrap())
        .send()
        .await
        .unwrap();
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("big")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc32(), Some(crc32_b64(&body).as_str()));
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(body.len() as i64));
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(md5_hex(&bytes), md5_hex(&body));
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 1 GiB up and down with flat memory. Slow in debug builds, so opt-in:
/// `cargo test -p latchkey-s3local -- --ignored one_gib`.
#[tokio::test]
#[ignore]
async fn one_gib_with_flat_memory() {
    use md5::Digest as _;
    let s = start().await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let chunk = bytes::Bytes::from((0..CHUNK).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let mut expected = md5::Md5::new();
    for _ in 0..CHUNKS {
        expected.update(&chunk);
    }
    let expected = hex::encode(expected.finalize());
    let before = peak_rss_kib();

    let p = s
        .client
        .put_object()
        .bucket(BUCKET)
        .key("huge")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(
                600,
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    let c = chunk.clone();
    let body = futures::stream::iter((0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(c.clone())));
    let resp = s
        .http
        .put(p.uri())
        .header("content-length", (CHUNK * CHUNKS).to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["etag"].to_str().unwrap(),
        format!("\"{expected}\"")
    );

    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("huge")
        .send()
        .await
        .unwrap();
    let mut md5 = md5::Md5::new();
    let mut stream = got.body;
    while let Some(bytes) = stream.next().await {
        md5.update(bytes.unwrap());
    }
    assert_eq!(hex::encode(md5.finalize()), expected);
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 128, "peak RSS grew by {grown_mib} MiB");
}
