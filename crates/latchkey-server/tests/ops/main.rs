//! Operations: `/metrics`, `/openapi.json`, `/readyz`, JSON request logs and
//! graceful shutdown, against the same `Application` `latchkey serve` runs.

mod common;
mod logs;
mod metrics;
mod openapi;
mod readyz;
mod shutdown;
