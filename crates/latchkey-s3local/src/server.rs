//! Serving: the s3s service with our auth and access rules, wrapped in CORS,
//! behind a hyper accept loop with graceful shutdown.
//!
//! The accept loop bounds idle clients like the broker's does (see
//! `latchkey-server/src/serve.rs`): a connection whose first request head
//! has not arrived within the header timeout is dropped (hyper's own timer
//! only starts once the auto builder has seen enough bytes to pick HTTP/1
//! or HTTP/2), and at `max_connections` open connections the loop stops
//! accepting, so further ones wait in the kernel's listen backlog.
//!
//! CORS is answered here rather than by S3's bucket CORS configuration: the
//! store has one bucket whose only callers hold presigned URLs, so any origin
//! may send them. Preflights never reach s3s (they carry no signature).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use http::{HeaderName, Method};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_http::cors::{AllowHeaders, AllowOrigin, Cors, CorsLayer};

use crate::access::Access;
use crate::backend::Backend;
use crate::idle::{Marked, no_request_within};
use crate::post::PostAnswers;
use crate::temporary::Auth;
use crate::{ConnectionLimits, LocalStoreConfig};
use latchkey_sigv4::temporary::TokenKey;

/// How long open requests may run on after shutdown is asked for.
const GRACE: Duration = Duration::from_secs(10);
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

pub(crate) type Service = Cors<PostAnswers<S3Service>>;

pub(crate) fn cors_layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::HEAD,
            Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            HeaderName::from_static("etag"),
            HeaderName::from_static("x-amz-checksum-sha256"),
            HeaderName::from_static("x-amz-version-id"),
            HeaderName::from_static("x-amz-request-id"),
        ])
        .max_age(PREFLIGHT_MAX_AGE)
}

pub(crate) fn build_service(backend: Backend, cfg: &LocalStoreConfig) -> Service {
    let mut builder = S3ServiceBuilder::new(backend);
    let temporary = Arc::new(TokenKey::derive(&cfg.secret_access_key));
    builder.set_auth(Auth::new(
        cfg.access_key_id.clone(),
        cfg.secret_access_key.clone(),
        temporary.clone(),
    ));
    builder.set_access(Access {
        temporary,
        bucket: cfg.bucket.clone(),
    });
    tower::Layer::layer(&cors_layer(), PostAnswers(builder.build()))
}

pub(crate) async fn run(
    listener: TcpListener,
    service: Service,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<()>,
) {
    let timeout = limits.header_read_timeout;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A slot first, then a connection: at the limit, new connections
        // wait in the backlog rather than being accepted and reset.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stop.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let requested = Arc::new(AtomicBool::new(false));
                    let service = Marked::new(service.clone(), requested.clone());
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        tokio::select! {
                            ended = conn => if let Err(err) = ended {
                                tracing::debug!(%err, "local store connection ended with an error");
                            },
                            // The connection is dropped: its socket closes.
                            () = no_request_within(timeout, &requested) => {}
                        }
                        drop(slot);
                    });
                }
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%err, "local store accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(GRACE) => {
            tracing::warn!("local store shutdown grace period elapsed with requests still open");
        }
    }
}
