//! The embedded store on 127.0.0.1:0, for the tests that point a real
//! client at it.

use latchkey_s3local::{LocalStore, LocalStoreConfig, StoreHandle};

/// Starts an embedded store in a fresh temp dir (kept alive by the returned
/// guard) with one bucket and one key pair.
pub async fn embedded_store(
    bucket: &str,
    access_key_id: &str,
    secret: &str,
) -> (tempfile::TempDir, StoreHandle) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(
        LocalStoreConfig {
            root: dir.path().to_path_buf(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret.to_string().into(),
        },
        None,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (dir, store.serve(listener))
}
