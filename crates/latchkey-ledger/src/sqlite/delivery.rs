//! Outbox delivery and named leases on SQLite.
//!
//! SQLite has one writer at a time, so claiming needs no row locks: the
//! claim runs inside `BEGIN IMMEDIATE`, which takes the database write lock
//! before reading, and a second claimer waits (in `busy_timeout`) until the
//! first has committed its leases, then sees them.

use std::time::Duration;

use sqlx::SqlitePool;
use time::OffsetDateTime;

use super::BEGIN_WRITE;
use crate::outbox::clip_error;
use crate::rows::{OUTBOX_COLUMNS, OutboxRow, millis_after, to_millis};
use crate::{LedgerError, OutboxEvent};

pub(super) async fn claim(
    pool: &SqlitePool,
    now: OffsetDateTime,
    lease: Duration,
    limit: u32,
) -> Result<Vec<OutboxEvent>, LedgerError> {
    let now_ms = to_millis(now)?;
    let sql = format!(
        "UPDATE outbox SET lease_until = ? WHERE id IN ( \
             SELECT id FROM outbox \
             WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ? \
               AND (lease_until IS NULL OR lease_until <= ?) \
             ORDER BY id LIMIT ?) \
         RETURNING {OUTBOX_COLUMNS}"
    );
    let mut tx = pool.begin_with(BEGIN_WRITE).await?;
    let rows = sqlx::query_as::<_, OutboxRow>(&sql)
        .bind(millis_after(now_ms, lease))
        .bind(now_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut events = rows
        .into_iter()
        .map(OutboxRow::into_event)
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING gives rows in no promised order.
    events.sort_by_key(|e| e.id);
    Ok(events)
}

pub(super) async fn delivered(
    pool: &SqlitePool,
    id: i64,
    now: OffsetDateTime,
) -> Result<(), LedgerError> {
    let done = sqlx::query(
        "UPDATE outbox SET delivered_at = COALESCE(delivered_at, ?), lease_until = NULL \
         WHERE id = ?",
    )
    .bind(to_millis(now)?)
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(LedgerError::NotFound);
    }
    Ok(())
}

pub(super) async fn failed(
    pool: &SqlitePool,
    id: i64,
    next_attempt_at: Option<OffsetDateTime>,
    error: &str,
    now: OffsetDateTime,
) -> Result<(), LedgerError> {
    let next = next_attempt_at.map(to_millis).transpose()?;
    let dead = match next {
        None => Some(to_millis(now)?),
        Some(_) => None,
    };
    let done = sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, lease_until = NULL, \
             next_attempt_at = COALESCE(?, next_attempt_at), dead_at = ? \
         WHERE id = ? AND delivered_at IS NULL",
    )
    .bind(clip_error(error))
    .bind(next)
    .bind(dead)
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        // Delivered already (nothing to do) or no such event.
        let exists = sqlx::query("SELECT 1 FROM outbox WHERE id = ?")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        if exists.is_none() {
            return Err(LedgerError::NotFound);
        }
    }
    Ok(())
}

pub(super) async fn dead(pool: &SqlitePool, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox \
         WHERE dead_at IS NOT NULL AND delivered_at IS NULL ORDER BY id LIMIT ?"
    );
    let rows = sqlx::query_as::<_, OutboxRow>(&sql)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(OutboxRow::into_event).collect()
}

pub(super) async fn try_lease(
    pool: &SqlitePool,
    name: &str,
    holder: &str,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<bool, LedgerError> {
    let now_ms = to_millis(now)?;
    // One statement: the upsert's WHERE decides whether an existing lease
    // may be taken over, and RETURNING yields a row only if it was.
    let won = sqlx::query(
        "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE \
             SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at <= ? OR leases.holder = excluded.holder \
         RETURNING holder",
    )
    .bind(name)
    .bind(holder)
    .bind(millis_after(now_ms, ttl))
    .bind(now_ms)
    .fetch_optional(pool)
    .await?;
    Ok(won.is_some())
}

pub(super) async fn release_lease(
    pool: &SqlitePool,
    name: &str,
    holder: &str,
) -> Result<bool, LedgerError> {
    let done = sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
