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
    /// A failure shared by several writes: the SQLite ledger commits queued
    /// writes together, and when that commit fails every write in it fails
    /// with the same cause.
    #[error("{0}")]
    Shared(std::sync::Arc<LedgerError>),
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
    /// The database could not be reached or did not answer in time: worth a
    /// retry (503), unlike a bad query or a constraint (a bug, 500).
    pub fn is_unavailable(&self) -> bool {
        if let LedgerError::Shared(cause) = self {
            return cause.is_unavailable();
        }
        matches!(
            self,
            LedgerError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::WorkerCrashed
            )
        ) || self.is_busy()
    }

    /// The database refused for now: SQLite busy/locked (5, 6 and their
    /// extended codes), PostgreSQL serialization failure, deadlock, lock
    /// timeout or shutdown. Retrying later is right; nothing was written.
    fn is_busy(&self) -> bool {
        let LedgerError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let Some(code) = db.code() else { return false };
        // PostgreSQL SQLSTATEs first: some are all digits too.
        if matches!(
            code.as_ref(),
            "40001" | "40P01" | "55P03" | "57P01" | "57P03"
        ) {
            return true;
        }
        // SQLite: the primary code is the low byte of an extended one.
        code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
    }

    /// A configuration problem found before any connection was made.
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        LedgerError::Database(sqlx::Error::Configuration(msg.into().into()))
    }
}

/// An error from parsing a database URL. sqlx quotes the offending value
/// ("unknown value \"...\" for `ssl_mode`"), and a mistyped URL can put
/// part of a password there, so every quoted value is blanked; the name of
/// the bad setting is kept.
pub(crate) fn url_error(e: sqlx::Error) -> LedgerError {
    let msg = match &e {
        sqlx::Error::Configuration(m) => m.to_string(),
        _ => "cannot parse it".to_owned(),
    };
    let mut shown = String::with_capacity(msg.len());
    let mut quoted = false;
    for c in msg.chars() {
        if c == '"' {
            if !quoted {
                shown.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            shown.push(c);
        }
    }
    LedgerError::config(format!("invalid database URL: {shown}"))
}

/// A one-line description of a database error that is safe to log and show.
/// Server messages ("UNIQUE constraint failed: uploads.key", "relation does
/// not exist") are kept because they are what an operator needs; anything
/// that could echo connection settings (TLS, protocol, unknown variants) is
/// reduced to its category.
pub(crate) fn describe(e: &sqlx::Error) -> String {
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
        // The ledger's own (`LedgerError::config`, `url_error`) name the bad
        // setting, never the URL or a value from it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_blank_quoted_values() {
        let e = sqlx::Error::Configuration("unknown value \"hunter2\" for `ssl_mode`".into());
        assert_eq!(
            url_error(e).to_string(),
            "database error: configuration: invalid database URL: \
             unknown value \"…\" for `ssl_mode`"
        );
    }
}
