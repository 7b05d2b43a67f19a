//! latchkey-server: configuration, wiring and [`Application::build`] — what
//! `latchkey serve` runs and what the end-to-end tests start on port 0.

mod app;
pub mod config;
mod http;
pub mod secrets;
pub mod telemetry;

pub use app::Application;
pub use config::{Config, ConfigError, Overrides};
