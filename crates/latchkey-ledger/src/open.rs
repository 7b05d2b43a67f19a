//! Choosing a backend from a database URL, opening it, and migrating it.
//!
//! Migrations can run on every open (the default, right for a single
//! instance) or as a separate deploy step (`latchkey migrate`), in which
//! case opening only checks that the schema is not behind.

use std::sync::Arc;

use sqlx::migrate::{Migrate, Migrator};

use crate::error::describe;
use crate::{LedgerError, PgLedger, SqliteLedger, UploadRepo};

/// How to open a ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Apply pending migrations while opening. When false, opening fails
    /// with a clear message if a migration this build knows is missing
    /// (migrations newer than this build are fine: during a rolling deploy
    /// the new version migrates while the old one is still running).
    pub migrate: bool,
    /// The most connections the pool opens. On SQLite readers run in
    /// parallel under WAL while writers queue on the database lock; an
    /// in-memory SQLite database always uses exactly one.
    pub max_connections: u32,
}

impl OpenOptions {
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            migrate: true,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

fn backend(url: &str) -> Result<Backend, LedgerError> {
    // The URL is never echoed back: it may hold a password.
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    match scheme {
        "sqlite" => Ok(Backend::Sqlite),
        "postgres" | "postgresql" => Ok(Backend::Postgres),
        _ => Err(LedgerError::config(
            "unsupported database URL; use sqlite://path, sqlite::memory: or postgres://...",
        )),
    }
}

/// Opens and migrates the ledger a database URL names: `sqlite://path`,
/// `sqlite::memory:`, or `postgres://` / `postgresql://`.
pub async fn connect(url: &str) -> Result<Arc<dyn UploadRepo>, LedgerError> {
    connect_with(url, OpenOptions::default()).await
}

/// [`connect`] with explicit [`OpenOptions`].
pub async fn connect_with(
    url: &str,
    options: OpenOptions,
) -> Result<Arc<dyn UploadRepo>, LedgerError> {
    Ok(match backend(url)? {
        Backend::Sqlite => Arc::new(SqliteLedger::open_with(url, options).await?),
        Backend::Postgres => Arc::new(PgLedger::open_with(url, options).await?),
    })
}

/// Applies pending migrations to the database at `url` and closes it, for
/// a `latchkey migrate` deploy step. On PostgreSQL it is safe to run from
/// several instances at once: sqlx holds an advisory lock around the run.
/// (SQLite gets no such lock, but a SQLite ledger has one instance.)
pub async fn migrate(url: &str) -> Result<(), LedgerError> {
    let options = OpenOptions {
        migrate: true,
        max_connections: 1,
    };
    connect_with(url, options).await?.close().await;
    Ok(())
}

/// Fails unless every migration in `migrator` has been applied, unchanged,
/// to the database `conn` is connected to. Used when opening without
/// migrating, so a forgotten `latchkey migrate` is reported at startup
/// rather than as "no such column" on the first request.
pub(crate) async fn check_migrated<C>(conn: &mut C, migrator: &Migrator) -> Result<(), LedgerError>
where
    C: Migrate + ?Sized,
{
    let applied = conn.list_applied_migrations().await.map_err(|e| {
        LedgerError::config(format!(
            "cannot read the ledger's migration history ({}); run `latchkey migrate` first",
            describe(&sqlx::Error::Migrate(Box::new(e)))
        ))
    })?;
    for m in migrator.iter() {
        if m.migration_type.is_down_migration() {
            continue;
        }
        match applied.iter().find(|a| a.version == m.version) {
            None => {
                return Err(LedgerError::config(format!(
                    "the ledger schema is behind: migration {} ({}) is not applied; \
                     run `latchkey migrate` first",
                    m.version, m.description
                )));
            }
            Some(a) if a.checksum != m.checksum => {
                return Err(LedgerError::config(format!(
                    "migration {} ({}) was changed after it was applied",
                    m.version, m.description
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
