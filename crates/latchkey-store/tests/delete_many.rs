//! `ObjectStore::delete_many` (S3 `DeleteObjects`, at most 1000 keys a
//! call) against the embedded store, and against Garage when `scripts/test`
//! (or you) set `LATCHKEY_TEST_S3_*`.

mod support;

use latchkey_domain::ObjectKey;
use latchkey_store::{Capabilities, DELETE_BATCH, ObjectStore, S3Store, S3StoreConfig};

const BUCKET: &str = "delete-bucket";
const AK: &str = "AKIDDELETETEST";
const SK: &str = "delete/secret+for+the/local+store";

/// Every key under `prefix`, all pages.
async fn keys_under(store: &S3Store, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut next = None;
    loop {
        let page = store.list(prefix, next.as_deref(), 1000).await.unwrap();
        keys.extend(page.objects.into_iter().map(|o| o.key));
        match page.next {
            Some(n) => next = Some(n),
            None => return keys,
        }
    }
}

/// More keys than one call may carry, so the batching is exercised: all of
/// them go, a missing key among them is no error, and a key that was not
/// named stays.
async fn deletes_more_than_one_batch(store: &S3Store, prefix: &str) {
    let count = DELETE_BATCH + 37;
    let keys: Vec<ObjectKey> = (0..count)
        .map(|i| ObjectKey::from_trusted(format!("{prefix}doomed/{i:05}")))
        .collect();
    // Small bodies, several at a time: this is about the delete.
    for chunk in keys.chunks(32) {
        let puts = chunk
            .iter()
            .map(|k| store.put_bytes(k, "text/plain", k.as_str().as_bytes().to_vec()));
        for put in futures::future::join_all(puts).await {
            put.unwrap();
        }
    }
    let keeper = ObjectKey::from_trusted(format!("{prefix}keeper"));
    store
        .put_bytes(&keeper, "text/plain", b"stays".to_vec())
        .await
        .unwrap();
    assert_eq!(keys_under(store, prefix).await.len(), count + 1);

    let mut doomed = keys.clone();
    doomed.push(ObjectKey::from_trusted(format!("{prefix}never-written")));
    store.delete_many(&doomed).await.unwrap();

    assert_eq!(keys_under(store, prefix).await, vec![keeper.to_string()]);
    // Deleting what is already gone succeeds, as a single delete does.
    store.delete_many(&doomed).await.unwrap();
    // Nothing to delete makes no call and cannot fail.
    store.delete_many(&[]).await.unwrap();
    store.delete_many(&[keeper]).await.unwrap();
    assert!(keys_under(store, prefix).await.is_empty());
}

#[tokio::test]
async fn embedded_store_deletes_in_batches() {
    let (_dir, handle) = support::embedded_store(BUCKET, AK, SK).await;
    let store = S3Store::new(&S3StoreConfig {
        endpoint: handle.endpoint_url(),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        path_style: true,
        access_key_id: AK.into(),
        secret_access_key: SK.to_string().into(),
        capabilities: Capabilities::FULL,
    });
    deletes_more_than_one_batch(&store, "t/").await;
    handle.shutdown().await;
}

#[tokio::test]
async fn refused_batch_is_an_error() {
    let (_dir, handle) = support::embedded_store(BUCKET, AK, SK).await;
    // Wrong secret: the store refuses the call, and the caller hears so.
    let store = S3Store::new(&S3StoreConfig {
        endpoint: handle.endpoint_url(),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        path_style: true,
        access_key_id: AK.into(),
        secret_access_key: "not-the-secret".to_string().into(),
        capabilities: Capabilities::FULL,
    });
    let err = store
        .delete_many(&[ObjectKey::from_trusted("t/x")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, latchkey_store::StoreError::Refused(_)),
        "{err:?}"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn garage_deletes_in_batches() {
    let var = |name: &str| std::env::var(format!("LATCHKEY_TEST_S3_{name}")).ok();
    let (Some(endpoint), Some(region), Some(bucket), Some(ak), Some(sk)) = (
        var("ENDPOINT"),
        var("REGION"),
        var("BUCKET"),
        var("ACCESS_KEY"),
        var("SECRET_KEY"),
    ) else {
        println!("not run: set LATCHKEY_TEST_S3_{{ENDPOINT,REGION,BUCKET,ACCESS_KEY,SECRET_KEY}}");
        return;
    };
    let store = S3Store::new(&S3StoreConfig {
        endpoint,
        region,
        bucket,
        path_style: true,
        access_key_id: ak,
        secret_access_key: sk.into(),
        capabilities: Capabilities::FULL,
    });
    // A prefix of its own, so parallel tests on the same bucket do not meet.
    let prefix = format!(".latchkey-delete-test/{}/", uuid::Uuid::new_v4().simple());
    deletes_more_than_one_batch(&store, &prefix).await;
}
