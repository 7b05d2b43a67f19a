//! Compare-and-set transitions, their outbox events, and the reconciler's
//! `expired` sweep.

use std::sync::Arc;

use latchkey_domain::{Sha256Digest, UploadId, UploadStatus};
use latchkey_ledger::{Changes, LedgerError};
use time::Duration;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Barrier;

use crate::{Db, now, upload};

conformance!(
    concurrent_commits_make_exactly_one_transition,
    illegal_transitions_change_nothing,
    stale_from_and_missing_rows_return_none,
    changes_are_applied_and_none_leaves_fields,
    every_final_transition_writes_its_event,
    expired_picks_only_overdue_rows_in_that_status,
);

async fn concurrent_commits_make_exactly_one_transition(db: Db) {
    let u = upload("alice", "photo");
    db.ledger.insert(&u, None).await.unwrap();

    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ledger = db.ledger.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let changes = Changes {
                etag: Some(format!("\"etag-{i}\"")),
                ..Changes::default()
            };
            barrier.wait().await;
            ledger
                .transition(
                    u.id,
                    UploadStatus::Pending,
                    UploadStatus::Committed,
                    &changes,
                    now(),
                )
                .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(row) = t.await.unwrap().unwrap() {
            winners.push(row);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one caller wins");
    let stored = db.ledger.get(u.id).await.unwrap().unwrap();
    assert_eq!(stored, winners[0]);
    assert_eq!(stored.status, UploadStatus::Committed);

    let events = db.ledger.outbox_pending(100).await.unwrap();
    assert_eq!(events.len(), 1, "exactly one outbox event");
    assert_eq!(events[0].upload_id, u.id);
    assert_eq!(events[0].event_type, "upload.committed");
    assert_eq!(
        events[0].payload["etag"],
        stored.etag.clone().unwrap().as_str()
    );
}

async fn illegal_transitions_change_nothing(db: Db) {
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

    let sneaky = Changes {
        reason: Some("x".to_owned()),
        ..Changes::default()
    };
    for (from, to) in [
        (UploadStatus::Committed, UploadStatus::Pending),
        (UploadStatus::Committed, UploadStatus::Committed),
        (UploadStatus::Pending, UploadStatus::Deleted),
        (UploadStatus::Deleted, UploadStatus::Committed),
    ] {
        let err = db
            .ledger
            .transition(u.id, from, to, &sneaky, now())
            .await
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::Conflict(_)),
            "{from}->{to}: {err}"
        );
    }
    assert_eq!(db.ledger.get(u.id).await.unwrap(), Some(committed));
    assert_eq!(db.ledger.outbox_pending(100).await.unwrap().len(), 1);
}

async fn stale_from_and_missing_rows_return_none(db: Db) {
    let u = upload("alice", "photo");
    db.ledger.insert(&u, None).await.unwrap();
    let c = Changes::default();
    let t = now();
    assert_eq!(
        db.ledger
            .transition(
                u.id,
                UploadStatus::Processing,
                UploadStatus::Committed,
                &c,
                t
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.ledger
            .transition(
                UploadId::new(),
                UploadStatus::Pending,
                UploadStatus::Committed,
                &c,
                t
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(db.ledger.get(u.id).await.unwrap(), Some(u));
    assert!(db.ledger.outbox_pending(100).await.unwrap().is_empty());
}

async fn changes_are_applied_and_none_leaves_fields(db: Db) {
    let mut u = upload("alice", "photo");
    u.etag = Some("\"kept\"".to_owned());
    u.sha256 = Some(
        Sha256Digest::parse("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap(),
    );
    db.ledger.insert(&u, None).await.unwrap();

    // pending -> processing: internal, so no outbox event.
    let t1 = u.created_at + Duration::seconds(1);
    let processing = db
        .ledger
        .transition(
            u.id,
            UploadStatus::Pending,
            UploadStatus::Processing,
            &Changes::default(),
            t1,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(processing.status, UploadStatus::Processing);
    assert_eq!(processing.etag.as_deref(), Some("\"kept\""));
    assert_eq!(processing.updated_at, t1);
    assert_eq!(processing.committed_at, None);
    assert!(db.ledger.outbox_pending(10).await.unwrap().is_empty());

    // processing -> committed: committed_at defaults to now.
    let t2 = t1 + Duration::seconds(1);
    let changes = Changes {
        etag: Some("\"new\"".to_owned()),
        attached_ref: Some("post:42".to_owned()),
        ..Changes::default()
    };
    let committed = db
        .ledger
        .transition(
            u.id,
            UploadStatus::Processing,
            UploadStatus::Committed,
            &changes,
            t2,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(committed.etag.as_deref(), Some("\"new\""));
    assert_eq!(committed.attached_ref.as_deref(), Some("post:42"));
    assert_eq!(committed.committed_at, Some(t2));
    assert_eq!(committed.updated_at, t2);
    assert_eq!(committed.reason, None);

    // committed -> deleted keeps committed_at and announces the deletion.
    let t3 = t2 + Duration::seconds(1);
    let deleted = db
        .ledger
        .transition(
            u.id,
            UploadStatus::Committed,
            UploadStatus::Deleted,
            &Changes::default(),
            t3,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.committed_at, Some(t2));
    assert_eq!(deleted.attached_ref.as_deref(), Some("post:42"));

    let events = db.ledger.outbox_pending(10).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["upload.committed", "upload.deleted"]);
    assert!(events[0].id < events[1].id);
    assert_eq!(events[1].created_at, t3);

    // The payload is the upload right after the transition, with RFC 3339 times.
    let p = &events[0].payload;
    let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "committed_at",
            "content_type",
            "created_at",
            "etag",
            "id",
            "key",
            "profile",
            "sha256",
            "size",
            "status",
            "user_id"
        ]
    );
    assert_eq!(p["id"], u.id.to_string());
    assert_eq!(p["key"], u.key.as_str());
    assert_eq!(p["user_id"], "alice");
    assert_eq!(p["profile"], "photo");
    assert_eq!(p["status"], "committed");
    assert_eq!(p["size"], 1000);
    assert_eq!(p["content_type"], "image/jpeg");
    assert_eq!(p["sha256"], u.sha256.unwrap().to_hex());
    assert_eq!(p["etag"], "\"new\"");
    assert_eq!(p["created_at"], u.created_at.format(&Rfc3339).unwrap());
    assert_eq!(p["committed_at"], t2.format(&Rfc3339).unwrap());
    assert_eq!(events[1].payload["status"], "deleted");
}

async fn every_final_transition_writes_its_event(db: Db) {
    for (to, event) in [
        (UploadStatus::Rejected, "upload.rejected"),
        (UploadStatus::Expired, "upload.expired"),
        (UploadStatus::Aborted, "upload.aborted"),
    ] {
        let u = upload("alice", "photo");
        db.ledger.insert(&u, None).await.unwrap();
        let changes = Changes {
            reason: Some("why".to_owned()),
            ..Changes::default()
        };
        let row = db
            .ledger
            .transition(u.id, UploadStatus::Pending, to, &changes, now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.reason.as_deref(), Some("why"));
        assert_eq!(row.committed_at, None);
        let events = db.ledger.outbox_pending(100).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!((last.upload_id, last.event_type.as_str()), (u.id, event));
        assert_eq!(last.payload["committed_at"], serde_json::Value::Null);
    }
    assert_eq!(
        db.ledger.outbox_pending(2).await.unwrap().len(),
        2,
        "limit applies"
    );
}

async fn expired_picks_only_overdue_rows_in_that_status(db: Db) {
    let t = now();
    let mut rows = Vec::new();
    for (minutes, commit) in [
        (-10, false),
        (-20, false),
        (5, false),
        (-30, true),
        (0, false),
    ] {
        let mut u = upload("alice", "photo");
        u.expires_at = t + Duration::minutes(minutes);
        db.ledger.insert(&u, None).await.unwrap();
        if commit {
            db.ledger
                .transition(
                    u.id,
                    UploadStatus::Pending,
                    UploadStatus::Committed,
                    &Changes::default(),
                    t,
                )
                .await
                .unwrap()
                .unwrap();
        }
        rows.push(u.id);
    }
    let ids = |v: Vec<latchkey_domain::Upload>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();

    // Oldest expiry first; a row expiring exactly at `before` is not yet past it.
    assert_eq!(
        ids(db
            .ledger
            .expired(UploadStatus::Pending, t, 10)
            .await
            .unwrap()),
        [rows[1], rows[0]]
    );
    assert_eq!(
        ids(db
            .ledger
            .expired(UploadStatus::Pending, t, 1)
            .await
            .unwrap()),
        [rows[1]]
    );
    assert_eq!(
        ids(db
            .ledger
            .expired(UploadStatus::Committed, t, 10)
            .await
            .unwrap()),
        [rows[3]]
    );
    assert!(
        db.ledger
            .expired(UploadStatus::Processing, t, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let later = t + Duration::hours(1);
    assert_eq!(
        ids(db
            .ledger
            .expired(UploadStatus::Pending, later, 10)
            .await
            .unwrap()),
        [rows[1], rows[0], rows[4], rows[2]]
    );
}
