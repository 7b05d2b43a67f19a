//! Background work every `latchkey serve` runs: webhook delivery from the
//! outbox and the reconciler. Both are safe to run on many instances at once:
//! webhook events are claimed with a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), and a reconciler pass runs only under the ledger lease named
//! `reconciler`.

pub mod reconciler;
pub mod sweep;
pub mod webhooks;

use rand::RngCore;

/// A random name for this process, used as the holder of leases.
pub fn instance_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    format!("lk-{}", hex::encode(b))
}
