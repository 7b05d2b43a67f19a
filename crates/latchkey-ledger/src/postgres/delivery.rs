//! Outbox delivery and named leases on PostgreSQL.
//!
//! Several broker instances run webhook workers against the same outbox.
//! A claim selects due, unleased events `FOR UPDATE SKIP LOCKED` and leases
//! them in the same statement. The row locks keep two claimers from
//! leasing the same event; SKIP LOCKED makes the second claimer pass over
//! rows the first is leasing right now and take the next ones, instead of
//! queueing behind it and then finding them leased (plain FOR UPDATE) — so
//! workers spread over the backlog rather than contend for its head.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

use crate::outbox::clip_error;
use crate::rows::{OUTBOX_COLUMNS, OutboxRow, millis_after, to_millis};
use crate::{LedgerError, OutboxEvent};

pub(super) async fn claim(
    pool: &PgPool,
    now: OffsetDateTime,
    lease: Duration,
    limit: u32,
) -> Result<Vec<OutboxEvent>, LedgerError> {
    let now_ms = to_millis(now)?;
    let sql = format!(
        "UPDATE outbox SET lease_until = $1 WHERE id IN ( \
             SELECT id FROM outbox \
             WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2 \
               AND (lease_until IS NULL OR lease_until <= $2) \
             ORDER BY id LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING {OUTBOX_COLUMNS}"
    );
    // One statement, so its own transaction: the leases are committed (and
    // the row locks released) as soon as it returns.
    let rows = sqlx::query_as::<_, OutboxRow>(&sql)
        .bind(millis_after(now_ms, lease))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
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
    pool: &PgPool,
    id: i64,
    now: OffsetDateTime,
) -> Result<(), LedgerError> {
    let done = sqlx::query(
        "UPDATE outbox SET delivered_at = COALESCE(delivered_at, $1), lease_until = NULL \
         WHERE id = $2",
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
    pool: &PgPool,
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
        "UPDATE outbox SET attempts = attempts + 1, last_error = $1, lease_until = NULL, \
             next_attempt_at = COALESCE($2, next_attempt_at), dead_at = $3 \
         WHERE id = $4 AND delivered_at IS NULL",
    )
    .bind(clip_error(error))
    .bind(next)
    .bind(dead)
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        // Delivered already (nothing to do) or no such event.
        let exists = sqlx::query("SELECT 1 FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        if exists.is_none() {
            return Err(LedgerError::NotFound);
        }
    }
    Ok(())
}

pub(super) async fn dead(pool: &PgPool, limit: u32) -> Result<Vec<OutboxEvent>, LedgerError> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox \
         WHERE dead_at IS NOT NULL AND delivered_at IS NULL ORDER BY id LIMIT $1"
    );
    let rows = sqlx::query_as::<_, OutboxRow>(&sql)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(OutboxRow::into_event).collect()
}

pub(super) async fn try_lease(
    pool: &PgPool,
    name: &str,
    holder: &str,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<bool, LedgerError> {
    let now_ms = to_millis(now)?;
    // A racing second INSERT waits on the primary key for the first to
    // commit, then takes the DO UPDATE branch and evaluates its WHERE
    // against the committed row, so at most one holder gets a row back.
    // No advisory lock or SERIALIZABLE retry loop is needed.
    let won = sqlx::query(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE \
             SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE leases.expires_at <= $4 OR leases.holder = EXCLUDED.holder \
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
    pool: &PgPool,
    name: &str,
    holder: &str,
) -> Result<bool, LedgerError> {
    let done = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
