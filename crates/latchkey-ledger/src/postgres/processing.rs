//! The photo pipeline's job queue on PostgreSQL: rows in `processing`,
//! claimed `FOR UPDATE SKIP LOCKED` and leased in one statement, so
//! workers on several instances never run the same job at once.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

use crate::rows::{ProcessingRow, UPLOAD_COLUMNS, millis_after, to_millis};
use crate::{LedgerError, ProcessingJob};

pub(super) async fn claim(
    pool: &PgPool,
    now: OffsetDateTime,
    lease: Duration,
    limit: u32,
) -> Result<Vec<ProcessingJob>, LedgerError> {
    let now_ms = to_millis(now)?;
    let sql = format!(
        "UPDATE uploads SET process_lease_until = $1, process_attempts = process_attempts + 1 \
         WHERE id IN ( \
             SELECT id FROM uploads \
             WHERE status = 'processing' \
               AND (process_lease_until IS NULL OR process_lease_until <= $2) \
             ORDER BY updated_at, id LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING {UPLOAD_COLUMNS}, process_attempts"
    );
    let rows = sqlx::query_as::<_, ProcessingRow>(&sql)
        .bind(millis_after(now_ms, lease))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(ProcessingRow::into_job).collect()
}
