//! Durability across restarts and cleanup of what a crash leaves behind.

use aws_sdk_s3::primitives::ByteStream;

use crate::common::{BUCKET, md5_hex, serve_at};

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
