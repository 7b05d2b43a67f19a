//! `[server] max_connections` against slowloris: idle clients hold every
//! connection slot (one sends nothing, one half the HTTP/2 preface: hyper's
//! own header timer starts on neither); a real request then waits in the
//! listen backlog and is served once the header timeout has closed one of
//! them. On the broker's listener and the embedded store's. (A client that
//! stalls mid-head is in faults.rs.) Outcomes and their order only: the
//! outer `tokio::time::timeout`s turn a hang into a failure, they assert
//! no duration.

use std::io::{ErrorKind, Read};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::spawn_app_with;

/// Generous: only a missing bound gets anywhere near it.
const HANG: Duration = Duration::from_secs(90);

/// Whether the server has closed `conn` by now, without waiting: a
/// nonblocking read of the socket itself (tokio's `try_read` would consult
/// its cached readiness, which may lag behind the kernel).
fn closed_by_server(conn: TcpStream) -> bool {
    let mut conn = conn.into_std().unwrap();
    conn.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            // Whatever the server said before closing (hyper may answer a
            // timed-out head with 408) comes before the end of stream.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Fills both slots of a `max_connections = 2` listener at `addr` with idle
/// clients, then sends `request` on a third connection; returns its answer.
async fn served_after_an_idle_client_is_dropped(addr: &str, request: &str) -> String {
    // Connected in this order, so accepted in this order: the kernel's
    // backlog is first in, first out.
    let silent = TcpStream::connect(addr).await.unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(HANG, waiting.read_to_end(&mut answer))
        .await
        .expect("the waiting request is served once a slot frees")
        .unwrap();
    // Its answer came after the server had closed an idle client: while
    // both held their slots it could not even be accepted.
    let closed = [silent, stalled].map(closed_by_server);
    assert!(
        closed.contains(&true),
        "served while both idle clients held their slots (closed: {closed:?})"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

const LIMITS: &str = "[server]\nheader_read_timeout = \"1s\"\nmax_connections = 2\n\
                      [store]\nlisten = \"127.0.0.1:0\"\n[reconciler]\nenabled = false\n";

#[tokio::test]
async fn the_broker_serves_a_waiting_client_once_slowloris_slots_time_out() {
    let app = spawn_app_with(LIMITS).await;
    let addr = app.base.trim_start_matches("http://").trim_end_matches('/');
    let said = served_after_an_idle_client_is_dropped(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    // The limit was reached, and counted.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reached: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("latchkey_connection_limit_reached_total "))
        .unwrap_or_else(|| panic!("no limit counter in {metrics}"))
        .parse()
        .unwrap();
    assert!(reached >= 1.0, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("latchkey_open_connections ")),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_embedded_store_serves_a_waiting_client_once_slowloris_slots_time_out() {
    let app = spawn_app_with(LIMITS).await;
    let addr = app
        .store
        .trim_start_matches("http://")
        .trim_end_matches('/');
    // Unsigned, so refused; what matters is that it is answered.
    let said = served_after_an_idle_client_is_dropped(
        addr,
        &format!(
            "GET /{}/nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            app.bucket
        ),
    )
    .await;
    assert!(said.starts_with("HTTP/1.1 403"), "{said}");
    assert!(said.contains("<Error>"), "{said}");
}
