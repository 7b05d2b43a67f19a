//! Commit is one transition however many callers race (invariant I4).

use futures::future::join_all;

use crate::common::{photo_request, spawn_app, testdata};

#[tokio::test]
async fn concurrent_completes_make_one_transition_and_one_event() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(&token, photo_request("a.jpg", "image/jpeg", &bytes))
        .await
        .body;
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(app.put_grant(&c, bytes, |_| {}).await.status, 200);

    let answers = join_all((0..8).map(|_| app.complete(&token, &id))).await;
    let first = &answers[0];
    assert_eq!(first.status, 200, "{}", first.text);
    for a in &answers {
        assert_eq!(a.status, 200);
        assert_eq!(
            a.body, first.body,
            "every caller sees the same committed row"
        );
    }
    let again = app.complete(&token, &id).await;
    assert_eq!(again.body, first.body);

    let ledger = latchkey_ledger::connect(&app.ledger_url).await.unwrap();
    let events = ledger.outbox_pending(100).await.unwrap();
    let mine: Vec<_> = events
        .iter()
        .filter(|e| e.upload_id.to_string() == id)
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "exactly one committed event for {id}: {events:?}"
    );
    assert_eq!(mine[0].event_type, "upload.committed");
}
