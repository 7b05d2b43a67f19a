//! latchkey-server: configuration, wiring and [`Application::build`] — what
//! `latchkey serve` runs and what the end-to-end tests start on port 0.

mod adopt;
mod app;
pub mod config;
mod embedded_writes;
mod fd_limit;
mod http;
pub mod secrets;
mod serve;
mod store_check;
pub use store_check::store_check;
pub mod telemetry;
mod temporary_credentials;
pub mod workers;

pub use app::Application;
pub use config::{Config, ConfigError, Overrides};
