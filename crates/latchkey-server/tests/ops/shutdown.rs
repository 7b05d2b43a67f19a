//! Graceful shutdown: a request in flight when shutdown starts still gets
//! its answer; new connections are refused.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{file_request, spawn_app};

#[tokio::test]
async fn in_flight_request_finishes_and_new_connections_are_refused() {
    let mut app = spawn_app().await;
    let token = app.token("carol");
    let body = file_request(b"graceful").to_string();
    let (first, rest) = body.split_at(body.len() / 2);

    // Hold a request open: its head and half its JSON body are sent.
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        app.addr,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first.as_bytes()).await.unwrap();
    conn.flush().await.unwrap();
    // Let the server read the head and start waiting for the body.
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.shut_down();

    // The listener closes: new connections are refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(app.addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still accepting after shutdown: {other:?}"
                );
                drop(other);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let running = app.running.take().unwrap();
    assert!(
        !running.is_finished(),
        "shutdown waits for the open request"
    );

    // The rest of the body arrives; the request completes normally.
    conn.write_all(rest.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response))
        .await
        .expect("the response arrives and the connection closes")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "unexpected response: {response}"
    );
    assert!(response.contains("\"status\":\"pending\""), "{response}");

    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the server stops once the request is answered")
        .unwrap()
        .unwrap();
}
