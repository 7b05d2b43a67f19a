//! `S3Store::with_body_writer`: the two streamed writes go to the writer
//! (the embedded store in the broker's process), every other call still
//! goes over S3 — here to a port nothing listens on.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use latchkey_domain::{ObjectKey, Sha256Digest};
use latchkey_store::{
    BodyWriter, ByteBody, Capabilities, ObjectStore, S3Store, S3StoreConfig, StoreError,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

async fn drain(body: ByteBody) -> usize {
    body.map(|c| c.unwrap().len())
        .collect::<Vec<_>>()
        .await
        .iter()
        .sum()
}

#[async_trait]
impl BodyWriter for Recorder {
    async fn put_stream(
        &self,
        key: &ObjectKey,
        content_type: &str,
        length: u64,
        sha256: Option<Sha256Digest>,
        body: ByteBody,
    ) -> Result<Option<String>, StoreError> {
        let got = drain(body).await;
        self.0.lock().unwrap().push(format!(
            "put {key} {content_type} {length} {got} {}",
            sha256.is_some()
        ));
        Ok(Some("put-etag".into()))
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        length: u64,
        body: ByteBody,
    ) -> Result<String, StoreError> {
        let got = drain(body).await;
        self.0
            .lock()
            .unwrap()
            .push(format!("part {key} {upload_id} {number} {length} {got}"));
        Err(StoreError::Refused("NoSuchUpload".into()))
    }
}

fn body(bytes: &'static [u8]) -> ByteBody {
    futures::stream::iter([Ok(Bytes::from_static(bytes))]).boxed()
}

/// A loopback port that was free a moment ago: connections are refused.
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn store(endpoint: &str) -> S3Store {
    S3Store::new(&S3StoreConfig {
        endpoint: endpoint.to_owned(),
        region: "us-east-1".into(),
        bucket: "b".into(),
        path_style: true,
        access_key_id: "AKID".into(),
        secret_access_key: "secret".to_owned().into(),
        capabilities: Capabilities::FULL,
    })
    .with_timeout(std::time::Duration::from_secs(5))
}

#[tokio::test]
async fn streamed_writes_go_to_the_writer_and_the_rest_over_s3() {
    let writer = Arc::new(Recorder::default());
    let s = store(&dead_endpoint()).with_body_writer(writer.clone());
    let key = ObjectKey::from_trusted("u/a/photo.jpg".to_owned());

    let etag = s
        .put_stream(&key, "image/jpeg", 5, None, body(b"hello"))
        .await
        .unwrap();
    assert_eq!(etag.as_deref(), Some("put-etag"));
    // The writer's error is the store's answer, as it is.
    let err = s
        .upload_part(&key, "up-1", 3, 2, body(b"hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused(c) if c == "NoSuchUpload"),
        "{err:?}"
    );
    assert_eq!(
        *writer.0.lock().unwrap(),
        vec![
            "put u/a/photo.jpg image/jpeg 5 5 false".to_owned(),
            "part u/a/photo.jpg up-1 3 2 2".to_owned(),
        ]
    );
    // Anything else is an S3 call, and nothing answers it.
    let err = s.head(&key).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn without_a_writer_streamed_writes_go_over_s3() {
    let s = store(&dead_endpoint());
    let key = ObjectKey::from_trusted("u/a/photo.jpg".to_owned());
    let err = s
        .put_stream(&key, "image/jpeg", 5, None, body(b"hello"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}
