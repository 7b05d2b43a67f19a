//! The client half of the `latchkey` binary: `upload`, `ls`, `get` and `rm`
//! against a running broker's v1 API (DESIGN §5). Bytes never pass through
//! the broker: uploads PUT to the presigned URL the broker grants, downloads
//! GET from the presigned URL it returns.

mod commands;
mod credentials;
mod download;
mod http;
mod multipart;
mod post;
/// Reachable for callers that want to downcast an error to [`problem::ProblemError`]
/// (say, to pick an exit code from its `code`).
pub mod problem;
mod progress;
mod proxy;
mod upload;

use std::fmt;

pub use commands::{GetArgs, LsArgs, RmArgs, UploadArgs, get, ls, rm, upload};
use problem::redact_url;

/// How to reach the broker; shared by every client subcommand.
#[derive(Clone, clap::Args)]
pub struct ClientOpts {
    /// Base URL of the latchkey server.
    #[arg(long, env = "LATCHKEY_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Bearer token (a JWT or an `lk_` API key); `latchkey token` mints one
    /// in dev mode.
    #[arg(long, env = "LATCHKEY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print compact JSON, one object per line.
    #[arg(long)]
    pub json: bool,
}

/// Written by hand so the token can never be printed by accident.
impl fmt::Debug for ClientOpts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOpts")
            .field("server", &redact_url(&self.server))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("json", &self.json)
            .finish()
    }
}
