//! The reconciler: the third commit path (DESIGN §4). It looks at pending
//! rows whose grant expired, commits those whose object arrived and is
//! valid (the app crashed between its PUT and its complete), and expires the
//! rest, removing whatever bytes they left. One pass at a time across all
//! instances, under the ledger lease `reconciler`.

use std::sync::Arc;
use std::time::Duration;

use latchkey_api::broker::{commit_upload, upload_target};
use latchkey_api::{ApiError, AppState};
use latchkey_domain::UploadStatus;
use latchkey_ledger::Changes;

use super::sweep::{SweepCursor, sweep, sweep_multipart};
use time::OffsetDateTime;

/// Rows looked at per pass, so one pass is bounded in cost.
const BATCH: u32 = 200;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub committed: usize,
    pub expired: usize,
    /// Rows left for a later pass (store unavailable, say).
    pub deferred: usize,
    /// Committed uploads deleted because their profile requires attach and
    /// none came within `unattached_ttl`.
    pub unattached: usize,
    /// Objects and open multipart uploads no live upload owned (I1).
    pub orphans: usize,
    /// False when another instance held the lease.
    pub ran: bool,
}

/// The reconciler's settings and the sweep's resume point.
pub struct Reconciler {
    /// How long past its expiry a pending row is left alone, so a client
    /// completing just at the deadline is not raced.
    pub grace: Duration,
    /// How old an object must be before the sweep may remove it.
    pub orphan_grace: Duration,
    pub cursor: tokio::sync::Mutex<SweepCursor>,
}

/// One pass: settle expired pending rows, delete unattached uploads where
/// attach is required, and take one bounded step of the orphan sweep.
pub async fn pass(state: &AppState, holder: &str, r: &Reconciler) -> anyhow::Result<PassReport> {
    let grace = r.grace;
    let now = OffsetDateTime::now_utc();
    // Long enough to cover one bounded pass; short enough that a crashed
    // holder on another host is replaced within moments.
    let lease_ttl = Duration::from_secs(30);
    if !state
        .ledger
        .try_lease("reconciler", holder, now, lease_ttl)
        .await?
    {
        return Ok(PassReport::default());
    }
    let mut report = PassReport {
        ran: true,
        ..PassReport::default()
    };
    let rows = state
        .ledger
        .expired(UploadStatus::Pending, now - grace, BATCH)
        .await?;
    // What expired rows may have left in the store, removed together after
    // the loop (one DeleteObjects for up to BATCH keys). Each key is only
    // added once its row is `expired`, so a concurrent `complete` can no
    // longer commit it; if the delete fails, the orphan sweep removes the
    // bytes of rows in a final state later.
    let mut leftovers = Vec::new();
    for row in rows {
        let id = row.id;
        match commit_upload(state, row.clone()).await {
            Ok(_) => report.committed += 1,
            // A multipart upload missing parts at expiry is as good as no
            // object.
            Err(ApiError::ObjectMissing | ApiError::PartsIncomplete(_)) => {
                let won = state
                    .ledger
                    .transition(
                        id,
                        UploadStatus::Pending,
                        UploadStatus::Expired,
                        &Changes::default(),
                        OffsetDateTime::now_utc(),
                    )
                    .await?;
                if won.is_some() {
                    // Nothing valid arrived in time; a late PUT (if the store
                    // let one through) must not leave bytes behind.
                    leftovers.push(upload_target(state, &row));
                    // And a multipart upload's parts go with it.
                    latchkey_api::broker::modes::unprepare(state, &row).await;
                    report.expired += 1;
                }
            }
            Err(ApiError::StoreUnavailable) => report.deferred += 1,
            // Rejected during verification: commit_upload already moved the
            // row and removed the object.
            Err(
                e @ (ApiError::SizeMismatch(_)
                | ApiError::TypeMismatch(_)
                | ApiError::ChecksumMismatch(_)),
            ) => {
                tracing::info!(upload = %id, code = e.parts().1, "reconciler rejected an upload");
            }
            // Anything else leaves the row for the next pass, loudly.
            Err(e) => {
                tracing::warn!(upload = %id, code = e.parts().1, error = %e, "reconciler could not settle an upload");
                report.deferred += 1;
            }
        }
    }
    state.store.delete_many(&leftovers).await?;
    report.unattached = sweep_unattached(state, now).await?;
    report.orphans = sweep(state, &r.cursor, r.orphan_grace).await?;
    report.orphans += sweep_multipart(state, r.orphan_grace).await?;
    state.ledger.release_lease("reconciler", holder).await?;
    Ok(report)
}

/// Deletes committed uploads of attach-requiring profiles that stayed
/// unattached past the profile's `unattached_ttl`.
async fn sweep_unattached(state: &AppState, now: OffsetDateTime) -> anyhow::Result<usize> {
    let mut deleted = Vec::new();
    for profile in state.profiles.values().filter(|p| p.require_attach) {
        let cutoff = now - profile.unattached_ttl;
        for row in state
            .ledger
            .committed_unattached(&profile.name, cutoff, BATCH)
            .await?
        {
            let changes = Changes {
                reason: Some("unattached".into()),
                ..Changes::default()
            };
            let won = state
                .ledger
                .transition(
                    row.id,
                    UploadStatus::Committed,
                    UploadStatus::Deleted,
                    &changes,
                    now,
                )
                .await?;
            if won.is_some() {
                deleted.push(row.key);
            }
        }
    }
    // The rows are `deleted` already; their objects go in DeleteObjects
    // calls of up to 1000 keys. Should that fail, the orphan sweep removes
    // objects of deleted rows later.
    state.store.delete_many(&deleted).await?;
    Ok(deleted.len())
}

/// Runs passes forever, `every` apart.
pub async fn run(state: Arc<AppState>, holder: String, every: Duration, r: Arc<Reconciler>) {
    loop {
        match pass(&state, &holder, &r).await {
            Ok(p) if p.committed + p.expired + p.deferred + p.unattached + p.orphans > 0 => {
                tracing::info!(
                    committed = p.committed,
                    expired = p.expired,
                    unattached = p.unattached,
                    orphans = p.orphans,
                    deferred = p.deferred,
                    "reconciler pass"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "reconciler pass failed"),
        }
        tokio::time::sleep(every).await;
    }
}
