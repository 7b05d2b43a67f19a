//! Outbox delivery: claims with leases, delivery and failure reports, dead
//! letters, and workers on several instances claiming at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use latchkey_domain::UploadId;
use latchkey_ledger::{LedgerError, OutboxEvent};
use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;

use crate::{Db, committed, now};

conformance!(
    claims_lease_due_events_oldest_first,
    delivered_events_are_never_claimed_again,
    failures_reschedule_then_dead_letter,
    concurrent_claims_never_share_an_event,
);

const LEASE: StdDuration = StdDuration::from_secs(30);

/// Commits `n` uploads at `at`, one `upload.committed` event each.
async fn events(db: &Db, n: usize, at: OffsetDateTime) -> Vec<UploadId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(committed(db, "alice", "photo", at).await.id);
    }
    ids
}

fn ids(events: &[OutboxEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

async fn claims_lease_due_events_oldest_first(db: Db) {
    let t = now();
    let uploads = events(&db, 3, t).await;
    let all = ids(&db.ledger.outbox_pending(10).await.unwrap());
    assert_eq!(all.len(), 3);

    // Not due before it was written.
    let early = t - Duration::seconds(1);
    assert!(
        db.ledger
            .outbox_claim(early, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let first = db.ledger.outbox_claim(t, LEASE, 2).await.unwrap();
    assert_eq!(ids(&first), all[..2]);
    assert_eq!(first[0].upload_id, uploads[0]);
    assert_eq!(first[0].attempts, 0);
    assert_eq!(first[0].next_attempt_at, t);
    assert_eq!(first[0].last_error, None);
    assert_eq!(first[0].dead_at, None);
    // Leased events are skipped; the rest is claimed.
    let second = db.ledger.outbox_claim(t, LEASE, 10).await.unwrap();
    assert_eq!(ids(&second), all[2..]);
    let later = t + Duration::seconds(29);
    assert!(
        db.ledger
            .outbox_claim(later, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Claimed events are still pending until reported.
    assert_eq!(ids(&db.ledger.outbox_pending(10).await.unwrap()), all);

    // A worker that died: its leases run out and the events come back.
    let expired = t + Duration::seconds(30);
    assert_eq!(
        ids(&db.ledger.outbox_claim(expired, LEASE, 10).await.unwrap()),
        all
    );
}

async fn delivered_events_are_never_claimed_again(db: Db) {
    let t = now();
    events(&db, 2, t).await;
    let claimed = db.ledger.outbox_claim(t, LEASE, 10).await.unwrap();
    let (done, open) = (claimed[0].id, claimed[1].id);
    db.ledger.outbox_delivered(done, t).await.unwrap();
    // Reporting twice is harmless.
    db.ledger.outbox_delivered(done, t).await.unwrap();
    let err = db
        .ledger
        .outbox_delivered(done + 1000, t)
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NotFound), "{err}");

    assert_eq!(ids(&db.ledger.outbox_pending(10).await.unwrap()), [open]);
    let much_later = t + Duration::hours(1);
    assert_eq!(
        ids(&db.ledger.outbox_claim(much_later, LEASE, 10).await.unwrap()),
        [open]
    );
    // A late failure report does not undo a delivery.
    db.ledger
        .outbox_failed(done, None, "timeout", much_later)
        .await
        .unwrap();
    assert!(db.ledger.outbox_dead(10).await.unwrap().is_empty());
    assert_eq!(ids(&db.ledger.outbox_pending(10).await.unwrap()), [open]);
}

async fn failures_reschedule_then_dead_letter(db: Db) {
    let t = now();
    events(&db, 1, t).await;
    let id = db.ledger.outbox_claim(t, LEASE, 10).await.unwrap()[0].id;

    let retry_at = t + Duration::minutes(1);
    db.ledger
        .outbox_failed(id, Some(retry_at), "HTTP 503", t)
        .await
        .unwrap();
    // The lease is freed, but the event is not due again until retry_at.
    let before = retry_at - Duration::milliseconds(1);
    assert!(
        db.ledger
            .outbox_claim(before, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = db.ledger.outbox_claim(retry_at, LEASE, 10).await.unwrap();
    assert_eq!(ids(&again), [id]);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].next_attempt_at, retry_at);
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));

    // Giving up: a dead letter, kept with its history, never claimed.
    let long_error = "é".repeat(5000);
    let gave_up = retry_at + Duration::seconds(1);
    db.ledger
        .outbox_failed(id, None, &long_error, gave_up)
        .await
        .unwrap();
    let dead = db.ledger.outbox_dead(10).await.unwrap();
    assert_eq!(ids(&dead), [id]);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].dead_at, Some(gave_up));
    assert_eq!(
        dead[0].last_error.as_ref().unwrap().chars().count(),
        1000,
        "errors are clipped"
    );
    assert!(db.ledger.outbox_pending(10).await.unwrap().is_empty());
    let far = t + Duration::days(365);
    assert!(
        db.ledger
            .outbox_claim(far, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(db.ledger.outbox_dead(0).await.unwrap().is_empty());

    let err = db
        .ledger
        .outbox_failed(id + 1000, None, "x", t)
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NotFound), "{err}");
}

async fn concurrent_claims_never_share_an_event(db: Db) {
    let t = now();
    events(&db, 40, t).await;
    let all: HashSet<i64> = ids(&db.ledger.outbox_pending(100).await.unwrap())
        .into_iter()
        .collect();
    assert_eq!(all.len(), 40);

    // Eight workers on "different instances" drain the outbox in small
    // batches, all at once.
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let ledger = db.ledger.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let batch = ledger.outbox_claim(t, LEASE, 3).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.iter().map(|e| e.id));
            }
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), unique.len(), "an event was claimed twice");
    assert_eq!(unique, all, "every event was claimed");
}
