//! Request and response bodies of the v1 API. Requests reject unknown
//! fields, so a typo in a client is an error rather than a silent default.

use std::collections::BTreeMap;

use latchkey_domain::Upload;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::broker::{CredentialsGrant, Grant, PartUrl};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadRequest {
    /// A configured profile; the default profile when absent.
    #[schema(example = "photo")]
    pub profile: Option<String>,
    /// The client's name for the file: kept as metadata, never used in the key.
    #[schema(example = "beach.jpg")]
    pub filename: String,
    #[schema(example = "image/jpeg")]
    pub content_type: String,
    /// Exact size in bytes; the grant only accepts this many.
    pub size: u64,
    /// Hex SHA-256 of the bytes; when given, the store checks it.
    pub sha256: Option<String>,
    /// `put` (the default) is the only mode available so far.
    #[schema(example = "put")]
    pub mode: Option<String>,
    /// Up to 16 entries, 2 KiB in all; keys are `[A-Za-z0-9_-]{1,64}`.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// The optional body of `complete`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// Multipart only: every part with the ETag the store answered its PUT
    /// with. When given, the broker checks them against the store's list.
    pub parts: Option<Vec<CompletePart>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletePart {
    pub number: u32,
    pub etag: String,
}

/// The body of `POST /v1/uploads/{id}/parts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartNumbersRequest {
    /// Part numbers, 1 to the grant's `part_count`; at most 1000.
    pub numbers: Vec<u32>,
}

/// Presigned URLs for the parts asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartUrlList {
    pub parts: Vec<PartView>,
}

/// A part the store holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredPartView {
    pub number: u32,
    pub size: u64,
    pub etag: String,
}

/// The parts the store holds for a pending multipart upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredPartList {
    /// The upload's layout, as in its grant: every part but the last has
    /// `part_size` bytes.
    pub part_size: u64,
    pub part_count: u32,
    pub parts: Vec<StoredPartView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only uploads in this state (`pending`, `committed`, …).
    pub status: Option<String>,
    /// Only uploads of this profile.
    pub profile: Option<String>,
    /// Page size, 1 to the configured maximum; 50 when absent.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// `original` (the default) is the only variant so far.
    pub variant: Option<String>,
}

/// An upload as the ledger holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    /// A UUIDv7: time-ordered, not guessable.
    pub id: String,
    /// The object's key in the bucket, rendered from the profile's template.
    pub key: String,
    pub profile: String,
    pub mode: String,
    /// `pending`, `committed`, `processing`, `rejected`, `expired`,
    /// `aborted` or `deleted`.
    #[schema(example = "pending")]
    pub status: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 the client declared, if any.
    #[schema(required = true)]
    pub sha256: Option<String>,
    /// The store's ETag once committed.
    #[schema(required = true)]
    pub etag: Option<String>,
    /// Why a rejected upload was rejected (a problem code).
    #[schema(required = true)]
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The app's record this upload was attached to.
    #[schema(required = true)]
    pub attached_ref: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When a pending upload's grant stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub committed_at: Option<OffsetDateTime>,
    /// Processed photos (profiles with `process = "image"`): the upright
    /// width and height of the clean original.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A ThumbHash placeholder (base64) to show while the image loads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbhash: Option<String>,
    /// Variants to download with `?variant=<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<VariantView>>,
}

/// One variant of a processed photo.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantView {
    /// `thumb`, `medium`, or a profile's own.
    pub name: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
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
            width: u.media.as_ref().map(|m| m.width),
            height: u.media.as_ref().map(|m| m.height),
            thumbhash: u.media.as_ref().map(|m| m.thumbhash.clone()),
            variants: u.media.as_ref().map(|m| {
                m.variants
                    .iter()
                    .map(|v| VariantView {
                        name: v.name.clone(),
                        content_type: v.content_type.clone(),
                        width: v.width,
                        height: v.height,
                    })
                    .collect()
            }),
        }
    }
}

/// How the client sends its bytes. Which members are present depends on the
/// mode: `url` + `headers` (put, headers, proxy), `url` + `fields` (post),
/// `multipart`, or `credentials`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    #[schema(value_type = String, example = "PUT")]
    pub method: &'static str,
    /// Where to send the request (presigned for put; the form action for post).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Headers to send unchanged: they are part of the signature.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Form fields to send before the file field (post).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub fields: BTreeMap<latchkey_sigv4::FieldName, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsView>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// The multipart upload the broker created, and URLs for its first parts.
#[derive(Debug, Serialize, ToSchema)]
pub struct MultipartView {
    pub part_size: u64,
    pub part_count: u32,
    pub parts: Vec<PartView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartView {
    pub number: u32,
    pub url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Temporary credentials that can only write under `prefix`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialsView {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expiration: OffsetDateTime,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
}

impl From<PartUrl> for PartView {
    fn from(p: PartUrl) -> Self {
        Self {
            number: p.number,
            url: p.url,
            headers: p.headers.into_iter().collect(),
        }
    }
}

impl From<CredentialsGrant> for CredentialsView {
    fn from(c: CredentialsGrant) -> Self {
        Self {
            access_key_id: c.access_key_id,
            // The one place these leave the broker: to their owner.
            secret_access_key: c.secret_access_key.expose().to_owned(),
            session_token: c.session_token.expose().to_owned(),
            expiration: c.expiration,
            endpoint: c.endpoint,
            region: c.region,
            bucket: c.bucket,
            prefix: c.prefix,
        }
    }
}

impl From<Grant> for GrantView {
    fn from(g: Grant) -> Self {
        Self {
            method: g.method,
            url: g.url,
            headers: g.headers.into_iter().collect(),
            fields: g.fields.into_iter().collect(),
            multipart: g.multipart.map(|m| MultipartView {
                part_size: m.part_size,
                part_count: m.part_count,
                parts: m.parts.into_iter().map(PartView::from).collect(),
            }),
            credentials: g.credentials.map(CredentialsView::from),
            expires_at: g.expires_at,
        }
    }
}

/// The new (or, for a repeated `Idempotency-Key`, the existing) upload and
/// its grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUpload {
    #[serde(flatten)]
    pub upload: UploadView,
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
    pub grant: GrantView,
}

/// One page of the caller's uploads, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadList {
    pub items: Vec<UploadView>,
    /// Pass as `cursor` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A presigned GET for a committed upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct DownloadView {
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The broker's clock, for clients whose own clock is off.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeView {
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
}
