//! The ledger conformance suite. Every test is an `async fn(Db)` run twice,
//! as `<module>::sqlite::<test>` against a fresh SQLite file and as
//! `<module>::postgres::<test>` against a fresh PostgreSQL database, so both
//! backends are held to the same behaviour. One test binary (modules below)
//! so the crate links once.
//!
//! PostgreSQL: the tests connect to `LATCHKEY_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) as a role that may create
//! databases, and give each test its own `latchkey_test_<random>` database,
//! dropped when the test ends, so tests run in parallel. If no server
//! answers, the postgres tests FAIL. To run only the SQLite half on a
//! machine without PostgreSQL, say so explicitly:
//!
//! ```text
//! LATCHKEY_TEST_POSTGRES=skip cargo test -p latchkey-ledger
//! ```
//!
//! Either half alone: `cargo test -p latchkey-ledger sqlite::` (or
//! `postgres::`). A server for local runs: `docker run --rm -p 5432:5432
//! -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15`.

/// For each `async fn name(db: Db)` listed, generates the test functions
/// `sqlite::name` and `postgres::name` in the calling module. Every test
/// gets a multi-threaded runtime so the concurrency tests really race.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::harness::run(crate::harness::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::harness::run(crate::harness::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

/// Like [`conformance!`], for tests `async fn name(url: String)` that start
/// from an empty database rather than a migrated ledger.
macro_rules! conformance_empty {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::harness::run_empty(crate::harness::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::harness::run_empty(crate::harness::Backend::Postgres, super::$name)
                        .await;
                }
            )*
        }
    };
}

mod attach;
mod delivery;
mod harness;
mod insert;
mod leases;
mod list;
mod migrations;
mod misc;
mod processing;
mod quota;
mod transition;
mod usage;

use std::collections::BTreeMap;

use latchkey_domain::{
    ContentType, Mode, ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId,
};
use time::{Duration, OffsetDateTime};

pub use harness::Db;

/// Now, at the millisecond precision the ledger stores.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap()
}

pub fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub fn profile(s: &str) -> ProfileName {
    ProfileName::parse(s).unwrap()
}

/// A plain pending upload for `user` in `profile`, expiring in 15 minutes.
pub fn upload(user_id: &str, profile_name: &str) -> Upload {
    let id = UploadId::new();
    let user_id = user(user_id);
    let profile = profile(profile_name);
    let t = now();
    Upload {
        id,
        key: ObjectKey::from_trusted(format!(
            "u/{}/{profile_name}/{id}.jpg",
            user_id.key_segment()
        )),
        user_id,
        profile,
        mode: Mode::Put,
        filename: "photo.jpg".to_owned(),
        content_type: ContentType::parse("image/jpeg").unwrap(),
        size: 1000,
        sha256: None,
        status: UploadStatus::Pending,
        etag: None,
        reason: None,
        metadata: BTreeMap::new(),
        idempotency_key: None,
        attached_ref: None,
        created_at: t,
        expires_at: t + Duration::minutes(15),
        updated_at: t,
        committed_at: None,
        store_upload_id: None,
        media: None,
    }
}

/// Inserts a fresh upload for `user_id` and commits it at `at`.
pub async fn committed(db: &Db, user_id: &str, profile_name: &str, at: OffsetDateTime) -> Upload {
    let u = upload(user_id, profile_name);
    db.ledger.insert(&u, None).await.unwrap();
    db.ledger
        .transition(
            u.id,
            UploadStatus::Pending,
            UploadStatus::Committed,
            &latchkey_ledger::Changes::default(),
            at,
        )
        .await
        .unwrap()
        .unwrap()
}
