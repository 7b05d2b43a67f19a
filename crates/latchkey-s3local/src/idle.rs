//! Dropping connections that never send a request.
//!
//! hyper's header-read timer starts at a connection's first byte, so a
//! client that connects and sends nothing would hold its slot (of
//! `max_connections`) forever. Both listeners — the broker's and this
//! store's — race each connection against [`no_request_within`], with the
//! service wrapped in [`Marked`] so the race ends once a request arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Resolves once `timeout` has passed without the connection's first
/// request head; never, once one has arrived (hyper's own timer bounds
/// the heads of later requests on the connection).
pub async fn no_request_within(timeout: Duration, requested: &AtomicBool) {
    tokio::time::sleep(timeout).await;
    if requested.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

/// A service that notes, in `requested`, that its connection has sent a
/// request.
#[derive(Clone)]
pub struct Marked<S> {
    inner: S,
    requested: Arc<AtomicBool>,
}

impl<S> Marked<S> {
    pub fn new(inner: S, requested: Arc<AtomicBool>) -> Self {
        Marked { inner, requested }
    }
}

impl<S: tower::Service<R>, R> tower::Service<R> for Marked<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.requested.store(true, Ordering::Release);
        self.inner.call(req)
    }
}
