//! Background work every `latchkey serve` runs: webhook delivery from the
//! outbox and the reconciler. Both are safe to run on many instances at once:
//! webhook events are claimed with a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), and a reconciler pass runs only under the ledger lease named
//! `reconciler`.

pub mod media;
pub mod reconciler;
pub mod sweep;
pub mod webhooks;

/// The name this instance holds leases under. It is derived from the host
/// and the data dir, not drawn at random, so an instance restarted after a
/// crash picks up its own leases at once instead of waiting for them to
/// lapse; two instances (other hosts, or other data dirs) never share it.
pub fn instance_id(data_dir: &std::path::Path) -> String {
    use sha2::Digest;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut h = sha2::Sha256::new();
    h.update(host.trim().as_bytes());
    h.update([0]);
    h.update(dir.to_string_lossy().as_bytes());
    format!("lk-{}", &hex::encode(h.finalize())[..16])
}
