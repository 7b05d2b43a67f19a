//! The ledger's one error enum. Callers map it to HTTP in one table; the
//! `Display` text may reach logs, so it never carries a connection string.

use std::fmt;

/// Which part of a [`Quota`](crate::Quota) an insert would have broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Bytes,
    Count,
}

impl fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaKind::Bytes => "bytes",
            QuotaKind::Count => "uploads",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("upload not found")]
    NotFound,
    /// `used` is the usage before this upload; `limit` is the quota.
    #[error("quota exceeded: {used} {what} of {limit} already used")]
    QuotaExceeded {
        what: QuotaKind,
        limit: u64,
        used: u64,
    },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {}", describe(.0))]
    Database(#[source] sqlx::Error),
    /// A stored row that does not parse into domain types: someone wrote to
    /// the database behind the ledger's back, or a migration went wrong.
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for LedgerError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        LedgerError::Database(sqlx::Error::Migrate(Box::new(e)))
    }
}

impl LedgerError {
    /// A configuration problem found before any connection was made.
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        LedgerError::Database(sqlx::Error::Configuration(msg.into().into()))
    }
}

/// A one-line description of a database error that is safe to log and show.
/// Server messages ("UNIQUE constraint failed: uploads.key", "relation does
/// not exist") are kept because they are what an operator needs; anything
/// that could echo connection settings (TLS, protocol, unknown variants) is
/// reduced to its category.
fn describe(e: &sqlx::Error) -> String {
    use sqlx::Error as E;
    match e {
        E::Database(db) => db.message().to_owned(),
        E::Io(io) => format!("I/O error: {}", io.kind()),
        E::PoolTimedOut => "timed out waiting for a database connection".to_owned(),
        E::PoolClosed => "the connection pool is closed".to_owned(),
        E::WorkerCrashed => "the database worker crashed".to_owned(),
        E::RowNotFound => "row not found".to_owned(),
        E::ColumnNotFound(c) => format!("column {c:?} not found"),
        E::ColumnDecode { index, .. } => format!("cannot decode column {index}"),
        E::Decode(_) => "cannot decode a value".to_owned(),
        E::TypeNotFound { type_name } => format!("type {type_name:?} not found"),
        // Both the ledger's own (`LedgerError::config`) and sqlx's name the
        // bad setting, never the URL it came from.
        E::Configuration(msg) => format!("configuration: {msg}"),
        E::Migrate(m) => format!("migration: {m}"),
        E::Tls(_) => "TLS error".to_owned(),
        E::Protocol(_) => "protocol error".to_owned(),
        _ => "unexpected database error".to_owned(),
    }
}

/// True for a violated UNIQUE constraint, on any backend.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
