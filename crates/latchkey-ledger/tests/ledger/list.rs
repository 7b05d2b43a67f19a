//! Listing a user's uploads: order, filters, cursors, and isolation.

use std::collections::HashSet;

use latchkey_domain::{UploadId, UploadStatus};
use latchkey_ledger::{Changes, ListFilter};

use crate::{Db, now, profile, upload, user};

conformance!(newest_first_with_filters, cursor_pages_cover_every_row_once,);

fn all(limit: u32) -> ListFilter {
    ListFilter {
        status: None,
        profile: None,
        after: None,
        limit,
    }
}

async fn newest_first_with_filters(db: Db) {
    let mut ids = Vec::new();
    for p in ["photo", "doc", "photo", "doc", "photo"] {
        let u = upload("alice", p);
        db.ledger.insert(&u, None).await.unwrap();
        ids.push(u.id);
    }
    db.ledger
        .insert(&upload("bob", "photo"), None)
        .await
        .unwrap();
    db.ledger
        .transition(
            ids[2],
            UploadStatus::Pending,
            UploadStatus::Committed,
            &Changes::default(),
            now(),
        )
        .await
        .unwrap()
        .unwrap();

    let alice = user("alice");
    let got: Vec<UploadId> = db
        .ledger
        .list(&alice, &all(100))
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);

    let photos = ListFilter {
        profile: Some(profile("photo")),
        ..all(100)
    };
    let got: Vec<UploadId> = db
        .ledger
        .list(&alice, &photos)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(got, vec![ids[4], ids[2], ids[0]]);

    let committed = ListFilter {
        status: Some(UploadStatus::Committed),
        ..all(100)
    };
    let got = db.ledger.list(&alice, &committed).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, ids[2]);
    assert_eq!(got[0].status, UploadStatus::Committed);

    let pending_docs = ListFilter {
        status: Some(UploadStatus::Pending),
        profile: Some(profile("doc")),
        ..all(100)
    };
    let got: Vec<UploadId> = db
        .ledger
        .list(&alice, &pending_docs)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(got, vec![ids[3], ids[1]]);

    assert!(db.ledger.list(&alice, &all(0)).await.unwrap().is_empty());
    assert!(
        db.ledger
            .list(&user("carol"), &all(100))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn cursor_pages_cover_every_row_once(db: Db) {
    let mut alice_ids = HashSet::new();
    for i in 0..25 {
        let u = upload("alice", "photo");
        db.ledger.insert(&u, None).await.unwrap();
        alice_ids.insert(u.id);
        if i % 5 == 0 {
            // Another user's rows interleaved in time must never show up.
            db.ledger
                .insert(&upload("bob", "photo"), None)
                .await
                .unwrap();
        }
    }

    let alice = user("alice");
    let mut seen = Vec::new();
    let mut filter = all(10);
    let mut pages = Vec::new();
    loop {
        let page = db.ledger.list(&alice, &filter).await.unwrap();
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        assert!(page.iter().all(|u| u.user_id == alice));
        filter.after = Some(last.id);
        seen.extend(page.iter().map(|u| u.id));
    }
    assert_eq!(pages, vec![10, 10, 5, 0]);
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), alice_ids);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first across pages"
    );
}
