//! The quota usage counter: the `usage` table that triggers on `uploads`
//! keep (migrations sqlite/0006, postgres/0005) must always equal the sum
//! over the rows in `QUOTA_STATUSES`, whatever wrote the rows. Every check
//! compares `usage()` with that sum computed here, from the rows `list`
//! returns and the Rust list of statuses, so a status list in a migration
//! that drifts from `QUOTA_STATUSES` fails these tests.

use std::collections::VecDeque;
use std::sync::Arc;

use latchkey_domain::{Upload, UploadId, UploadStatus};
use latchkey_ledger::{Changes, ListFilter, QUOTA_STATUSES, Quota};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

use crate::{Db, now, profile, upload, user};

conformance!(
    usage_follows_every_transition,
    usage_follows_rows_deleted_or_rewritten,
    concurrent_inserts_and_transitions_keep_usage_exact,
);

/// `(bytes, count)` of `user_id`'s rows in `profile_name` whose status is in
/// [`QUOTA_STATUSES`], summed from the rows themselves.
pub async fn summed(db: &Db, user_id: &str, profile_name: &str) -> (u64, u64) {
    let filter = ListFilter {
        status: None,
        profile: Some(profile(profile_name)),
        after: None,
        limit: 10_000,
    };
    let rows = db.ledger.list(&user(user_id), &filter).await.unwrap();
    rows.iter()
        .filter(|u| QUOTA_STATUSES.contains(&u.status))
        .fold((0, 0), |(b, c), u| (b + u.size, c + 1))
}

/// Fails unless the counter equals the sum for every pair in `pairs`.
async fn assert_exact(db: &Db, pairs: &[(&str, &str)], after: &str) {
    for &(u, p) in pairs {
        let counted = db.ledger.usage(&user(u), &profile(p)).await.unwrap();
        assert_eq!(counted, summed(db, u, p).await, "{u}/{p} after {after}");
    }
}

/// The shortest chain of transitions from `pending` to `target`.
fn path_to(target: UploadStatus) -> Vec<UploadStatus> {
    let mut queue = VecDeque::from([vec![UploadStatus::Pending]]);
    while let Some(path) = queue.pop_front() {
        let last = *path.last().unwrap();
        if last == target {
            return path;
        }
        for next in UploadStatus::ALL {
            if last.can_become(next) && !path.contains(&next) {
                let mut longer = path.clone();
                longer.push(next);
                queue.push_back(longer);
            }
        }
    }
    panic!("{target} cannot be reached from pending");
}

async fn step(db: &Db, id: UploadId, from: UploadStatus, to: UploadStatus) {
    db.ledger
        .transition(id, from, to, &Changes::default(), now())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{from} -> {to} lost"));
}

/// Inserts an upload of `size` bytes and walks it to `status`.
async fn row_in(
    db: &Db,
    user_id: &str,
    profile_name: &str,
    size: u64,
    status: UploadStatus,
) -> Upload {
    let mut u = upload(user_id, profile_name);
    u.size = size;
    db.ledger.insert(&u, None).await.unwrap();
    for pair in path_to(status).windows(2) {
        step(db, u.id, pair[0], pair[1]).await;
    }
    u
}

const PAIRS: [(&str, &str); 3] = [("alice", "photo"), ("alice", "doc"), ("bob", "photo")];

async fn usage_follows_every_transition(db: Db) {
    // Neighbours that must not be disturbed: same user other profile, same
    // profile other user.
    row_in(&db, "alice", "doc", 7, UploadStatus::Committed).await;
    row_in(&db, "bob", "photo", 11, UploadStatus::Pending).await;
    let mut seen = Vec::new();
    let mut size = 100;
    for from in UploadStatus::ALL {
        for to in UploadStatus::ALL {
            if !from.can_become(to) {
                continue;
            }
            size += 1;
            let mut u = upload("alice", "photo");
            u.size = size;
            db.ledger.insert(&u, None).await.unwrap();
            assert_exact(&db, &PAIRS, "insert").await;
            let path = [path_to(from), vec![to]].concat();
            for pair in path.windows(2) {
                step(&db, u.id, pair[0], pair[1]).await;
                assert_exact(&db, &PAIRS, &format!("{} -> {}", pair[0], pair[1])).await;
                seen.push(pair[1]);
            }
        }
    }
    for status in UploadStatus::ALL {
        assert!(
            status == UploadStatus::Pending || seen.contains(&status),
            "{status} never reached"
        );
    }
    // Rows in every status now exist, so the sum is not trivially zero.
    assert!(summed(&db, "alice", "photo").await.1 > 0);
}

/// Runs `statements` on the database at `url` over a connection of its own,
/// bypassing the ledger: writes no ledger method makes (yet).
pub async fn exec(url: &str, statements: &[String]) {
    if url.starts_with("sqlite") {
        let mut conn = SqliteConnection::connect(url).await.unwrap();
        for s in statements {
            conn.execute(s.as_str())
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.close().await.unwrap();
    } else {
        let mut conn = PgConnection::connect(url).await.unwrap();
        for s in statements {
            conn.execute(s.as_str())
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.close().await.unwrap();
    }
}

async fn usage_follows_rows_deleted_or_rewritten(db: Db) {
    let mut rows = Vec::new();
    for (i, status) in UploadStatus::ALL.into_iter().enumerate() {
        rows.push(row_in(&db, "alice", "photo", 100 + i as u64, status).await);
    }
    assert_exact(&db, &PAIRS, "setup").await;

    // A row that counts changes size, then moves to another profile, then
    // to another user; a row that does not count changes size.
    let pending = rows[0].id;
    let rejected = rows[3].id;
    let rewrites = [
        format!("UPDATE uploads SET size = 5000 WHERE id = '{pending}'"),
        format!("UPDATE uploads SET profile = 'doc' WHERE id = '{pending}'"),
        format!("UPDATE uploads SET user_id = 'bob', profile = 'photo' WHERE id = '{pending}'"),
        format!("UPDATE uploads SET size = 6000 WHERE id = '{rejected}'"),
    ];
    for sql in rewrites {
        exec(&db.url, std::slice::from_ref(&sql)).await;
        assert_exact(&db, &PAIRS, &sql).await;
    }

    // A purge: each row deleted outright, whatever its status.
    for u in &rows {
        exec(
            &db.url,
            &[
                format!("DELETE FROM outbox WHERE upload_id = '{}'", u.id),
                format!("DELETE FROM uploads WHERE id = '{}'", u.id),
            ],
        )
        .await;
        assert_exact(&db, &PAIRS, &format!("deleting a {} row", u.status)).await;
    }
    for (u, p) in PAIRS {
        assert_eq!(
            db.ledger.usage(&user(u), &profile(p)).await.unwrap(),
            (0, 0)
        );
    }
}

async fn concurrent_inserts_and_transitions_keep_usage_exact(db: Db) {
    let quota = Quota {
        max_bytes: None,
        max_count: Some(1000),
    };
    let mut live = Vec::new();
    for _ in 0..20 {
        live.push(
            row_in(&db, "alice", "photo", 100, UploadStatus::Pending)
                .await
                .id,
        );
    }
    let ledger = Arc::clone(&db.ledger);
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for (i, id) in live.into_iter().enumerate() {
        let (repo, gate) = (ledger.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let to = [UploadStatus::Expired, UploadStatus::Committed][i % 2];
            let c = Changes::default();
            let done = repo.transition(id, UploadStatus::Pending, to, &c, now());
            assert!(done.await.unwrap().is_some());
        }));
        let (repo, gate) = (ledger.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let mut u = upload("alice", "photo");
            u.size = 1 + i as u64;
            assert!(repo.insert(&u, Some(&quota)).await.unwrap().is_new());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_exact(&db, &PAIRS, "the race").await;
    // 10 committed of 100 bytes and 20 new pending of 1..=20 bytes.
    let alice = db.ledger.usage(&user("alice"), &profile("photo")).await;
    assert_eq!(alice.unwrap(), (1000 + 210, 30));
}
