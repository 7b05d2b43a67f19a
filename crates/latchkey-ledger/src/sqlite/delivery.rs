//! Outbox delivery and named leases on SQLite.
//!
//! SQLite has one writer at a time, so claiming needs no row locks: every
//! write here goes through the ledger's [`Writer`], whose transactions take
//! the database write lock before reading (`BEGIN IMMEDIATE`), and a second
//! claimer's write runs after the first one's leases, and sees them.

use std::time::Duration;

use sqlx::SqlitePool;
use time::OffsetDateTime;

use super::writer::Writer;
use crate::outbox::clip_error;
use crate::rows::{OUTBOX_COLUMNS, OutboxRow, millis_after, to_millis};
use crate::{LedgerError, OutboxEvent};

pub(super) async fn claim(
    writer: &Writer,
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
    let rows = writer
        .write(move |conn| {
            Box::pin(async move {
                let rows = sqlx::query_as::<_, OutboxRow>(&sql)
                    .bind(millis_after(now_ms, lease))
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(i64::from(limit))
                    .fetch_all(conn)
                    .await?;
                Ok(rows)
            })
        })
        .await?;
    let mut events = rows
        .into_iter()
        .map(OutboxRow::into_event)
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING gives rows in no promised order.
    events.sort_by_key(|e| e.id);
    Ok(events)
}

pub(super) async fn delivered(
    writer: &Writer,
    id: i64,
    now: OffsetDateTime,
) -> Result<(), LedgerError> {
    let now_ms = to_millis(now)?;
    writer
        .write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE outbox SET delivered_at = COALESCE(delivered_at, ?), \
                         lease_until = NULL \
                     WHERE id = ?",
                )
                .bind(now_ms)
                .bind(id)
                .execute(conn)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(LedgerError::NotFound);
                }
                Ok(())
            })
        })
        .await
}

pub(super) async fn failed(
    writer: &Writer,
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
    let error = clip_error(error);
    writer
        .write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?, \
                         lease_until = NULL, next_attempt_at = COALESCE(?, next_attempt_at), \
                         dead_at = ? \
                     WHERE id = ? AND delivered_at IS NULL",
                )
                .bind(&error)
                .bind(next)
                .bind(dead)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 0 {
                    // Delivered already (nothing to do) or no such event.
                    let exists = sqlx::query("SELECT 1 FROM outbox WHERE id = ?")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                    if exists.is_none() {
                        return Err(LedgerError::NotFound);
                    }
                }
                Ok(())
            })
        })
        .await
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
    writer: &Writer,
    name: &str,
    holder: &str,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<bool, LedgerError> {
    let now_ms = to_millis(now)?;
    // One statement: the upsert's WHERE decides whether an existing lease
    // may be taken over, and RETURNING yields a row only if it was.
    let (name, holder) = (name.to_owned(), holder.to_owned());
    writer
        .write(move |conn| {
            Box::pin(async move {
                let won = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE \
                         SET holder = excluded.holder, expires_at = excluded.expires_at \
                         WHERE leases.expires_at <= ? OR leases.holder = excluded.holder \
                     RETURNING holder",
                )
                .bind(&name)
                .bind(&holder)
                .bind(millis_after(now_ms, ttl))
                .bind(now_ms)
                .fetch_optional(conn)
                .await?;
                Ok(won.is_some())
            })
        })
        .await
}

pub(super) async fn release_lease(
    writer: &Writer,
    name: &str,
    holder: &str,
) -> Result<bool, LedgerError> {
    let (name, holder) = (name.to_owned(), holder.to_owned());
    writer
        .write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
                    .bind(&name)
                    .bind(&holder)
                    .execute(conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
}
