//! Quotas: checked atomically with the insert, per user and profile, counting
//! only live uploads.

use latchkey_domain::UploadStatus;
use latchkey_ledger::{Changes, Inserted, LedgerError, Quota, QuotaKind};

use crate::{Db, now, profile, upload, user};

conformance!(
    concurrent_inserts_never_exceed_the_count,
    concurrent_inserts_never_exceed_the_bytes,
    only_live_uploads_count,
);

/// Inserts `n` uploads of `size` bytes at once; returns (successes, errors).
async fn race(db: &Db, n: usize, size: u64, quota: Quota) -> (usize, Vec<LedgerError>) {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let ledger = db.ledger.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut u = upload("alice", "photo");
            u.size = size;
            barrier.wait().await;
            ledger.insert(&u, Some(&quota)).await
        }));
    }
    let mut ok = 0;
    let mut errors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(Inserted::New(_)) => ok += 1,
            Ok(Inserted::Existing(_)) => panic!("no idempotency keys here"),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

async fn concurrent_inserts_never_exceed_the_count(db: Db) {
    let quota = Quota {
        max_bytes: None,
        max_count: Some(3),
    };
    let (ok, errors) = race(&db, 10, 100, quota).await;
    assert_eq!(ok, 3);
    assert_eq!(errors.len(), 7);
    for e in errors {
        assert!(
            matches!(
                e,
                LedgerError::QuotaExceeded {
                    what: QuotaKind::Count,
                    limit: 3,
                    used: 3
                }
            ),
            "{e}"
        );
    }
    assert_eq!(
        db.ledger
            .usage(&user("alice"), &profile("photo"))
            .await
            .unwrap(),
        (300, 3)
    );
}

async fn concurrent_inserts_never_exceed_the_bytes(db: Db) {
    let quota = Quota {
        max_bytes: Some(1000),
        max_count: None,
    };
    let (ok, errors) = race(&db, 10, 400, quota).await;
    assert_eq!(ok, 2);
    for e in errors {
        assert!(
            matches!(
                e,
                LedgerError::QuotaExceeded {
                    what: QuotaKind::Bytes,
                    limit: 1000,
                    used: 800
                }
            ),
            "{e}"
        );
    }
    assert_eq!(
        db.ledger
            .usage(&user("alice"), &profile("photo"))
            .await
            .unwrap(),
        (800, 2)
    );

    // One upload larger than the whole quota never fits.
    let mut huge = upload("bob", "photo");
    huge.size = 1001;
    let err = db.ledger.insert(&huge, Some(&quota)).await.unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::QuotaExceeded {
                what: QuotaKind::Bytes,
                used: 0,
                ..
            }
        ),
        "{err}"
    );
}

async fn only_live_uploads_count(db: Db) {
    let quota = Quota {
        max_bytes: None,
        max_count: Some(3),
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let u = upload("alice", "photo");
        db.ledger.insert(&u, Some(&quota)).await.unwrap();
        ids.push(u.id);
    }
    let err = db
        .ledger
        .insert(&upload("alice", "photo"), Some(&quota))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::QuotaExceeded { .. }), "{err}");

    // Other profiles and other users have their own usage.
    db.ledger
        .insert(&upload("alice", "doc"), Some(&quota))
        .await
        .unwrap();
    db.ledger
        .insert(&upload("bob", "photo"), Some(&quota))
        .await
        .unwrap();
    // Without a quota nothing is checked.
    db.ledger
        .insert(&upload("alice", "photo"), None)
        .await
        .unwrap();
    let alice = user("alice");
    let photo = profile("photo");
    assert_eq!(db.ledger.usage(&alice, &photo).await.unwrap(), (4000, 4));

    let c = Changes::default();
    let t = now();
    let to = [
        UploadStatus::Rejected,
        UploadStatus::Expired,
        UploadStatus::Committed,
    ];
    for (id, to) in ids.iter().zip(to) {
        db.ledger
            .transition(*id, UploadStatus::Pending, to, &c, t)
            .await
            .unwrap()
            .unwrap();
    }
    // Rejected and expired no longer count; committed still does.
    assert_eq!(db.ledger.usage(&alice, &photo).await.unwrap(), (2000, 2));
    db.ledger
        .insert(&upload("alice", "photo"), Some(&quota))
        .await
        .unwrap();
    let err = db
        .ledger
        .insert(&upload("alice", "photo"), Some(&quota))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::QuotaExceeded {
                what: QuotaKind::Count,
                limit: 3,
                used: 3
            }
        ),
        "{err}"
    );

    // Deleting a committed upload frees its share.
    db.ledger
        .transition(
            ids[2],
            UploadStatus::Committed,
            UploadStatus::Deleted,
            &c,
            t,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db.ledger.usage(&alice, &photo).await.unwrap(), (2000, 2));
}
