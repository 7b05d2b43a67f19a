//! Migrating as its own step (`latchkey migrate`) and opening without
//! migrating, on databases that start empty.

use latchkey_ledger::{OpenOptions, connect_with, migrate};

use crate::upload;

conformance_empty!(
    opening_without_migrating_needs_a_migrated_schema,
    migrate_is_repeatable,
);

const NO_MIGRATE: OpenOptions = OpenOptions {
    migrate: false,
    max_connections: 2,
};

async fn opening_without_migrating_needs_a_migrated_schema(url: String) {
    let Err(err) = connect_with(&url, NO_MIGRATE).await else {
        panic!("an empty database opened without migrations")
    };
    let shown = err.to_string();
    assert!(shown.contains("latchkey migrate"), "{shown}");

    migrate(&url).await.unwrap();
    let ledger = connect_with(&url, NO_MIGRATE).await.unwrap();
    let u = upload("alice", "photo");
    ledger.insert(&u, None).await.unwrap();
    assert_eq!(ledger.get(u.id).await.unwrap(), Some(u));
    ledger.close().await;
}

async fn migrate_is_repeatable(url: String) {
    if url.starts_with("postgres") {
        // Several instances may run `latchkey migrate` at once on deploy;
        // sqlx serialises them with an advisory lock. (A SQLite ledger has
        // one instance, and sqlx takes no such lock there.)
        let (a, b) = tokio::join!(migrate(&url), migrate(&url));
        a.unwrap();
        b.unwrap();
    }
    migrate(&url).await.unwrap();
    migrate(&url).await.unwrap();
    connect_with(&url, NO_MIGRATE).await.unwrap().close().await;
}
