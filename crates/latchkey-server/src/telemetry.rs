//! Logging set-up: human-readable by default, JSON lines with
//! `log.format = "json"` (or `LATCHKEY_LOG__FORMAT=json`).
//!
//! In JSON each line is one object: the event's fields at the top level
//! (`message`, and for request logs `status`, `latency_ms`, `code`) and the
//! request's span under `span` (`method`, `route`, `path`, `request_id`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = try_init_with(cfg, std::io::stderr);
}

/// Installs the process-wide subscriber writing to `writer`; tests use it
/// to capture the very lines `latchkey serve` would print.
pub fn try_init_with<W>(
    cfg: &LogConfig,
    writer: W,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&cfg.level))
        .with_writer(writer);
    match cfg.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    }
}
