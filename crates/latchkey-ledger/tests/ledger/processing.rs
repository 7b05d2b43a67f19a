//! The photo pipeline's job queue: rows in `processing`, claimed under a
//! lease, and the media columns written when a job finishes.

use std::time::Duration as StdDuration;

use latchkey_domain::{MediaInfo, MediaVariant, ObjectKey, UploadStatus};
use latchkey_ledger::Changes;
use time::Duration;

use crate::{Db, now, upload};

conformance!(
    jobs_are_leased_reclaimed_and_finished,
    racing_claims_share_nothing
);

const LEASE: StdDuration = StdDuration::from_secs(60);

async fn jobs_are_leased_reclaimed_and_finished(db: Db) {
    let l = &db.ledger;
    let t = now();
    let u = upload("alice", "photo");
    l.insert(&u, None).await.unwrap();
    // Pending rows are not jobs.
    assert!(l.claim_processing(t, LEASE, 10).await.unwrap().is_empty());
    let moved = l
        .transition(
            u.id,
            UploadStatus::Pending,
            UploadStatus::Processing,
            &Changes::default(),
            t,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(moved.media.is_none());
    // Moving into processing writes no event.
    assert!(l.outbox_pending(10).await.unwrap().is_empty());

    let jobs = l.claim_processing(t, LEASE, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].upload.id, jobs[0].attempts), (u.id, 1));
    // Leased: nobody else gets it until the lease runs out.
    assert!(
        l.claim_processing(t + Duration::seconds(59), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = l
        .claim_processing(t + Duration::seconds(60), LEASE, 10)
        .await
        .unwrap();
    assert_eq!((again[0].upload.id, again[0].attempts), (u.id, 2));

    let media = MediaInfo {
        width: 3024,
        height: 4032,
        thumbhash: "1QcSHQRnh493V4dIh4eXh1h4kJUI".to_owned(),
        variants: vec![MediaVariant {
            name: "thumb".to_owned(),
            key: ObjectKey::from_trusted(format!("{}.thumb.jpg", u.key)),
            content_type: "image/jpeg".to_owned(),
            width: 192,
            height: 256,
        }],
    };
    let changes = Changes {
        media: Some(media.clone()),
        ..Changes::default()
    };
    let done = l
        .transition(
            u.id,
            UploadStatus::Processing,
            UploadStatus::Committed,
            &changes,
            t,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.media.as_ref(), Some(&media));
    assert_eq!(l.get(u.id).await.unwrap().unwrap().media, Some(media));
    let events = l.outbox_pending(10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "upload.committed");
    // Committed rows are no longer jobs, whatever their lease.
    assert!(
        l.claim_processing(t + Duration::hours(1), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn racing_claims_share_nothing(db: Db) {
    let l = &db.ledger;
    let t = now();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let u = upload("bob", "photo");
        l.insert(&u, None).await.unwrap();
        l.transition(
            u.id,
            UploadStatus::Pending,
            UploadStatus::Processing,
            &Changes::default(),
            t,
        )
        .await
        .unwrap()
        .unwrap();
        ids.push(u.id);
    }
    let claims = futures_join(l, t).await;
    let mut seen: Vec<_> = claims.iter().flatten().map(|j| j.upload.id).collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "every job claimed exactly once");
}

async fn futures_join(
    l: &std::sync::Arc<dyn latchkey_ledger::UploadRepo>,
    t: time::OffsetDateTime,
) -> Vec<Vec<latchkey_ledger::ProcessingJob>> {
    let mut handles = Vec::new();
    for _ in 0..4 {
        let l = l.clone();
        handles.push(tokio::spawn(async move {
            l.claim_processing(t, LEASE, 2).await.unwrap()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
