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

/// Creates, uploads and (when `complete`) completes one small `file` upload;
/// its id.
async fn uploaded(app: &crate::common::TestApp, token: &str, name: &str, complete: bool) -> String {
    let bytes = testdata("small-gps.jpg");
    let c = app
        .create(
            token,
            crate::common::photo_request(name, "image/jpeg", &bytes),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(app.put_grant(&c.body, bytes, |_| {}).await.status, 200);
    let id = c.body["id"].as_str().unwrap().to_owned();
    if complete {
        let done = app.complete(token, &id).await;
        assert_eq!(done.status, 200, "{}", done.text);
    }
    id
}

#[tokio::test]
async fn a_hanging_webhook_receiver_is_bounded_retried_and_blocks_no_other_event() {
    use std::sync::{Arc, Mutex};
    // Answers every delivery at once, except those about the `poisoned`
    // upload: those it accepts and never answers.
    let poisoned: Arc<Mutex<Option<String>>> = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (p, s) = (poisoned.clone(), seen.clone());
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (p, s) = (p.clone(), s.clone());
            async move {
                s.lock().unwrap().push(body.clone());
                let hang = p
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|id| body.contains(id.as_str()));
                if hang {
                    std::future::pending::<()>().await;
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let app = spawn_app_with(&format!(
        "[webhooks]\nurl = {url:?}\nsecret = \"whsec_dGVzdC13ZWJob29rLWtleS0zMi1ieXRlcy1sb25nISE=\"\n\
         poll = \"100ms\"\nretry_base = \"100ms\"\ntimeout = \"500ms\"\n"
    ))
    .await;
    let token = app.token("alice");
    // The poisoned upload commits first, so its event is ahead in the outbox.
    let stuck = uploaded(&app, &token, "stuck.jpg", false).await;
    *poisoned.lock().unwrap() = Some(stuck.clone());
    assert_eq!(app.complete(&token, &stuck).await.status, 200);
    let fine = uploaded(&app, &token, "fine.jpg", true).await;

    let about = |id: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|b| b.contains(id) && b.contains("upload.committed"))
            .count()
    };
    tokio::time::timeout(HANG, async {
        // The other event gets through, and the hanging one is tried again:
        // each attempt ended by `webhooks.timeout`, not by the receiver.
        while about(&fine) == 0 || about(&stuck) < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "deliveries: {} for the other event, {} for the hanging one",
            about(&fine),
            about(&stuck)
        )
    });
    // The broker itself stays responsive throughout.
    let row = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{stuck}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(row.body["status"], "committed", "{}", row.text);
}

#[tokio::test]
async fn a_killed_postgres_connection_recovers_without_double_commit() {
    use sqlx::Connection;
    if std::env::var("LATCHKEY_TEST_LEDGER").as_deref() != Ok("postgres") {
        eprintln!(
            "note: killed-PostgreSQL-connection test runs only with LATCHKEY_TEST_LEDGER=postgres"
        );
        return;
    }
    let app = spawn_app_with("[reconciler]\nenabled = false\n").await;
    let token = app.token("alice");
    let id = uploaded(&app, &token, "a.jpg", false).await;

    let mut admin = sqlx::PgConnection::connect(&app.ledger_url).await.unwrap();
    let killed = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    assert!(
        killed.rows_affected() > 0,
        "the broker's connections were killed"
    );

    // The next calls recover: at most a 503 (`ledger_unavailable`, with
    // Retry-After) before the pool reconnects.
    let mut unavailable = 0;
    let mut committed = 0;
    for _ in 0..10 {
        let res = tokio::time::timeout(HANG, app.complete(&token, &id))
            .await
            .expect("complete is bounded");
        match res.status {
            200 => {
                assert_eq!(res.body["status"], "committed", "{}", res.text);
                committed += 1;
                if committed == 2 {
                    break;
                }
            }
            503 => {
                assert_eq!(res.body["code"], "ledger_unavailable", "{}", res.text);
                assert!(res.headers.contains_key("retry-after"));
                unavailable += 1;
            }
            other => panic!("unexpected {other}: {}", res.text),
        }
    }
    assert_eq!(committed, 2, "recovered after {unavailable} × 503");
    assert!(unavailable <= 1, "{unavailable} × 503 before recovering");
    let (events,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM outbox WHERE upload_id::text = $1 AND event_type = 'upload.committed'",
    )
    .bind(&id)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(events, 1, "committed exactly once");
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_on_the_embedded_store_fails_the_put_and_loses_nothing() {
    if crate::common::on_s3() {
        eprintln!("note: the full-disk test is for the embedded store");
        return;
    }
    let app = spawn_app_with(
        "[store]\nlisten = \"127.0.0.1:0\"\nnotify = false\n[reconciler]\nenabled = false\n",
    )
    .await;
    // Bodies are written to `store/tmp` first, then renamed into place: a
    // 1 MiB filesystem there is a full disk for any larger PUT.
    let tmp = app.data_dir.join("store").join("tmp");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&tmp)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("note: full-disk test skipped: mounting a tmpfs is not permitted here");
        return;
    }
    let guard = Tmpfs(tmp.clone());
    let token = app.token("alice");
    let bytes: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let c = app
        .create(
            &token,
            json!({"profile": "file", "filename": "big.bin", "content_type": "application/octet-stream",
                   "size": bytes.len(), "sha256": crate::common::sha256_hex(&bytes)}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let id = c.body["id"].as_str().unwrap().to_owned();
    let full = app.put_grant(&c.body, bytes.clone(), |_| {}).await;
    assert!(
        (500..600).contains(&full.status),
        "{} {}",
        full.status,
        full.text
    );
    assert!(
        full.text.contains("<Error>"),
        "an S3 XML error: {}",
        full.text
    );
    // No half object: neither readable nor left in the temp dir.
    fn files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
    }
    let objects = app.data_dir.join("store").join("objects");
    assert_eq!(files(&objects), 0, "no object was stored");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp file removed"
    );
    let row = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(row.body["status"], "pending", "{}", row.text);
    let early = app.complete(&token, &id).await;
    assert_ne!(early.status, 200, "nothing to commit: {}", early.text);

    // Space back: the same grant uploads and commits, once.
    drop(guard);
    assert_eq!(app.put_grant(&c.body, bytes, |_| {}).await.status, 200);
    let done = app.complete(&token, &id).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "committed");
}
