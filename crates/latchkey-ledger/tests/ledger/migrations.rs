//! Migrating as its own step (`latchkey migrate`) and opening without
//! migrating, on databases that start empty.

use std::collections::BTreeMap;
use std::path::Path;

use latchkey_domain::{UploadId, UploadStatus};
use latchkey_ledger::{
    LedgerError, OpenOptions, QUOTA_STATUSES, Quota, QuotaKind, connect, connect_with, migrate,
};
use sqlx::migrate::Migrator;

use crate::usage::exec;
use crate::{profile, upload, user};

conformance_empty!(
    opening_without_migrating_needs_a_migrated_schema,
    migrate_is_repeatable,
    the_usage_counter_is_backfilled_from_existing_rows,
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

/// Applies this backend's migrations up to, not including, the one that
/// added the usage counter, as a database migrated by an older release.
async fn migrate_before_usage_counter(url: &str) {
    let backend = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let all = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let older = tempfile::tempdir().unwrap();
    let mut found = false;
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with("_usage_counter.sql") {
            found = true;
        } else {
            std::fs::copy(&path, older.path().join(name)).unwrap();
        }
    }
    assert!(found, "no usage counter migration in {}", all.display());
    let migrator = Migrator::new(older.path()).await.unwrap();
    if backend == "sqlite" {
        let options = url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap();
        let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
            .await
            .unwrap();
        migrator.run(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        pool.close().await;
    }
}

async fn the_usage_counter_is_backfilled_from_existing_rows(url: String) {
    migrate_before_usage_counter(&url).await;
    // Rows in every status for two users in two profiles, written as the
    // older release would have, before any trigger existed.
    let mut expected: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    let mut inserts = Vec::new();
    let mut size = 10u64;
    for (u, p) in [("alice", "photo"), ("alice", "doc"), ("bob", "photo")] {
        for status in UploadStatus::ALL {
            size += 1;
            let id = UploadId::new();
            inserts.push(format!(
                "INSERT INTO uploads (id, user_id, profile, mode, key, filename, content_type, \
                 size, status, created_at, expires_at, updated_at) VALUES ('{id}', '{u}', \
                 '{p}', 'put', 'u/{u}/{p}/{id}', 'f.jpg', 'image/jpeg', {size}, '{status}', \
                 0, 0, 0)"
            ));
            let e = expected.entry((u, p)).or_default();
            if QUOTA_STATUSES.contains(&status) {
                *e = (e.0 + size, e.1 + 1);
            }
        }
    }
    exec(&url, &inserts).await;

    migrate(&url).await.unwrap();
    let ledger = connect(&url).await.unwrap();
    for ((u, p), used) in &expected {
        assert_eq!(
            ledger.usage(&user(u), &profile(p)).await.unwrap(),
            *used,
            "{u}/{p}"
        );
    }
    assert_eq!(
        ledger
            .usage(&user("carol"), &profile("photo"))
            .await
            .unwrap(),
        (0, 0)
    );

    // The quota now checks against the backfilled figure: alice has 3 live
    // photos, so a limit of 4 admits one more and then refuses.
    let quota = Quota {
        max_bytes: None,
        max_count: Some(4),
    };
    ledger
        .insert(&upload("alice", "photo"), Some(&quota))
        .await
        .unwrap();
    let err = ledger
        .insert(&upload("alice", "photo"), Some(&quota))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::QuotaExceeded {
                what: QuotaKind::Count,
                used: 4,
                ..
            }
        ),
        "{err}"
    );
    ledger.close().await;
}
