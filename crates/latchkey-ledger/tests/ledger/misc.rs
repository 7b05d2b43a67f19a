//! Opening, reopening, URL handling and health checks.

use latchkey_domain::UploadStatus;
use latchkey_ledger::{Changes, OpenOptions, SqliteLedger, connect, connect_with};

use crate::harness::Backend;
use crate::{Db, now, upload};

conformance!(
    reopening_keeps_the_data,
    connect_picks_the_backend_by_scheme,
);

async fn reopening_keeps_the_data(db: Db) {
    let u = upload("alice", "photo");
    db.ledger.insert(&u, None).await.unwrap();
    let committed = db
        .ledger
        .transition(
            u.id,
            UploadStatus::Pending,
            UploadStatus::Committed,
            &Changes::default(),
            now(),
        )
        .await
        .unwrap()
        .unwrap();
    db.ledger.close().await;

    // Migrations run again on every open and must be no-ops the second
    // time; opening without migrating finds the schema complete.
    for migrate in [true, true, false] {
        let options = OpenOptions {
            migrate,
            max_connections: 2,
        };
        let again = connect_with(&db.url, options).await.unwrap();
        assert_eq!(again.get(u.id).await.unwrap(), Some(committed.clone()));
        assert_eq!(again.outbox_pending(10).await.unwrap().len(), 1);
        again.close().await;
    }
}

async fn connect_picks_the_backend_by_scheme(db: Db) {
    let urls = match db.backend {
        Backend::Sqlite => vec![db.url.clone()],
        // Both spellings PostgreSQL itself accepts.
        Backend::Postgres => vec![
            db.url.clone(),
            db.url.replacen("postgres://", "postgresql://", 1),
        ],
    };
    for url in urls {
        let repo = connect(&url).await.unwrap();
        repo.ping().await.unwrap();
        let u = upload("alice", "photo");
        repo.insert(&u, None).await.unwrap();
        assert_eq!(db.ledger.get(u.id).await.unwrap(), Some(u));
        repo.close().await;
    }
}

#[tokio::test]
async fn sqlite_memory_databases_work() {
    let memory = connect("sqlite::memory:").await.unwrap();
    let u = upload("alice", "photo");
    memory.insert(&u, None).await.unwrap();
    assert_eq!(memory.get(u.id).await.unwrap(), Some(u));
}

#[tokio::test]
async fn bad_urls_fail_without_echoing_secrets() {
    for url in [
        // A name that never resolves (RFC 6761), so this fails fast.
        "postgres://latchkey:hunter2@db.invalid/latchkey",
        "postgresql://latchkey:hunter2@db.invalid:5432/latchkey?sslmode=require",
        "postgres://latchkey:hunter2@db.invalid:notaport/latchkey",
        "postgres://latchkey:hunter2@db.invalid/latchkey?sslmode=hunter2",
        "sqlite://ledger.db?mode=hunter2",
        "mysql://root:hunter2@db.invalid/latchkey",
        "latchkey:hunter2@db.invalid",
        "hunter2",
    ] {
        let Err(err) = connect(url).await else {
            panic!("{url} connected")
        };
        let shown = format!("{err}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("db.invalid"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn open_fails_cleanly_on_a_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/missing/dir/ledger.db", dir.path().display());
    let err = SqliteLedger::open(&url).await.unwrap_err();
    assert!(!format!("{err}").contains("missing/dir"), "{err}");
}
