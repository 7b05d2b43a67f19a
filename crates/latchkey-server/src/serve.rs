//! The broker's accept loop. `axum::serve` cannot bound how long a client
//! may take to send its headers, so connections are served by hyper-util's
//! auto (HTTP/1 + HTTP/2) builder with a header-read timeout: a client that
//! sends half a request head and stalls (slowloris) is disconnected.
//! Request bodies are bounded by the idle-read layer in `app.rs`.
//!
//! Two bounds hyper leaves to us:
//! - hyper's timer only starts once the auto builder has read enough bytes
//!   to tell HTTP/1 from HTTP/2, so a client that connects and sends
//!   nothing (or half the HTTP/2 preface) would be held forever. A
//!   connection whose first request has not arrived within the header
//!   timeout is dropped here.
//! - At most `max_connections` connections are open at once. At the limit
//!   the loop stops accepting and new connections wait in the kernel's
//!   listen backlog until one closes, as HAProxy's `maxconn`, nginx's
//!   `worker_connections` and Go's `LimitListener` do. Accepting and closing
//!   at once would answer a full broker with resets that clients retry
//!   immediately; waiting in the backlog serves them as soon as a slot
//!   frees (the timeouts above free the slots idle attackers hold), and
//!   when the backlog itself fills the kernel refuses or drops the SYN.
//!
//! Graceful shutdown as `axum::serve` does it: once `shutdown` resolves the
//! listener closes, every open connection finishes its in-flight request
//! and closes, and this returns when the last one has.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use latchkey_api::metrics::Metrics;
use latchkey_s3local::idle::{Marked, no_request_within};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What bounds one client's hold on the broker (`[server]` settings).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// A request head (the first one included) must arrive by then.
    pub header_read_timeout: Duration,
    /// Connections served at once; at least 1.
    pub max_connections: usize,
}

pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Limits {
        header_read_timeout,
        max_connections,
    } = limits;
    let (stop, stopping) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        // A slot first, then a connection (see the module header).
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Not logged: under a flood this would be one line per
                // freed slot. The counter shows it.
                metrics.connection_limit_reached();
                tokio::select! {
                    slot = slots.clone().acquire_owned() => {
                        slot.expect("the semaphore is never closed")
                    }
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum does.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        metrics.open_connections(max_connections - slots.available_permits());
        // Finished connections are reaped as new ones come.
        while connections.try_join_next().is_some() {}
        let requested = Arc::new(AtomicBool::new(false));
        let service = TowerToHyperService::new(Marked::new(router.clone(), requested.clone()));
        let mut stopping = stopping.clone();
        let slots = slots.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(header_read_timeout));
            {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    // Leaving the block drops the connection: the socket closes.
                    () = no_request_within(header_read_timeout, &requested) => {}
                    _ = stopping.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
            // The socket is closed before its slot goes to the next
            // connection waiting in the backlog.
            drop(slot);
            metrics.open_connections(max_connections - slots.available_permits());
        });
    }
    drop(listener);
    drop(stop);
    while connections.join_next().await.is_some() {}
    Ok(())
}
