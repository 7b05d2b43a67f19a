//! Named leases that keep two instances from running the same background
//! pass at once.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;

use crate::{Db, now};

conformance!(lease_lifecycle, racing_holders_exactly_one_wins);

const TTL: StdDuration = StdDuration::from_secs(60);

async fn lease_lifecycle(db: Db) {
    let l = &db.ledger;
    let t = now();
    assert!(l.try_lease("reconciler", "a", t, TTL).await.unwrap());
    assert!(!l.try_lease("reconciler", "b", t, TTL).await.unwrap());
    // Leases are independent by name.
    assert!(l.try_lease("unattached", "b", t, TTL).await.unwrap());

    // The holder renews; the renewal moves the expiry.
    let t1 = t + Duration::seconds(50);
    assert!(l.try_lease("reconciler", "a", t1, TTL).await.unwrap());
    let t2 = t + Duration::seconds(100);
    assert!(!l.try_lease("reconciler", "b", t2, TTL).await.unwrap());

    // Once expired, anyone may take it, and the old holder has lost it.
    let t3 = t1 + Duration::seconds(60);
    assert!(l.try_lease("reconciler", "b", t3, TTL).await.unwrap());
    assert!(!l.try_lease("reconciler", "a", t3, TTL).await.unwrap());

    // Only the holder can release.
    assert!(!l.release_lease("reconciler", "a").await.unwrap());
    assert!(l.release_lease("reconciler", "b").await.unwrap());
    assert!(!l.release_lease("reconciler", "b").await.unwrap());
    assert!(l.try_lease("reconciler", "a", t3, TTL).await.unwrap());
}

async fn racing_holders_exactly_one_wins(db: Db) {
    let t = now();
    for round in 0..3 {
        // A lease nobody has held.
        let free = format!("free-{round}");
        let winners = race(&db, &free, t).await;
        assert_eq!(winners.len(), 1, "{free}: {winners:?}");

        // A lease whose holder vanished and let it expire.
        let stale = format!("stale-{round}");
        let long_ago = t - Duration::seconds(61);
        assert!(
            db.ledger
                .try_lease(&stale, "gone", long_ago, TTL)
                .await
                .unwrap()
        );
        let winners = race(&db, &stale, t).await;
        assert_eq!(winners.len(), 1, "{stale}: {winners:?}");
    }
}

/// Eight holders try for `name` at once; returns the ones that got it.
async fn race(db: &Db, name: &str, at: OffsetDateTime) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ledger = db.ledger.clone();
        let barrier = barrier.clone();
        let name = name.to_owned();
        tasks.push(tokio::spawn(async move {
            let holder = format!("instance-{i}");
            barrier.wait().await;
            let won = ledger.try_lease(&name, &holder, at, TTL).await.unwrap();
            won.then_some(holder)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.unwrap());
    }
    winners
}
