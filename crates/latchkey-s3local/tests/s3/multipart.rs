//! Multipart uploads through the SDK.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, CompletedMultipartUpload, CompletedPart};

use crate::common::{
    BUCKET, code, complete_one_part, md5_hex, one_part_upload, sha256_b64, start, status,
};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn multipart_round_trip() {
    let s = start().await;
    let key = "videos/clip.mp4";
    let created = s
        .client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .content_type("video/mp4")
        .metadata("who", "me")
        .send()
        .await
        .unwrap();
    let id = created.upload_id().unwrap().to_owned();

    let part1 = vec![1u8; 5 * MIB];
    let part2 = vec![2u8; 1000];
    let mut etags = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let up = s
            .client
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(up.e_tag(), Some(format!("\"{}\"", md5_hex(data)).as_str()));
        etags.push(up.e_tag().unwrap().to_owned());
    }

    let parts = s
        .client
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let listed: Vec<_> = parts
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap(), p.size().unwrap()))
        .collect();
    assert_eq!(listed, vec![(1, 5 * MIB as i64), (2, 1000)]);

    let uploads = s
        .client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    assert_eq!(uploads.uploads()[0].upload_id(), Some(id.as_str()));

    // Wrong ETag and out-of-order lists are refused and leave the upload usable.
    let bad = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .e_tag("\"0000\"")
                .build(),
        )
        .build();
    let err = s
        .client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(bad)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidPart");
    let backwards = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(2)
                .e_tag(&etags[1])
                .build(),
        )
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .e_tag(&etags[0])
                .build(),
        )
        .build();
    let err = s
        .client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(backwards)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidPartOrder");

    let done = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .e_tag(&etags[0])
                .build(),
        )
        .parts(
            CompletedPart::builder()
                .part_number(2)
                .e_tag(&etags[1])
                .build(),
        )
        .build();
    s.events.take();
    let completed = s
        .client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(done)
        .send()
        .await
        .unwrap();
    let mut md5s = hex::decode(md5_hex(&part1)).unwrap();
    md5s.extend(hex::decode(md5_hex(&part2)).unwrap());
    let expected = format!("{}-2", md5_hex(&md5s));
    assert_eq!(completed.e_tag(), Some(format!("\"{expected}\"").as_str()));
    let total = part1.len() + part2.len();
    assert_eq!(
        s.events.take(),
        vec![format!("created {key} {total} {expected}")]
    );

    let mut whole = part1.clone();
    whole.extend(&part2);
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(total as i64));
    assert_eq!(head.content_type(), Some("video/mp4"));
    assert_eq!(head.checksum_sha256(), Some(sha256_b64(&whole).as_str()));
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        md5_hex(&got.body.collect().await.unwrap().into_bytes()),
        md5_hex(&whole)
    );

    let uploads = s
        .client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
    let err = s
        .client
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 404);
}

#[tokio::test]
async fn small_parts_and_abort() {
    let s = start().await;
    let id = s
        .client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("k")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut parts = Vec::new();
    for n in 1..=2 {
        let up = s
            .client
            .upload_part()
            .bucket(BUCKET)
            .key("k")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from_static(b"tiny"))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(up.e_tag().unwrap())
                .build(),
        );
    }
    let err = s
        .client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key("k")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "EntityTooSmall");

    s.client
        .abort_multipart_upload()
        .bucket(BUCKET)
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let err = s
        .client
        .upload_part()
        .bucket(BUCKET)
        .key("k")
        .upload_id(&id)
        .part_number(3)
        .body(ByteStream::from_static(b"late"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
    let err = s
        .client
        .upload_part()
        .bucket(BUCKET)
        .key("k")
        .upload_id("../../objects")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
    assert!(!s.exists("k").await);
}

/// A one-part upload becomes its object without a copy (a hard link to the
/// part's file); the object must still be exactly those bytes, with their
/// SHA-256, and outlive the upload's folder — also when the same key is
/// completed again from a second upload.
#[tokio::test]
async fn one_part_upload_is_its_part() {
    let s = start().await;
    for round in 0..2u8 {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8 ^ round).collect();
        let (id, etag) = one_part_upload(&s.client, "one", body.clone()).await;
        complete_one_part(&s.client, "one", &id, &etag).await;
        assert!(!s.root().join("uploads").join(&id).exists());
        let head = s
            .client
            .head_object()
            .bucket(BUCKET)
            .key("one")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(body.len() as i64));
        assert_eq!(head.content_type(), Some("image/jpeg"));
        assert_eq!(head.checksum_sha256(), Some(sha256_b64(&body).as_str()));
        let expected = format!("{}-1", md5_hex(&hex::decode(md5_hex(&body)).unwrap()));
        assert_eq!(head.e_tag(), Some(format!("\"{expected}\"").as_str()));
        let got = s
            .client
            .get_object()
            .bucket(BUCKET)
            .key("one")
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().as_ref(),
            &body[..]
        );
    }
}
