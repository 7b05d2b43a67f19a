//! Bounded faults: a store that accepts connections and never answers, a
//! client that stalls mid-header or mid-body (slowloris), and a SQLite
//! ledger locked by another connection. Each would hang or lose work
//! without its bound; the outer `tokio::time::timeout`s only turn such a
//! hang into a failure, they assert no duration.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{spawn_app_with, testdata};

/// Generous: only a missing bound gets anywhere near it.
const HANG: Duration = Duration::from_secs(90);

/// Accepts TCP connections and holds them open without a byte of answer.
async fn black_hole() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    addr
}

#[tokio::test]
async fn complete_against_a_silent_store_answers_503_in_bounded_time() {
    let addr = black_hole().await;
    let app = spawn_app_with(&format!(
        "[store]\nkind = \"s3\"\nendpoint = \"http://{addr}\"\nregion = \"us-east-1\"\nbucket = \"latchkey\"\n\
         access_key_id = \"HANGKEY\"\nsecret_access_key = \"hang-secret\"\ntimeout = \"1s\"\n\
         [reconciler]\nenabled = false\n"
    ))
    .await;
    let token = app.token("alice");
    let c = app
        .create(
            &token,
            json!({"profile": "file", "filename": "a.jpg", "content_type": "image/jpeg",
                   "size": 1234}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let id = c.body["id"].as_str().unwrap();
    let res = tokio::time::timeout(HANG, app.complete(&token, id))
        .await
        .expect("complete is bounded by store.timeout");
    assert_eq!(res.status, 503, "{}", res.text);
    assert_eq!(res.body["code"], "store_unavailable");
    assert!(res.headers.contains_key("retry-after"));
    let row = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        row.body["status"], "pending",
        "a silent store rejects nothing"
    );
}

fn authority(base: &str) -> &str {
    base.trim_start_matches("http://").trim_end_matches('/')
}

/// Reads until the server closes the connection; what it said, if anything.
async fn until_closed(mut conn: TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes a stalled connection");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_client_stalling_mid_header_is_disconnected() {
    let app = spawn_app_with("[server]\nheader_read_timeout = \"1s\"\n").await;
    let mut conn = TcpStream::connect(authority(&app.base)).await.unwrap();
    conn.write_all(b"POST /v1/uploads HTTP/1.1\r\nhost: x\r\ncontent-ty")
        .await
        .unwrap();
    conn.flush().await.unwrap();
    let said = until_closed(conn).await;
    assert!(!said.starts_with("HTTP/1.1 2"), "{said}");
    // The broker still serves everyone else.
    let ok = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert!(ok.status().is_success());
}

#[tokio::test]
async fn a_client_stalling_mid_body_is_answered_and_disconnected() {
    let app = spawn_app_with("[server]\nbody_idle_timeout = \"1s\"\n").await;
    let token = app.token("alice");
    let mut conn = TcpStream::connect(authority(&app.base)).await.unwrap();
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"profile\": "
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.flush().await.unwrap();
    let said = until_closed(conn).await;
    assert!(
        !said.starts_with("HTTP/1.1 2"),
        "nothing is granted: {said}"
    );
}

#[tokio::test]
async fn a_locked_sqlite_ledger_answers_503_then_commits_exactly_once() {
    use sqlx::Connection;
    if std::env::var("LATCHKEY_TEST_LEDGER").as_deref() == Ok("postgres") {
        // `BEGIN EXCLUSIVE` is SQLite's; the PostgreSQL pass has no file to lock.
        return;
    }
    // No in-process store events and no reconciler: only `complete` commits.
    let app = spawn_app_with(
        "[store]\nlisten = \"127.0.0.1:0\"\nnotify = false\n[reconciler]\nenabled = false\n",
    )
    .await;
    let token = app.token("alice");
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(
            &token,
            json!({"profile": "file", "filename": "a.jpg", "content_type": "image/jpeg",
                   "size": bytes.len()}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let id = c.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.put_grant(&c.body, bytes, |_| {}).await.status, 200);

    let mut lock = sqlx::SqliteConnection::connect(&app.ledger_url)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    let locked = tokio::time::timeout(HANG, app.complete(&token, &id))
        .await
        .expect("a locked ledger is bounded by busy_timeout");
    assert_eq!(locked.status, 503, "{}", locked.text);
    assert_eq!(locked.body["code"], "ledger_unavailable");
    assert!(locked.headers.contains_key("retry-after"));
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();

    for _ in 0..2 {
        let done = app.complete(&token, &id).await;
        assert_eq!(done.status, 200, "{}", done.text);
        assert_eq!(done.body["status"], "committed");
    }
    let (events,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM outbox WHERE upload_id = ? AND event_type = 'upload.committed'",
    )
    .bind(&id)
    .fetch_one(&mut lock)
    .await
    .unwrap();
    assert_eq!(events, 1, "committed exactly once");
}
