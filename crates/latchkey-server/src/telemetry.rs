//! Logging set-up: human-readable by default, JSON lines on request.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// s3s logs every incoming request, query string included, at debug level;
/// for a presigned URL that is the signature, a capability anyone could
/// replay. This directive is appended last so no filter (`RUST_LOG=debug`
/// included) can turn those lines on.
const NEVER_LOG: &str = "s3s::service=info";

/// The filter from `RUST_LOG`, else `level`, with [`NEVER_LOG`] enforced.
pub fn filter(level: &str) -> EnvFilter {
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| level.to_owned());
    EnvFilter::try_new(format!("{base},{NEVER_LOG}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{NEVER_LOG}")))
}

pub fn init(cfg: &LogConfig) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&cfg.level))
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match cfg.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
