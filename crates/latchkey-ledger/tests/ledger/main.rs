//! The ledger against real SQLite files: a fresh temporary database per test,
//! several pooled connections where concurrency matters. One test binary
//! (modules below) so the crate links once.

mod insert;
mod list;
mod misc;
mod quota;
mod transition;

use std::collections::BTreeMap;
use std::sync::Arc;

use latchkey_domain::{
    ContentType, Mode, ObjectKey, ProfileName, Upload, UploadId, UploadStatus, UserId,
};
use latchkey_ledger::SqliteLedger;
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

/// A ledger in its own temporary directory, deleted when dropped.
pub struct Db {
    pub ledger: Arc<SqliteLedger>,
    pub url: String,
    _dir: TempDir,
}

pub async fn fresh() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let ledger = SqliteLedger::open_with(&url, 8).await.expect("open ledger");
    Db {
        ledger: Arc::new(ledger),
        url,
        _dir: dir,
    }
}

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
    }
}
