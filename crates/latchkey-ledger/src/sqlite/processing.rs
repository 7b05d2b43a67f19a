//! The photo pipeline's job queue on SQLite: rows in `processing`, claimed
//! under a lease by a write through the ledger's [`Writer`] (one writer at a
//! time, so a second claimer sees the first one's leases).

use std::time::Duration;

use time::OffsetDateTime;

use super::writer::Writer;
use crate::rows::{ProcessingRow, UPLOAD_COLUMNS, millis_after, to_millis};
use crate::{LedgerError, ProcessingJob};

pub(super) async fn claim(
    writer: &Writer,
    now: OffsetDateTime,
    lease: Duration,
    limit: u32,
) -> Result<Vec<ProcessingJob>, LedgerError> {
    let now_ms = to_millis(now)?;
    let sql = format!(
        "UPDATE uploads SET process_lease_until = ?, process_attempts = process_attempts + 1 \
         WHERE id IN ( \
             SELECT id FROM uploads \
             WHERE status = 'processing' \
               AND (process_lease_until IS NULL OR process_lease_until <= ?) \
             ORDER BY updated_at, id LIMIT ?) \
         RETURNING {UPLOAD_COLUMNS}, process_attempts"
    );
    let rows = writer
        .write(move |conn| {
            Box::pin(async move {
                let rows = sqlx::query_as::<_, ProcessingRow>(&sql)
                    .bind(millis_after(now_ms, lease))
                    .bind(now_ms)
                    .bind(i64::from(limit))
                    .fetch_all(conn)
                    .await?;
                Ok(rows)
            })
        })
        .await?;
    rows.into_iter().map(ProcessingRow::into_job).collect()
}
