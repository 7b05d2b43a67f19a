//! The parts of attaching that do not depend on the database: what a valid
//! reference is, and what to do given the row as it is.
//!
//! Both backends read the row under a write lock (SQLite's `BEGIN
//! IMMEDIATE`, PostgreSQL's `SELECT … FOR UPDATE`), ask [`decide`], and only
//! then write. Deciding from a locked read rather than from a conditional
//! UPDATE's row count avoids a race on PostgreSQL: a row that was
//! `processing` when the UPDATE ran may be `committed` by the time a
//! follow-up read looks at it.

use latchkey_domain::{Upload, UploadStatus};

use crate::LedgerError;

pub(crate) fn check_ref(attached_ref: &str) -> Result<(), LedgerError> {
    // An empty ref would read back as "attached" yet name nothing, and the
    // unattached sweep would then never delete the upload.
    if attached_ref.is_empty() {
        return Err(LedgerError::Conflict(
            "an attach ref must not be empty".to_owned(),
        ));
    }
    Ok(())
}

// Lives for one `match`; boxing the row would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decision {
    /// Committed and unattached: set the ref and write the event.
    Attach,
    /// Nothing to write; this is the call's result.
    Done(Option<Upload>),
}

/// Not there or not committed is `None`; already attached to the same ref
/// is a repeat and returns the row; another ref is a conflict.
pub(crate) fn decide(row: Option<Upload>, attached_ref: &str) -> Result<Decision, LedgerError> {
    let Some(u) = row.filter(|u| u.status == UploadStatus::Committed) else {
        return Ok(Decision::Done(None));
    };
    match u.attached_ref.as_deref() {
        None => Ok(Decision::Attach),
        Some(r) if r == attached_ref => Ok(Decision::Done(Some(u))),
        Some(_) => Err(LedgerError::Conflict(format!(
            "upload {} is already attached to another record",
            u.id
        ))),
    }
}
