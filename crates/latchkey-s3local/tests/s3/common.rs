//! Starts a real store on 127.0.0.1:0 and points real clients at it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use latchkey_s3local::{InProcess, LocalStore, LocalStoreConfig, ObjectEvents, StoreHandle};

pub const BUCKET: &str = "uploads";
pub const AK: &str = "AKIDLATCHKEYTEST";
pub const SK: &str = "secret/for+the/local+store";

#[derive(Default)]
pub struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl ObjectEvents for Recorder {
    fn object_created(&self, key: &str, size: u64, etag: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("created {key} {size} {etag}"));
    }
    fn object_removed(&self, key: &str) {
        self.0.lock().unwrap().push(format!("removed {key}"));
    }
}

pub struct TestStore {
    pub dir: Option<tempfile::TempDir>,
    pub handle: StoreHandle,
    pub client: Client,
    pub events: Arc<Recorder>,
    pub http: reqwest::Client,
    /// The same store's in-process part writer.
    pub parts: InProcess,
}

impl TestStore {
    pub fn url(&self, key: &str) -> String {
        format!("{}/{BUCKET}/{key}", self.handle.endpoint_url())
    }

    pub fn root(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub async fn exists(&self, key: &str) -> bool {
        self.client
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .is_ok()
    }
}

pub fn config(root: &Path) -> LocalStoreConfig {
    LocalStoreConfig {
        root: root.to_path_buf(),
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        access_key_id: AK.into(),
        secret_access_key: SK.to_string().into(),
    }
}

pub fn client_for(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(AK, SK, None, None, "test"))
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

pub async fn serve_at(dir: tempfile::TempDir) -> TestStore {
    let events = Arc::new(Recorder::default());
    let store = LocalStore::open(
        config(dir.path()),
        Some(events.clone() as Arc<dyn ObjectEvents>),
    )
    .await
    .expect("open store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let parts = store.in_process();
    let handle = store.serve(listener);
    let client = client_for(&handle.endpoint_url());
    TestStore {
        dir: Some(dir),
        handle,
        client,
        events,
        http: reqwest::Client::new(),
        parts,
    }
}

pub async fn start() -> TestStore {
    serve_at(tempfile::tempdir().unwrap()).await
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(data))
}

pub fn sha256_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// HTTP status of a failed SDK call.
pub fn status<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> u16 {
    err.raw_response()
        .expect("an HTTP response")
        .status()
        .as_u16()
}

pub fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(err: &E) -> String {
    err.code().unwrap_or_default().to_owned()
}

/// Starts a multipart upload of `key` and sends `body` as its part 1;
/// returns the upload id and the part's ETag.
pub async fn one_part_upload(client: &Client, key: &str, body: Vec<u8>) -> (String, String) {
    let id = client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .content_type("image/jpeg")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let etag = client
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .body(aws_sdk_s3::primitives::ByteStream::from(body))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    (id, etag)
}

/// Completes upload `id` of `key` from its part 1 with `etag`.
pub async fn complete_one_part(client: &Client, key: &str, id: &str, etag: &str) {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}
