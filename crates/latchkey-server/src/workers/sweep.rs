//! The orphan sweep (invariant I1): every object under a managed prefix
//! belongs to a live upload. Objects whose upload is gone or final
//! (aborted, expired, rejected, deleted), staging copies of committed
//! uploads, quarantined bytes and variants whose upload is gone or final
//! (see `ObjectKey::derived_base`), and objects with no row at all are deleted once they are older
//! than `orphan_grace` — the grace covers uploads whose row is being written
//! and objects a store event is about to commit.
//!
//! Each pass lists at most one page per prefix and remembers where it
//! stopped, so a bucket of any size is covered over several passes at a
//! bounded cost each.

use std::collections::BTreeSet;
use std::time::Duration;

use latchkey_api::AppState;
use latchkey_domain::{ObjectKey, UploadStatus};
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// Keys listed per prefix per pass.
const PAGE: u32 = 500;

/// Where the sweep stopped, per managed prefix.
#[derive(Default)]
pub struct SweepCursor {
    next: std::collections::BTreeMap<String, String>,
}

/// The static beginning of each profile's key template (`u/` for
/// `u/{user}/{profile}/{id}{ext}`): everything under it is latchkey's.
pub fn managed_prefixes(state: &AppState) -> BTreeSet<String> {
    state
        .profiles
        .values()
        .map(|p| {
            let t = p.key_template.as_str();
            t[..t.find('{').unwrap_or(t.len())].to_owned()
        })
        .collect()
}

/// Whether the object at `key` should be deleted.
async fn is_orphan(state: &AppState, key: &str) -> anyhow::Result<bool> {
    if let Some(row) = state
        .ledger
        .find_by_key(&ObjectKey::from_trusted(key))
        .await?
    {
        return Ok(matches!(
            row.status,
            UploadStatus::Aborted
                | UploadStatus::Expired
                | UploadStatus::Rejected
                | UploadStatus::Deleted
        ));
    }
    if let Some(base) = ObjectKey::derived_base(key)
        && let Some(row) = state
            .ledger
            .find_by_key(&ObjectKey::from_trusted(base))
            .await?
    {
        return Ok(if key.ends_with(".upload") {
            // A staging copy is needed only while its upload is pending.
            row.status != UploadStatus::Pending
        } else if key.ends_with(".quarantine") {
            // Quarantined bytes wait for verification and the pipeline.
            !matches!(row.status, UploadStatus::Pending | UploadStatus::Processing)
        } else {
            // A variant lives as long as its processed upload.
            !matches!(
                row.status,
                UploadStatus::Processing | UploadStatus::Committed
            )
        });
    }
    // No row at all. (Objects a `credentials` grant wrote are given rows by
    // adoption as they arrive; the grace period covers the gap.)
    Ok(true)
}

/// One bounded step of the sweep; returns how many objects were removed.
pub async fn sweep(
    state: &AppState,
    cursor: &Mutex<SweepCursor>,
    orphan_grace: Duration,
) -> anyhow::Result<usize> {
    let cutoff = OffsetDateTime::now_utc() - orphan_grace;
    let mut cursor = cursor.lock().await;
    let mut removed = 0;
    for prefix in managed_prefixes(state) {
        let from = cursor.next.get(&prefix).cloned();
        let page = state.store.list(&prefix, from.as_deref(), PAGE).await?;
        let mut orphans = Vec::new();
        for obj in &page.objects {
            let old_enough = obj.last_modified.is_some_and(|t| t < cutoff);
            if old_enough && is_orphan(state, &obj.key).await? {
                tracing::info!(key = %obj.key, "removing an object no live upload owns");
                orphans.push(ObjectKey::from_trusted(obj.key.clone()));
            }
        }
        // One DeleteObjects for the page (PAGE ≤ the 1000-key limit) rather
        // than a round trip per object. If it fails the cursor stays put,
        // so the page is looked at again next pass.
        state.store.delete_many(&orphans).await?;
        removed += orphans.len();
        match page.next {
            Some(next) => cursor.next.insert(prefix, next),
            None => cursor.next.remove(&prefix),
        };
    }
    Ok(removed)
}

/// Multipart uploads looked at per prefix per pass.
const MULTIPART_PAGE: u32 = 200;

/// Aborts multipart uploads that no pending upload owns and that are older
/// than `orphan_grace`: left by a broker that crashed mid-stream (a proxied
/// upload's parts), or by clients outside any grant. Rows that own one
/// abort it themselves when they expire.
pub async fn sweep_multipart(state: &AppState, orphan_grace: Duration) -> anyhow::Result<usize> {
    let cutoff = OffsetDateTime::now_utc() - orphan_grace;
    let mut aborted = 0;
    for prefix in managed_prefixes(state) {
        for open in state
            .store
            .list_multipart_uploads(&prefix, MULTIPART_PAGE)
            .await?
        {
            // Too young (or of unknown age) to be abandoned.
            if open.initiated.is_none_or(|t| t >= cutoff) {
                continue;
            }
            if owned_by_pending(state, &open.key).await? {
                continue;
            }
            tracing::info!(key = %open.key, "aborting a multipart upload no pending upload owns");
            let key = ObjectKey::from_trusted(open.key.clone());
            state.store.abort_multipart(&key, &open.upload_id).await?;
            aborted += 1;
        }
    }
    Ok(aborted)
}

/// Whether a pending upload writes to `key` (its own key, or a key derived
/// from it: staging, quarantine).
async fn owned_by_pending(state: &AppState, key: &str) -> anyhow::Result<bool> {
    if let Some(row) = state
        .ledger
        .find_by_key(&ObjectKey::from_trusted(key))
        .await?
    {
        return Ok(row.status == UploadStatus::Pending);
    }
    if let Some(base) = ObjectKey::derived_base(key)
        && let Some(row) = state
            .ledger
            .find_by_key(&ObjectKey::from_trusted(base))
            .await?
    {
        return Ok(row.status == UploadStatus::Pending);
    }
    Ok(false)
}
