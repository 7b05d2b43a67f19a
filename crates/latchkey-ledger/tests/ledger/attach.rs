//! Attaching committed uploads to the app's records, and the unattached
//! sweep's work list.

use std::sync::Arc;

use latchkey_domain::{UploadId, UploadStatus};
use latchkey_ledger::{ATTACHED_EVENT, Changes, LedgerError};
use time::Duration;
use tokio::sync::Barrier;

use crate::{Db, committed, now, profile, upload};

conformance!(
    only_committed_rows_attach_and_repeats_change_nothing,
    concurrent_attaches_write_one_event,
    unattached_lists_committed_unattached_rows_of_the_profile,
);

async fn only_committed_rows_attach_and_repeats_change_nothing(db: Db) {
    let t0 = now();
    let pending = upload("alice", "photo");
    db.ledger.insert(&pending, None).await.unwrap();
    assert_eq!(
        db.ledger
            .set_attached(pending.id, "post:1", t0)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.ledger
            .set_attached(UploadId::new(), "post:1", t0)
            .await
            .unwrap(),
        None
    );
    assert_eq!(db.ledger.get(pending.id).await.unwrap(), Some(pending));

    let u = committed(&db, "alice", "photo", t0).await;
    let t1 = t0 + Duration::seconds(1);
    let attached = db
        .ledger
        .set_attached(u.id, "post:42", t1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attached.attached_ref.as_deref(), Some("post:42"));
    assert_eq!(attached.updated_at, t1);
    assert_eq!(attached.status, UploadStatus::Committed);
    assert_eq!(attached.committed_at, Some(t0));
    assert_eq!(db.ledger.get(u.id).await.unwrap(), Some(attached.clone()));

    // The same ref again: the row as it is, no second event.
    let t2 = t1 + Duration::seconds(1);
    assert_eq!(
        db.ledger.set_attached(u.id, "post:42", t2).await.unwrap(),
        Some(attached.clone())
    );
    // Another ref, or none, is refused and changes nothing.
    for other in ["post:43", ""] {
        let err = db.ledger.set_attached(u.id, other, t2).await.unwrap_err();
        assert!(matches!(err, LedgerError::Conflict(_)), "{err}");
    }
    assert_eq!(db.ledger.get(u.id).await.unwrap(), Some(attached.clone()));

    let events = db.ledger.outbox_pending(10).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["upload.committed", ATTACHED_EVENT]);
    let attach_event = &events[1];
    assert_eq!(attach_event.upload_id, u.id);
    assert_eq!(attach_event.created_at, t1);
    assert_eq!(attach_event.payload["attached_ref"], "post:42");
    assert_eq!(attach_event.payload["status"], "committed");
    assert_eq!(attach_event.payload["id"], u.id.to_string());

    // A deleted upload is no longer attachable.
    db.ledger
        .transition(
            u.id,
            UploadStatus::Committed,
            UploadStatus::Deleted,
            &Changes::default(),
            t2,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.ledger.set_attached(u.id, "post:42", t2).await.unwrap(),
        None
    );
}

async fn concurrent_attaches_write_one_event(db: Db) {
    // Eight callers with the same ref: all succeed, one event.
    let u = committed(&db, "alice", "photo", now()).await;
    let results = race(&db, u.id, |_| "post:1".to_owned()).await;
    assert!(results.iter().all(|r| matches!(r, Ok(Some(_)))));
    let events = db.ledger.outbox_pending(100).await.unwrap();
    let attached: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == ATTACHED_EVENT)
        .collect();
    assert_eq!(attached.len(), 1);

    // Eight callers with different refs: exactly one wins, the rest
    // conflict, and the winner's ref is the one stored.
    let v = committed(&db, "alice", "photo", now()).await;
    let results = race(&db, v.id, |i| format!("post:{i}")).await;
    let winners: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned().flatten())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Some(_)) | Err(LedgerError::Conflict(_))))
    );
    assert_eq!(
        db.ledger.get(v.id).await.unwrap().as_ref(),
        Some(&winners[0])
    );
    let events = db.ledger.outbox_pending(100).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == ATTACHED_EVENT)
            .count(),
        2
    );
}

type AttachResult = Result<Option<latchkey_domain::Upload>, LedgerError>;

async fn race(db: &Db, id: UploadId, reference: fn(usize) -> String) -> Vec<AttachResult> {
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ledger = db.ledger.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let r = reference(i);
            barrier.wait().await;
            ledger.set_attached(id, &r, now()).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

async fn unattached_lists_committed_unattached_rows_of_the_profile(db: Db) {
    let t = now();
    let old = committed(&db, "alice", "photo", t - Duration::hours(3)).await;
    let older = committed(&db, "bob", "photo", t - Duration::hours(5)).await;
    let recent = committed(&db, "alice", "photo", t - Duration::minutes(1)).await;
    let at_cutoff = committed(&db, "alice", "photo", t - Duration::hours(1)).await;
    let attached = committed(&db, "alice", "photo", t - Duration::hours(4)).await;
    db.ledger
        .set_attached(attached.id, "post:1", t)
        .await
        .unwrap()
        .unwrap();
    let other_profile = committed(&db, "alice", "doc", t - Duration::hours(4)).await;
    let deleted = committed(&db, "alice", "photo", t - Duration::hours(4)).await;
    db.ledger
        .transition(
            deleted.id,
            UploadStatus::Committed,
            UploadStatus::Deleted,
            &Changes::default(),
            t,
        )
        .await
        .unwrap()
        .unwrap();
    let mut stale_pending = upload("alice", "photo");
    stale_pending.expires_at = t - Duration::hours(4);
    db.ledger.insert(&stale_pending, None).await.unwrap();

    let cutoff = t - Duration::hours(1);
    let photo = profile("photo");
    let ids = |v: Vec<latchkey_domain::Upload>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
    // Oldest commit first; committed exactly at the cutoff is not before it.
    assert_eq!(
        ids(db
            .ledger
            .committed_unattached(&photo, cutoff, 10)
            .await
            .unwrap()),
        [older.id, old.id]
    );
    assert_eq!(
        ids(db
            .ledger
            .committed_unattached(&photo, cutoff, 1)
            .await
            .unwrap()),
        [older.id]
    );
    assert_eq!(
        ids(db
            .ledger
            .committed_unattached(&profile("doc"), cutoff, 10)
            .await
            .unwrap()),
        [other_profile.id]
    );
    assert_eq!(
        ids(db.ledger.committed_unattached(&photo, t, 10).await.unwrap()),
        [older.id, old.id, at_cutoff.id, recent.id]
    );
}
