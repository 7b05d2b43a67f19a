//! The request middleware: runs each request in its broker's metrics scope
//! and counts it, by route template, method and status, with its duration.
//!
//! A tower layer rather than `axum::middleware::from_fn`: that one boxes
//! the request's future and clones a boxed copy of the service below it on
//! every request, which showed in a grant's profile (`clone_box`, `memmove`
//! under the layers). Added with `Router::layer`, so the matched route is
//! known.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use metrics::counter;

use super::{Metrics, REJECTIONS, Scoped, UNMATCHED, method_label};
use crate::error::ProblemCode;

#[derive(Clone)]
pub(crate) struct TrackLayer {
    pub metrics: Metrics,
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Track<S> {
    inner: S,
    metrics: Metrics,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let method = method_label(req.method());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let start = Instant::now();
        let inner = self.metrics.record(|| self.inner.call(req));
        TrackFuture {
            inner: self.metrics.scope(inner),
            metrics: self.metrics.clone(),
            method,
            route,
            start,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct TrackFuture<F> {
        #[pin]
        inner: Scoped<F>,
        metrics: Metrics,
        method: &'static str,
        route: Option<MatchedPath>,
        start: Instant,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Ok(res) = &out {
            let elapsed = this.start.elapsed().as_secs_f64();
            let route = this.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
            let metrics = &*this.metrics;
            metrics.http_request(route, this.method, res.status().as_u16(), elapsed);
            if let Some(ProblemCode(code)) = res.extensions().get::<ProblemCode>() {
                metrics.record(|| counter!(REJECTIONS, "code" => *code).increment(1));
            }
            metrics.maybe_upkeep();
        }
        Poll::Ready(out)
    }
}
