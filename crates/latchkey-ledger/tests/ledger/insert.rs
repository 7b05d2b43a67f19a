//! Inserting rows, reading them back, and idempotency keys.

use latchkey_domain::{Mode, ObjectKey, Sha256Digest, UploadId, UploadStatus};
use latchkey_ledger::{Inserted, LedgerError, Quota};
use time::{Duration, OffsetDateTime};

use crate::{Db, now, upload};

conformance!(
    every_field_round_trips,
    times_are_stored_to_the_millisecond,
    idempotency_key_returns_the_first_row,
    same_idempotency_key_for_different_users_is_independent,
    rows_without_idempotency_keys_never_collide,
    duplicate_ids_and_keys_conflict,
    only_pending_rows_can_be_inserted,
    a_failing_insert_leaves_concurrent_ones_intact,
    one_failing_insert_among_many_fails_alone,
    concurrent_inserts_each_get_their_own_row,
);

async fn every_field_round_trips(db: Db) {
    let mut full = upload("用户|ü@example.com", "photo");
    full.mode = Mode::Multipart;
    full.filename = "Ünïcødé 写真.jpeg".to_owned();
    full.size = 5 * 1024 * 1024 * 1024 * 1024;
    full.sha256 = Some(
        Sha256Digest::parse("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap(),
    );
    full.etag = Some("\"abc-3\"".to_owned());
    full.reason = Some("size_mismatch".to_owned());
    full.metadata = [
        ("alt".to_owned(), "un chat 🐈".to_owned()),
        ("k\"ey".to_owned(), "{}".to_owned()),
    ]
    .into_iter()
    .collect();
    full.idempotency_key = Some("idem-1".to_owned());
    full.attached_ref = Some("post:42".to_owned());
    full.store_upload_id = Some("2~mpu-Ünï/+=".to_owned());
    full.expires_at = full.created_at + Duration::hours(1);
    full.updated_at = full.created_at + Duration::milliseconds(7);
    full.committed_at = Some(full.created_at + Duration::seconds(3));

    let bare = upload("alice", "doc");
    assert_eq!(bare.sha256, None);

    for u in [full, bare] {
        let inserted = db.ledger.insert(&u, None).await.unwrap();
        assert_eq!(inserted, Inserted::New(u.clone()));
        assert_eq!(db.ledger.get(u.id).await.unwrap(), Some(u.clone()));
        assert_eq!(
            db.ledger.find_by_key(&u.key).await.unwrap(),
            Some(u.clone())
        );
    }
    assert_eq!(db.ledger.get(UploadId::new()).await.unwrap(), None);
    assert_eq!(
        db.ledger
            .find_by_key(&ObjectKey::from_trusted("u/nobody/x"))
            .await
            .unwrap(),
        None
    );
}

async fn times_are_stored_to_the_millisecond(db: Db) {
    let mut u = upload("alice", "photo");
    u.created_at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
    let stored = db.ledger.insert(&u, None).await.unwrap().into_upload();
    assert_eq!(
        stored.created_at.unix_timestamp_nanos(),
        1_700_000_000_123_000_000
    );
    assert_eq!(db.ledger.get(u.id).await.unwrap(), Some(stored));
}

async fn idempotency_key_returns_the_first_row(db: Db) {
    let mut first = upload("alice", "photo");
    first.idempotency_key = Some("k1".to_owned());
    let mut again = upload("alice", "photo");
    again.idempotency_key = Some("k1".to_owned());
    again.size = 1;

    assert!(db.ledger.insert(&first, None).await.unwrap().is_new());
    let second = db.ledger.insert(&again, None).await.unwrap();
    assert_eq!(second, Inserted::Existing(first.clone()));
    assert_eq!(
        db.ledger.get(again.id).await.unwrap(),
        None,
        "no second row"
    );

    // Even with the quota now full, the retry still finds its row.
    let full = Quota {
        max_bytes: None,
        max_count: Some(1),
    };
    assert_eq!(
        db.ledger.insert(&again, Some(&full)).await.unwrap(),
        Inserted::Existing(first)
    );
}

async fn same_idempotency_key_for_different_users_is_independent(db: Db) {
    let mut a = upload("alice", "photo");
    a.idempotency_key = Some("shared".to_owned());
    let mut b = upload("bob", "photo");
    b.idempotency_key = Some("shared".to_owned());
    assert_eq!(
        db.ledger.insert(&a, None).await.unwrap(),
        Inserted::New(a.clone())
    );
    assert_eq!(
        db.ledger.insert(&b, None).await.unwrap(),
        Inserted::New(b.clone())
    );
    assert_eq!(db.ledger.get(a.id).await.unwrap(), Some(a));
    assert_eq!(db.ledger.get(b.id).await.unwrap(), Some(b));
}

async fn rows_without_idempotency_keys_never_collide(db: Db) {
    for _ in 0..3 {
        assert!(
            db.ledger
                .insert(&upload("alice", "photo"), None)
                .await
                .unwrap()
                .is_new()
        );
    }
}

async fn duplicate_ids_and_keys_conflict(db: Db) {
    let u = upload("alice", "photo");
    db.ledger.insert(&u, None).await.unwrap();

    let mut same_key = upload("alice", "photo");
    same_key.key = u.key.clone();
    let err = db.ledger.insert(&same_key, None).await.unwrap_err();
    assert!(matches!(err, LedgerError::Conflict(_)), "{err}");

    let err = db.ledger.insert(&u, None).await.unwrap_err();
    assert!(matches!(err, LedgerError::Conflict(_)), "{err}");
    assert_eq!(db.ledger.get(same_key.id).await.unwrap(), None);
}

async fn only_pending_rows_can_be_inserted(db: Db) {
    let mut u = upload("alice", "photo");
    u.status = UploadStatus::Committed;
    u.committed_at = Some(now());
    let err = db.ledger.insert(&u, None).await.unwrap_err();
    assert!(matches!(err, LedgerError::Conflict(_)), "{err}");
    assert_eq!(db.ledger.get(u.id).await.unwrap(), None);
}

/// Many inserts at once, every other one reusing a stored key: each fails
/// alone. (The SQLite ledger commits concurrent writes together; a write's
/// failure must undo that write only, and the others must be durable.)
async fn a_failing_insert_leaves_concurrent_ones_intact(db: Db) {
    assert_eq!(race_against_a_taken_key(&db, 40, |i| i % 2 == 1).await, 20);
}

/// As above with the bad insert alone among a hundred: on SQLite the
/// writer inserts a queued run in chunks, and only the chunk holding the
/// bad row falls back to one insert at a time.
async fn one_failing_insert_among_many_fails_alone(db: Db) {
    assert_eq!(race_against_a_taken_key(&db, 100, |i| i == 70).await, 1);
    let alice = upload("alice", "photo");
    let (_bytes, count) = db
        .ledger
        .usage(&alice.user_id, &alice.profile)
        .await
        .unwrap();
    assert_eq!(count, 100, "the first row and the 99 good ones");
}

/// Stores one upload, then inserts `n` at once, those `bad(i)` picks with
/// that upload's key. Each bad insert must fail with a conflict and leave no
/// row; every other one must be stored as sent; the first upload stays.
/// Returns how many failed.
async fn race_against_a_taken_key(db: &Db, n: usize, bad: impl Fn(usize) -> bool) -> usize {
    let taken = upload("alice", "photo");
    db.ledger.insert(&taken, None).await.unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let ledger = db.ledger.clone();
        let barrier = barrier.clone();
        let mut u = upload("alice", "photo");
        if bad(i) {
            u.key = taken.key.clone();
        }
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (u.clone(), ledger.insert(&u, None).await)
        }));
    }
    let mut failed = 0;
    for t in tasks {
        let (u, result) = t.await.unwrap();
        let stored = db.ledger.get(u.id).await.unwrap();
        if u.key == taken.key {
            assert!(
                matches!(result, Err(LedgerError::Conflict(_))),
                "{result:?}"
            );
            assert_eq!(stored, None);
            failed += 1;
        } else {
            assert_eq!(result.unwrap(), Inserted::New(u.clone()));
            assert_eq!(stored, Some(u));
        }
    }
    assert_eq!(db.ledger.get(taken.id).await.unwrap(), Some(taken));
    failed
}

/// Many grants at once: on SQLite the writer inserts a queued run of them
/// with a statement per chunk. Each caller must get back exactly its own row, with
/// every field, and the rows must all be there — including a run mixed with
/// inserts that read first (idempotency key) and ones of other users.
async fn concurrent_inserts_each_get_their_own_row(db: Db) {
    let n = 60;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let ledger = db.ledger.clone();
        let barrier = barrier.clone();
        let mut u = upload(if i % 3 == 0 { "bob" } else { "alice" }, "photo");
        u.size = 1000 + i as u64;
        u.filename = format!("photo-{i}.jpg");
        u.metadata = [("n".to_owned(), i.to_string())].into_iter().collect();
        if i % 7 == 0 {
            u.idempotency_key = Some(format!("idem-{i}"));
        }
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let inserted = ledger.insert(&u, None).await;
            // Read at once, while other inserts are still being written: an
            // acknowledged insert is there for every later read (on SQLite
            // `get` reads on its own connections, beside the writer's).
            let read = ledger.get(u.id).await;
            (u, inserted, read)
        }));
    }
    for t in tasks {
        let (u, inserted, read) = t.await.unwrap();
        assert_eq!(inserted.unwrap(), Inserted::New(u.clone()));
        assert_eq!(read.unwrap(), Some(u.clone()));
        assert_eq!(db.ledger.get(u.id).await.unwrap(), Some(u));
    }
}
