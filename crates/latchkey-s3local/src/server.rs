//! Serving: the s3s service with our auth and access rules, wrapped in CORS,
//! behind a hyper accept loop with graceful shutdown.
//!
//! CORS is answered here rather than by S3's bucket CORS configuration: the
//! store has one bucket whose only callers hold presigned URLs, so any origin
//! may send them. Preflights never reach s3s (they carry no signature).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::cors::{AllowHeaders, AllowOrigin, Cors, CorsLayer};

use crate::LocalStoreConfig;
use crate::access::Access;
use crate::backend::Backend;
use crate::post::PostAnswers;
use crate::temporary::Auth;
use latchkey_sigv4::temporary::TokenKey;

/// How long open requests may run on after shutdown is asked for.
const GRACE: Duration = Duration::from_secs(10);
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
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

pub(crate) async fn run(listener: TcpListener, service: Service, mut stop: watch::Receiver<()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(err) = conn.await {
                            tracing::debug!(%err, "local store connection ended with an error");
                        }
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
