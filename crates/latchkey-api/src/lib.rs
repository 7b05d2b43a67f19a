//! The HTTP API of latchkey (DESIGN §5): axum routes, auth extractors, DTOs
//! and problem+json errors. Invariant: this is the only crate that knows the
//! wire format; the broker module inside it speaks domain types only.

pub mod auth;
pub mod broker;
pub mod dto;
pub mod error;
mod json;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
mod routes;
pub mod s3_events;
pub mod state;

pub use auth::{AuthConfig, Authenticator, mint_token};
pub use error::{ApiError, InternalDetail, ProblemCode};
pub use metrics::Metrics;
pub use routes::router;
#[doc(hidden)]
pub use routes::tus::fuzzing as tus_header_parsers;
pub use routes::tus::{
    REQUEST_HEADERS as TUS_REQUEST_HEADERS, RESPONSE_HEADERS as TUS_RESPONSE_HEADERS,
};
pub use state::{AppState, Limits, MAX_SINGLE_PUT};
