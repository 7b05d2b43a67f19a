//! One writer per tus upload. Within an instance an in-process set of the
//! uploads being written says who is first; across instances a ledger
//! lease `tus:<id>` does. The lease is short and renewed while the body
//! streams, so a writer that dies (a crashed instance, a dropped
//! connection) holds it for at most [`LEASE_TTL`]; a writer whose future is
//! dropped releases it at once from `Drop`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use latchkey_domain::UploadId;
use latchkey_ledger::UploadRepo;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a writer holds the lease without renewing it.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often a streaming writer renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The uploads this instance is writing now.
#[derive(Default)]
pub struct Writers(Mutex<HashSet<UploadId>>);

impl Writers {
    fn claim(&self, id: UploadId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id)
    }

    fn free(&self, id: UploadId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// The right to write one upload, held until dropped.
pub struct WriteLock {
    writers: Arc<Writers>,
    ledger: Arc<dyn UploadRepo>,
    id: UploadId,
    name: String,
    /// Unique per acquisition, so releasing a stale lock never frees the
    /// lease of a later writer on the same instance.
    holder: String,
    renewed: Instant,
    released: bool,
}

fn locked() -> ApiError {
    ApiError::Locked("another request is writing to this upload; retry shortly".into())
}

impl WriteLock {
    pub async fn acquire(state: &AppState, id: UploadId) -> Result<WriteLock, ApiError> {
        let writers = state.tus.writers.clone();
        if !writers.claim(id) {
            return Err(locked());
        }
        let mut lock = WriteLock {
            writers,
            ledger: state.ledger.clone(),
            id,
            name: format!("tus:{id}"),
            holder: format!("{}:{}", state.tus.instance, UploadId::new()),
            renewed: Instant::now(),
            released: false,
        };
        let got = state
            .ledger
            .try_lease(
                &lock.name,
                &lock.holder,
                OffsetDateTime::now_utc(),
                LEASE_TTL,
            )
            .await;
        match got {
            Ok(true) => Ok(lock),
            Ok(false) => {
                lock.released = true;
                Err(locked())
            }
            Err(e) => {
                lock.released = true;
                Err(e.into())
            }
        }
    }

    /// Renews the lease when it is due; cheap to call for every chunk.
    pub async fn renew(&mut self) -> Result<(), ApiError> {
        if self.renewed.elapsed() < RENEW_EVERY {
            return Ok(());
        }
        let kept = self
            .ledger
            .try_lease(
                &self.name,
                &self.holder,
                OffsetDateTime::now_utc(),
                LEASE_TTL,
            )
            .await?;
        if !kept {
            // Stalled past the lease: someone else writes now.
            self.released = true;
            return Err(locked());
        }
        self.renewed = Instant::now();
        Ok(())
    }

    pub async fn release(mut self) {
        self.released = true;
        if let Err(e) = self.ledger.release_lease(&self.name, &self.holder).await {
            tracing::warn!(upload = %self.id, error = %e, "releasing a tus lease failed; it expires on its own");
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        self.writers.free(self.id);
        if self.released {
            return;
        }
        // Dropped mid-request (the client went away): free the lease now
        // rather than after its TTL, when a runtime is there to do it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (ledger, name, holder) = (
                self.ledger.clone(),
                std::mem::take(&mut self.name),
                std::mem::take(&mut self.holder),
            );
            rt.spawn(async move {
                let _ = ledger.release_lease(&name, &holder).await;
            });
        }
    }
}
