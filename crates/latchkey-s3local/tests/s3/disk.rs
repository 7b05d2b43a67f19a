//! Durability across restarts and cleanup of what a crash leaves behind.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::common::{BUCKET, code, md5_hex, serve_at};

#[tokio::test]
async fn reopen_sees_objects_and_cleans_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut s = serve_at(dir).await;
    for key in ["a", "a/b", "z/ü"] {
        s.client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .content_type("text/plain")
            .metadata("k", key.len().to_string())
            .body(ByteStream::from(key.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    s.client
        .delete_object()
        .bucket(BUCKET)
        .key("a/b")
        .send()
        .await
        .unwrap();
    let dir = s.dir.take().unwrap();
    s.handle.shutdown().await;

    // What a crash mid-upload leaves: a temp file and an unreferenced data file.
    std::fs::write(root.join("tmp").join("half-upload"), b"partial").unwrap();
    let fanout = std::fs::read_dir(root.join("objects"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let orphan = fanout.join("deadbeef.0000.data");
    std::fs::write(&orphan, b"orphan").unwrap();

    let s = serve_at(dir).await;
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert!(!orphan.exists());

    let listed = s
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["a", "z/ü"]);
    let head = s
        .client
        .head_object()
        .bucket(BUCKET)
        .key("z/ü")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.e_tag(),
        Some(format!("\"{}\"", md5_hex("z/ü".as_bytes())).as_str())
    );
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(
        head.metadata().unwrap().get("k").map(String::as_str),
        Some("4")
    );
    let got = s
        .client
        .get_object()
        .bucket(BUCKET)
        .key("a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"a"
    );
}

/// What a crash in the middle of removing a completed upload's folder left
/// (with the removal done file by file, as before it became one rename): the
/// `upload.json` and a part's JSON, the part's bytes gone. Such an upload can
/// never complete, so the next open drops it; before, every CompleteMultipartUpload
/// of it answered 500 and the broker retried it forever.
#[tokio::test]
async fn reopen_drops_an_upload_whose_parts_are_half_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut s = serve_at(dir).await;
    let mut ids = Vec::new();
    for key in ["whole", "broken"] {
        let created = s
            .client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
        let id = created.upload_id().unwrap().to_owned();
        s.client
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from_static(b"part one"))
            .send()
            .await
            .unwrap();
        ids.push(id);
    }
    let dir = s.dir.take().unwrap();
    s.handle.shutdown().await;
    let broken = root.join("uploads").join(&ids[1]);
    let part_data: Vec<_> = std::fs::read_dir(&broken)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    assert_eq!(part_data.len(), 1, "one part file in {}", broken.display());
    std::fs::remove_file(&part_data[0]).unwrap();

    let s = serve_at(dir).await;
    assert!(!broken.exists(), "the broken upload's folder is removed");
    let listed = s
        .client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let open: Vec<_> = listed.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(open, vec!["whole"]);
    let err = s
        .client
        .list_parts()
        .bucket(BUCKET)
        .key("broken")
        .upload_id(&ids[1])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");

    // Completing the whole one removes its folder, leaving nothing in tmp/.
    let parts = s
        .client
        .list_parts()
        .bucket(BUCKET)
        .key("whole")
        .upload_id(&ids[0])
        .send()
        .await
        .unwrap();
    let etag = parts.parts()[0].e_tag().unwrap().to_owned();
    s.client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key("whole")
        .upload_id(&ids[0])
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(!root.join("uploads").join(&ids[0]).exists());
    assert_eq!(std::fs::read_dir(root.join("uploads")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}
