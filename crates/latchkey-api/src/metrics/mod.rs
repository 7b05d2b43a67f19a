//! Prometheus metrics, served at `GET /metrics`.
//!
//! Every [`Metrics`] owns its own recorder, so two brokers in one process
//! (the test suites start dozens) never see each other's counts. That rules
//! out `metrics::set_global_recorder`, which can be called once per process
//! and would make every test's counters the sum of all tests running beside
//! it. Instead each request runs inside [`Metrics::scope`], which makes this
//! broker's recorder the thread-local one for every poll of the request's
//! future: the plain `metrics::counter!` / `histogram!` macros then land in
//! the right registry wherever they are called in handlers or the broker
//! module. Work spawned onto another task (the reconciler, the webhook
//! worker) leaves that scope and must wrap its own future in
//! [`Metrics::scope`]. The ledger and store wrappers ([`Metrics::ledger`],
//! [`Metrics::store`]) record through [`Metrics::record`] explicitly, so
//! their timings count whoever calls them.

mod instrument;
mod track;

pub(crate) use track::TrackLayer;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::Method;
use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Requests answered, by `method`, `route` (the matched path template such
/// as `/v1/uploads/{id}`, never the raw path) and `status`.
pub const HTTP_REQUESTS: &str = "latchkey_http_requests_total";
/// Time from request to response headers, labelled like [`HTTP_REQUESTS`].
pub const HTTP_DURATION: &str = "latchkey_http_request_duration_seconds";
/// Upload grants handed out, by `profile` and `mode`.
pub const GRANTS: &str = "latchkey_grants_total";
/// Uploads moved to `committed`, by `profile`.
pub const COMMITS: &str = "latchkey_commits_total";
/// Bytes of committed uploads, by `profile`.
pub const UPLOAD_BYTES: &str = "latchkey_upload_bytes_total";
/// Problem responses, by their stable `code`.
pub const REJECTIONS: &str = "latchkey_rejections_total";
/// The broker's own calls to the object store, by `op`.
pub const STORE_DURATION: &str = "latchkey_store_request_duration_seconds";
/// The broker's calls to the ledger, by `op` (the `UploadRepo` method).
pub const LEDGER_DURATION: &str = "latchkey_ledger_request_duration_seconds";
/// Outbox events not yet delivered; set by the webhook worker.
pub const OUTBOX_BACKLOG: &str = "latchkey_outbox_backlog";
/// Uploads in `pending`; set by the reconciler.
pub const PENDING_UPLOADS: &str = "latchkey_pending_uploads";

/// Client connections open on the broker's listener; set by its accept loop.
pub const OPEN_CONNECTIONS: &str = "latchkey_open_connections";
/// Times the accept loop found `[server] max_connections` connections open
/// and stopped accepting until one closed.
pub const CONNECTION_LIMIT: &str = "latchkey_connection_limit_reached_total";

/// Route label for requests no route matched (404s from the fallback): the
/// raw path would let any client mint new series.
const UNMATCHED: &str = "unmatched";

/// Bucket bounds in seconds for every `…_duration_seconds` histogram: from a
/// millisecond (SQLite reads) to ten seconds (a store that is struggling).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram samples pile up in memory until they are folded into buckets;
/// a scrape does that, and so does the request path at most this often, so
/// a broker nobody scrapes does not grow without bound.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// One broker's metrics registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    born: Instant,
    /// Milliseconds after `born` when upkeep is next due.
    next_upkeep_ms: AtomicU64,
    http: HttpSeries,
}

/// The request counter and duration histogram of each (route, method,
/// status) seen, registered once. Why: building the three labels (three
/// `String`s) and looking the two series up in the registry (hashing the
/// labels, a new key) on every request was ~2% of a grant's CPU. Bounded:
/// route templates, methods (`method_label`) and status codes are all
/// finite sets.
#[derive(Default)]
struct HttpSeries {
    by_route: std::sync::Mutex<HashMap<String, Vec<HttpSeriesFor>>>,
}

struct HttpSeriesFor {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".into()),
                DURATION_BUCKETS,
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics {
            inner: Arc::new(Inner {
                recorder,
                handle,
                born: Instant::now(),
                next_upkeep_ms: AtomicU64::new(0),
                http: HttpSeries::default(),
            }),
        };
        metrics.record(describe);
        metrics
    }

    /// Runs `f` with this registry as the thread's recorder.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.inner.recorder, f)
    }

    /// Makes this registry the recorder for every poll of `fut`.
    pub fn scope<F: Future>(&self, fut: F) -> Scoped<F> {
        Scoped {
            metrics: self.clone(),
            inner: fut,
        }
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }

    /// The broker's accept loop: `open` client connections are being served.
    pub fn open_connections(&self, open: usize) {
        self.record(|| gauge!(OPEN_CONNECTIONS).set(open as f64));
    }

    /// The broker's accept loop found every connection slot taken.
    pub fn connection_limit_reached(&self) {
        self.record(|| counter!(CONNECTION_LIMIT).increment(1));
    }

    fn maybe_upkeep(&self) {
        let now = self.inner.born.elapsed().as_millis() as u64;
        let due = self.inner.next_upkeep_ms.load(Ordering::Relaxed);
        let next = now + UPKEEP_EVERY.as_millis() as u64;
        if now >= due
            && self
                .inner
                .next_upkeep_ms
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.inner.handle.run_upkeep();
        }
    }
}

/// Descriptions (`# HELP`, `# TYPE`) for every series latchkey exports. The
/// gauges are only described here: the workers that know their values set
/// them, and a series that is absent says "unknown" more honestly than a 0.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from request to response headers."
    );
    describe_counter!(
        GRANTS,
        "Upload grants handed out (201s of POST /v1/uploads, Idempotency-Key replays included)."
    );
    describe_counter!(COMMITS, "Uploads moved from pending to committed.");
    describe_counter!(UPLOAD_BYTES, Unit::Bytes, "Bytes of committed uploads.");
    describe_counter!(
        REJECTIONS,
        "Problem (RFC 9457) responses, by their stable code."
    );
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "The broker's own calls to the object store."
    );
    describe_histogram!(
        LEDGER_DURATION,
        Unit::Seconds,
        "The broker's calls to the ledger."
    );
    describe_gauge!(OUTBOX_BACKLOG, "Outbox events not yet delivered.");
    describe_gauge!(PENDING_UPLOADS, "Uploads in the pending state.");
    describe_gauge!(
        OPEN_CONNECTIONS,
        "Client connections open on the broker's listener."
    );
    describe_counter!(
        CONNECTION_LIMIT,
        "Times every [server] max_connections slot was taken and the broker stopped accepting until one closed."
    );
}

/// Counts a grant. Call inside [`Metrics::scope`] (every request is).
pub(crate) fn grant_issued(profile: &str, mode: &str) {
    counter!(GRANTS, "profile" => profile.to_owned(), "mode" => mode.to_owned()).increment(1);
}

pin_project_lite::pin_project! {
    /// A future that records into one broker's registry; see [`Metrics::scope`].
    pub struct Scoped<F> {
        metrics: Metrics,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let inner = this.inner;
        this.metrics.record(|| inner.poll(cx))
    }
}

/// Methods outside this list are counted as `other`, so that a client
/// inventing methods cannot inflate the number of series.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    /// Counts one answered request and its duration, in its series.
    fn http_request(&self, route: &str, method: &'static str, status: u16, secs: f64) {
        let mut by_route = self
            .inner
            .http
            .by_route
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let series = match by_route.get_mut(route) {
            Some(series) => series,
            None => by_route.entry(route.to_owned()).or_default(),
        };
        let i = match series
            .iter()
            .position(|s| s.method == method && s.status == status)
        {
            Some(i) => i,
            None => {
                let labels = [
                    ("method", method.to_owned()),
                    ("route", route.to_owned()),
                    ("status", status.to_string()),
                ];
                let (requests, duration) = self.record(|| {
                    (
                        counter!(HTTP_REQUESTS, &labels),
                        histogram!(HTTP_DURATION, &labels),
                    )
                });
                series.push(HttpSeriesFor {
                    method,
                    status,
                    requests,
                    duration,
                });
                series.len() - 1
            }
        };
        series[i].requests.increment(1);
        series[i].duration.record(secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.record(|| grant_issued("photo", "put"));
        a.record(|| grant_issued("photo", "put"));
        b.record(|| grant_issued("file", "put"));
        let a = a.render();
        let b = b.render();
        assert!(
            a.contains(r#"latchkey_grants_total{profile="photo",mode="put"} 2"#),
            "{a}"
        );
        assert!(!a.contains(r#"profile="file""#), "{a}");
        assert!(
            b.contains(r#"latchkey_grants_total{profile="file",mode="put"} 1"#),
            "{b}"
        );
    }

    #[tokio::test]
    async fn scope_follows_the_future_across_awaits() {
        let m = Metrics::new();
        m.scope(async {
            tokio::task::yield_now().await;
            grant_issued("photo", "post");
            tokio::task::yield_now().await;
            grant_issued("photo", "post");
        })
        .await;
        // Outside the scope nothing is recorded here.
        grant_issued("photo", "post");
        let text = m.render();
        assert!(
            text.contains(r#"latchkey_grants_total{profile="photo",mode="post"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn durations_have_buckets_and_help() {
        let m = Metrics::new();
        m.record(|| histogram!(STORE_DURATION, "op" => "head").record(0.003));
        let text = m.render();
        assert!(
            text.contains(
                r#"latchkey_store_request_duration_seconds_bucket{op="head",le="0.005"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("# HELP latchkey_store_request_duration_seconds"),
            "{text}"
        );
    }
}
