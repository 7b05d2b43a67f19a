//! Request and response bodies of the v1 API. Requests reject unknown
//! fields, so a typo in a client is an error rather than a silent default.

use std::collections::BTreeMap;

use latchkey_domain::Upload;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::broker::Grant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadRequest {
    pub profile: Option<String>,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub mode: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub profile: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    pub variant: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct UploadView {
    pub id: String,
    pub key: String,
    pub profile: String,
    pub mode: String,
    pub status: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub etag: Option<String>,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub attached_ref: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub committed_at: Option<OffsetDateTime>,
}

impl From<&Upload> for UploadView {
    fn from(u: &Upload) -> Self {
        Self {
            id: u.id.to_string(),
            key: u.key.to_string(),
            profile: u.profile.to_string(),
            mode: u.mode.to_string(),
            status: u.status.to_string(),
            filename: u.filename.clone(),
            content_type: u.content_type.to_string(),
            size: u.size,
            sha256: u.sha256.map(|d| d.to_hex()),
            etag: u.etag.clone(),
            reason: u.reason.clone(),
            metadata: u.metadata.clone(),
            attached_ref: u.attached_ref.clone(),
            created_at: u.created_at,
            expires_at: u.expires_at,
            updated_at: u.updated_at,
            committed_at: u.committed_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct GrantView {
    pub method: &'static str,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl From<Grant> for GrantView {
    fn from(g: Grant) -> Self {
        Self {
            method: g.method,
            url: g.url,
            headers: g.headers.into_iter().collect(),
            expires_at: g.expires_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CreatedUpload {
    #[serde(flatten)]
    pub upload: UploadView,
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
    pub grant: GrantView,
}

#[derive(Debug, Serialize)]
pub struct UploadList {
    pub items: Vec<UploadView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DownloadView {
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Serialize)]
pub struct TimeView {
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
}
