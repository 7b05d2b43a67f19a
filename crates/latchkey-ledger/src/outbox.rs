//! What goes into the outbox when an upload changes state. Shared by every
//! backend so the webhook payload does not depend on the database.

use latchkey_domain::{Upload, UploadStatus};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The event a transition into `status` announces, or `None` for states
/// nobody outside needs to hear about (`processing` is internal; `pending`
/// is never a target).
pub fn event_type_for(status: UploadStatus) -> Option<&'static str> {
    match status {
        UploadStatus::Committed => Some("upload.committed"),
        UploadStatus::Rejected => Some("upload.rejected"),
        UploadStatus::Expired => Some("upload.expired"),
        UploadStatus::Deleted => Some("upload.deleted"),
        UploadStatus::Aborted => Some("upload.aborted"),
        UploadStatus::Pending | UploadStatus::Processing => None,
    }
}

/// The webhook payload for an upload as it is after the transition. It is
/// deliberately small and stable: no filename, metadata or idempotency key,
/// which are the client's and need not leave the broker.
pub fn event_payload(u: &Upload) -> Value {
    json!({
        "id": u.id.to_string(),
        "key": u.key.as_str(),
        "user_id": u.user_id.as_str(),
        "profile": u.profile.as_str(),
        "status": u.status.as_str(),
        "size": u.size,
        "content_type": u.content_type.as_str(),
        "sha256": u.sha256.map(|d| d.to_hex()),
        "etag": u.etag,
        "created_at": rfc3339(u.created_at),
        "committed_at": u.committed_at.map(rfc3339),
    })
}

/// The event [`set_attached`](crate::UploadRepo::set_attached) writes the
/// first time an upload is attached.
pub const ATTACHED_EVENT: &str = "upload.attached";

/// The payload of an [`ATTACHED_EVENT`]: the usual one plus the reference
/// the app attached the upload to, which is the app's own and is what its
/// webhook handler needs to match the event to its record.
pub fn attached_payload(u: &Upload) -> Value {
    let mut payload = event_payload(u);
    payload["attached_ref"] = json!(u.attached_ref);
    payload
}

/// The longest `last_error` the outbox keeps. A failing endpoint may answer
/// with a whole HTML page; the first kilobyte says what went wrong.
const MAX_ERROR_CHARS: usize = 1000;

pub(crate) fn clip_error(e: &str) -> String {
    e.chars().take(MAX_ERROR_CHARS).collect()
}

fn rfc3339(t: OffsetDateTime) -> String {
    // RFC 3339 has no negative years; no real upload is that old, and unix
    // seconds beat losing the event.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
