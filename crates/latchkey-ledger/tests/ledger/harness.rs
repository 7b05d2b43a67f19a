//! Fresh databases for each test, on either backend.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use latchkey_domain::UploadId;
use latchkey_ledger::{LedgerError, OpenOptions, PgLedger, SqliteLedger, UploadRepo};
use sqlx::{Connection, Executor, PgConnection};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A ledger on a database of its own. `url` reopens the same database.
pub struct Db {
    pub ledger: Arc<dyn UploadRepo>,
    pub url: String,
    pub backend: Backend,
}

/// The pool size the tests use: enough for the concurrency tests to race.
pub const OPTIONS: OpenOptions = OpenOptions {
    migrate: true,
    max_connections: 8,
};

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Runs `test` on a fresh, migrated database of `backend`.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Db) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_empty(backend, move |url| async move {
        let ledger: Arc<dyn UploadRepo> = match backend {
            Backend::Sqlite => Arc::new(SqliteLedger::open_with(&url, OPTIONS).await.unwrap()),
            Backend::Postgres => Arc::new(PgLedger::open_with(&url, OPTIONS).await.unwrap()),
        };
        let db = Db {
            ledger: ledger.clone(),
            url,
            backend,
        };
        test(db).await;
        ledger.close().await;
    })
    .await;
}

/// Runs `test` with the URL of a fresh, empty database of `backend` (a
/// file not yet created, for SQLite), and deletes the database afterwards,
/// whether the test passed or panicked.
pub async fn run_empty<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
            test(url).await;
        }
        Backend::Postgres => {
            if std::env::var("LATCHKEY_TEST_POSTGRES").as_deref() == Ok("skip") {
                eprintln!("skipped: LATCHKEY_TEST_POSTGRES=skip");
                return;
            }
            let server = std::env::var("LATCHKEY_TEST_DATABASE_URL")
                .unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
            let name = format!("latchkey_test_{}", UploadId::new());
            let mut admin = admin_connection(&server).await;
            admin
                .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                .await
                .unwrap_or_else(|e| panic!("cannot create a test database: {}", safe(e)));
            // On its own task so a panicking test still reaches the cleanup.
            let outcome = tokio::spawn(test(with_database(&server, &name))).await;
            // FORCE ends connections the test may have left open (a pool
            // being dropped, a panic before close).
            let dropped = admin
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await;
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
            if let Err(e) = dropped {
                eprintln!("could not drop test database {name}: {}", safe(e));
            }
        }
    }
}

async fn admin_connection(server: &str) -> PgConnection {
    let connect = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(server));
    let failure = match connect.await {
        Ok(Ok(conn)) => return conn,
        Ok(Err(e)) => safe(e),
        Err(_) => "no answer within 10 s".to_owned(),
    };
    panic!(
        "the PostgreSQL conformance tests need a server and none answered ({failure}). \
         Start one (e.g. `docker run --rm -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust \
         postgres:15`), point LATCHKEY_TEST_DATABASE_URL at it (default \
         {DEFAULT_SERVER}), or set LATCHKEY_TEST_POSTGRES=skip to skip these tests."
    );
}

/// An error as the ledger would show it: never the URL or its password.
fn safe(e: sqlx::Error) -> String {
    LedgerError::from(e).to_string()
}

/// `url` with its database (the path) replaced by `name`, query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[test]
fn database_names_replace_the_path_only() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres", "x"),
        "postgres://u:p@h:5432/x"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    assert_eq!(
        with_database("postgresql://h/db?sslmode=disable", "x"),
        "postgresql://h/x?sslmode=disable"
    );
}
