//! Uppy's three backend contracts (`@uppy/aws-s3` 6.x; DESIGN §5) over the
//! same ledger as everything else.
//!
//! - Companion routes (`companionEndpoint`): the browser sends plain
//!   `fetch` calls without headers, so it authenticates with a short-lived
//!   *upload token* in the path (`/uppy/{token}/s3/…`), minted here for one
//!   user (and optionally one profile) by an authenticated call.
//! - `signRequest`: one S3 request signed at a time, only for keys of the
//!   caller's own pending uploads and only the operations an upload needs.
//! - `getCredentials`: the `credentials` mode's temporary credentials.
//!
//! Uppy's own upload id is our row id, never the store's: the client can
//! only name rows it owns, and the store's multipart upload id stays with
//! the broker. Uppy chooses its part size itself (5 MiB for most files), so
//! Uppy's multipart parts are not signed with a length: completing checks
//! that the parts are contiguous and add up to the declared size before the
//! store assembles them, and the one commit path then verifies the object.
//!
//! Uppy's Companion client does not send the file size, and every ledger
//! row declares one (the grant signs it, the quota reserves it): the size
//! comes as `metadata[size]`, which an app adds with one line
//! (`onBeforeFileAdded: (f) => ({ ...f, meta: { ...f.meta, size: f.size } })`).

use std::collections::BTreeMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_domain::{Mode, ObjectKey, Secret, Upload, UploadId, UploadStatus, UserId};
use latchkey_store::Part;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use time::OffsetDateTime;

use super::grant::{Grant, upload_target};
use super::{NewUpload, commit_upload, create_upload, get_owned};
use crate::error::ApiError;
use crate::state::AppState;

/// How long an upload token lets a page call the Companion routes.
pub const TOKEN_TTL: Duration = Duration::from_secs(30 * 60);
/// The longest a dev sign-in token lives.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Metadata keys Uppy always sends (or that steer latchkey): not stored.
const RESERVED_META: [&str; 5] = ["name", "type", "size", "profile", "relativePath"];

/// What the Uppy routes need beyond the rest of the state.
#[derive(Clone)]
pub struct UppySettings {
    /// Signs upload tokens. Derived from the store secret, so every broker
    /// instance sharing a store accepts the others' tokens; never used for
    /// anything else.
    token_key: Secret,
    /// Dev mode only (no `auth.jwt_secret`, no JWKS): the secret that signs
    /// user tokens, so the demo page can sign in as a dev user.
    dev_secret: Option<Secret>,
}

impl UppySettings {
    pub fn new(store_secret: &Secret, dev_secret: Option<Secret>) -> Self {
        let mut h = sha2::Sha256::new();
        h.update(b"latchkey/uppy-upload-token/v1\0");
        h.update(store_secret.expose().as_bytes());
        Self {
            token_key: Secret::new(hex::encode(h.finalize())),
            dev_secret,
        }
    }

    /// The dev secret, when the broker runs in dev mode.
    pub fn dev_secret(&self) -> Option<&Secret> {
        self.dev_secret.as_ref()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenClaims {
    sub: String,
    exp: u64,
    /// Always `uppy`: a token for nothing else.
    typ: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
}

/// Who an upload token speaks for.
#[derive(Clone, Debug)]
pub struct UploadToken {
    pub user: UserId,
    /// When set, the token only creates uploads in this profile.
    pub profile: Option<String>,
}

pub fn mint_token(
    state: &AppState,
    user: &UserId,
    profile: Option<&str>,
) -> Result<(String, OffsetDateTime), ApiError> {
    if let Some(p) = profile
        && !state.profiles.contains_key(p)
    {
        return Err(ApiError::UnknownProfile(p.to_owned()));
    }
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns");
    let exp = now + TOKEN_TTL;
    let claims = TokenClaims {
        sub: user.as_str().to_owned(),
        exp: exp.unix_timestamp().max(0) as u64,
        typ: "uppy".into(),
        profile: profile.map(str::to_owned),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(state.uppy.token_key.expose().as_bytes()),
    )
    .map_err(|e| ApiError::Internal(format!("signing upload token: {e}")))?;
    Ok((token, exp))
}

pub fn verify_token(state: &AppState, token: &str) -> Result<UploadToken, ApiError> {
    let bad = |m: &str| ApiError::Unauthorized(m.to_owned());
    if token.len() > 4096 {
        return Err(bad("upload token too large"));
    }
    let mut v = Validation::new(Algorithm::HS256);
    v.set_required_spec_claims(&["exp", "sub"]);
    v.leeway = 5;
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<TokenClaims>(
        token,
        &DecodingKey::from_secret(state.uppy.token_key.expose().as_bytes()),
        &v,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => bad("upload token expired"),
        _ => bad("upload token invalid"),
    })?;
    if data.claims.typ != "uppy" {
        return Err(bad("not an upload token"));
    }
    let user = UserId::parse(&data.claims.sub).map_err(|_| bad("upload token invalid"))?;
    Ok(UploadToken {
        user,
        profile: data.claims.profile,
    })
}

/// A file as Uppy describes it: the requested name, its type, and the
/// metadata Uppy forwards (all of the file's `meta`).
pub struct UppyFile {
    pub filename: String,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
}

/// Creates the ledger row (with its grant) for an Uppy file in `mode`.
pub async fn create(
    state: &AppState,
    caller: &UploadToken,
    file: UppyFile,
    mode: Mode,
) -> Result<(Upload, Grant), ApiError> {
    let asked = file.metadata.get("profile").filter(|p| !p.is_empty());
    let profile = match (&caller.profile, asked) {
        (Some(scoped), Some(asked)) if scoped != asked => {
            return Err(ApiError::Forbidden(format!(
                "this upload token is for profile {scoped}, not {asked}"
            )));
        }
        (Some(scoped), _) => Some(scoped.clone()),
        (None, asked) => asked.cloned(),
    };
    let size = file
        .metadata
        .get("size")
        .ok_or_else(|| {
            ApiError::InvalidRequest(
                "the file size is missing: add it to the file's metadata as `size` \
                 (onBeforeFileAdded: (f) => ({ ...f, meta: { ...f.meta, size: f.size } }))"
                    .into(),
            )
        })?
        .trim()
        .parse::<u64>()
        .map_err(|_| ApiError::InvalidRequest("metadata size must be a byte count".into()))?;
    // Uppy forwards every meta field; keep the app's own ones that fit the
    // ledger's metadata rules, drop Uppy's bookkeeping.
    let metadata = file
        .metadata
        .into_iter()
        .filter(|(k, v)| {
            !RESERVED_META.contains(&k.as_str())
                && !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && v != "null"
        })
        .collect();
    let content_type = if file.content_type.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        file.content_type
    };
    create_upload(
        state,
        &caller.user,
        NewUpload {
            profile,
            filename: file.filename,
            content_type,
            size,
            sha256: None,
            mode: Some(mode.to_string()),
            metadata,
            idempotency_key: None,
        },
    )
    .await
}

/// The caller's pending upload that Uppy names by `upload_id` (our row id)
/// and `key` (what we answered when it was created). Anything else — another
/// user's row, another key — is not found.
pub async fn owned(
    state: &AppState,
    user: &UserId,
    upload_id: &str,
    key: Option<&str>,
) -> Result<Upload, ApiError> {
    let upload = get_owned(state, user, upload_id).await?;
    if let Some(key) = key
        && key != upload.key.as_str()
    {
        return Err(ApiError::NotFound);
    }
    Ok(upload)
}

fn live_multipart(upload: &Upload) -> Result<&str, ApiError> {
    if upload.mode != Mode::Multipart {
        return Err(ApiError::InvalidState(format!(
            "upload {} is a {} upload, not multipart",
            upload.id, upload.mode
        )));
    }
    if upload.status != UploadStatus::Pending {
        return Err(ApiError::InvalidState(format!(
            "the upload is {}",
            upload.status
        )));
    }
    if OffsetDateTime::now_utc() >= upload.expires_at {
        return Err(ApiError::Expired("the grant has expired".into()));
    }
    upload
        .store_upload_id
        .as_deref()
        .ok_or_else(|| ApiError::Internal(format!("upload {} has no store upload id", upload.id)))
}

/// Seconds the upload's grant still runs.
pub fn remaining_secs(upload: &Upload) -> u64 {
    (upload.expires_at - OffsetDateTime::now_utc())
        .whole_seconds()
        .max(1) as u64
}

/// Presigned `UploadPart` URLs. Uppy picks its own part size, so no length
/// is signed; `complete` checks the total (see the module header).
pub fn part_urls(
    state: &AppState,
    upload: &Upload,
    numbers: &[u32],
) -> Result<Vec<(u32, String)>, ApiError> {
    let store_id = live_multipart(upload)?;
    if numbers.is_empty() || numbers.len() > 1000 {
        return Err(ApiError::InvalidRequest(
            "ask for 1 to 1000 part numbers".into(),
        ));
    }
    if let Some(bad) = numbers.iter().find(|n| !(1..=10_000).contains(*n)) {
        return Err(ApiError::InvalidRequest(format!(
            "part number {bad} is not between 1 and 10000"
        )));
    }
    let url = state
        .endpoint
        .object_url(upload_target(state, upload).as_str());
    let ttl = (upload.expires_at - upload.created_at)
        .whole_seconds()
        .max(1) as u64;
    numbers
        .iter()
        .map(|&n| {
            let number = n.to_string();
            let signed = state
                .signer
                .presign(
                    "PUT",
                    &url,
                    &[],
                    &[("partNumber", number.as_str()), ("uploadId", store_id)],
                    ttl,
                    upload.created_at,
                )
                .map_err(|e| ApiError::Internal(format!("presign: {e}")))?;
            Ok((n, signed))
        })
        .collect()
}

/// A presigned `ListParts` for the store's upload (the `signRequest` client
/// reads the store's XML itself).
pub fn list_parts_url(state: &AppState, upload: &Upload) -> Result<String, ApiError> {
    let store_id = live_multipart(upload)?;
    let url = state
        .endpoint
        .object_url(upload_target(state, upload).as_str());
    state
        .signer
        .presign(
            "GET",
            &url,
            &[],
            &[("uploadId", store_id)],
            remaining_secs(upload).min(3600),
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| ApiError::Internal(format!("presign: {e}")))
}

/// The parts the store holds for the upload.
pub async fn stored_parts(state: &AppState, upload: &Upload) -> Result<Vec<Part>, ApiError> {
    let store_id = live_multipart(upload)?;
    let target = upload_target(state, upload);
    state
        .store
        .list_parts(&target, store_id)
        .await?
        .ok_or_else(|| ApiError::InvalidState("the store no longer holds this upload".into()))
}

fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

/// Checks the client's part list against what the store holds — parts
/// 1..=n, each once, with the store's ETags, adding up to the declared
/// size — and answers the parts to assemble.
pub fn check_parts(
    upload: &Upload,
    held: &[Part],
    client: &[(u32, String)],
) -> Result<Vec<Part>, ApiError> {
    let mut sorted: Vec<&(u32, String)> = client.iter().collect();
    sorted.sort_by_key(|(n, _)| *n);
    if sorted.is_empty()
        || sorted
            .iter()
            .enumerate()
            .any(|(i, (n, _))| *n as usize != i + 1)
    {
        return Err(ApiError::PartsIncomplete(
            "the part list must name parts 1 to n, each once".into(),
        ));
    }
    let mut chosen = Vec::with_capacity(sorted.len());
    for (n, etag) in sorted {
        let part = held
            .iter()
            .find(|p| p.number == *n)
            .ok_or_else(|| ApiError::PartsIncomplete(format!("part {n} is not in the store")))?;
        if !same_etag(&part.etag, etag) {
            return Err(ApiError::PartsIncomplete(format!(
                "part {n} has another ETag in the store"
            )));
        }
        chosen.push(part.clone());
    }
    let total: u64 = chosen.iter().map(|p| p.size).sum();
    if total != upload.size {
        return Err(ApiError::SizeMismatch(format!(
            "the parts hold {total} bytes; the upload declared {}",
            upload.size
        )));
    }
    Ok(chosen)
}

/// Completes an Uppy multipart upload from the client's part list and
/// commits it through the one commit path. Repeating it after success
/// answers the row as it stands.
pub async fn complete(
    state: &AppState,
    upload: Upload,
    client: &[(u32, String)],
) -> Result<Upload, ApiError> {
    if upload.mode == Mode::Multipart && upload.status == UploadStatus::Pending {
        let store_id = live_multipart(&upload)?.to_owned();
        let target = upload_target(state, &upload);
        if let Some(held) = state.store.list_parts(&target, &store_id).await? {
            let chosen = check_parts(&upload, &held, client)?;
            state
                .store
                .complete_multipart(&target, &store_id, &chosen)
                .await?;
        }
    }
    commit_upload(state, upload).await
}

/// Aborts an Uppy upload: the store's multipart upload and the row.
pub async fn abort(state: &AppState, user: &UserId, upload: &Upload) -> Result<(), ApiError> {
    if upload.status == UploadStatus::Pending {
        super::delete(state, user, &upload.id.to_string()).await?;
    }
    Ok(())
}

/// One request a `signRequest` client wants signed.
#[derive(Clone, Debug)]
pub struct SignRequest {
    pub method: String,
    pub key: String,
    pub upload_id: Option<String>,
    pub part_number: Option<u32>,
}

/// What the client sends instead: a URL with headers or form fields; `Local`
/// means a broker route (the caller's token goes into its path).
pub enum Signed {
    Store {
        url: String,
        headers: Vec<(String, String)>,
        fields: Vec<(latchkey_sigv4::FieldName, String)>,
    },
    Local {
        upload: UploadId,
        action: LocalAction,
    },
}

pub enum LocalAction {
    /// Answers the store-shaped `InitiateMultipartUploadResult` for the
    /// multipart upload the broker already created.
    Initiate,
    /// Takes the store-shaped `CompleteMultipartUpload`, assembles, commits.
    Complete,
    /// Aborts the upload.
    Abort,
}

/// The caller's pending upload at `key` (its key or its upload target).
async fn upload_at(state: &AppState, user: &UserId, key: &str) -> Result<Upload, ApiError> {
    let not_yours = || ApiError::NotFound;
    let found = match state
        .ledger
        .find_by_key(&ObjectKey::from_trusted(key))
        .await?
    {
        Some(row) => Some(row),
        None => match ObjectKey::derived_base(key) {
            Some(base) => {
                state
                    .ledger
                    .find_by_key(&ObjectKey::from_trusted(base))
                    .await?
            }
            None => None,
        },
    };
    let upload = found.filter(|u| &u.user_id == user).ok_or_else(not_yours)?;
    if upload.status != UploadStatus::Pending {
        return Err(ApiError::InvalidState(format!(
            "the upload is {}",
            upload.status
        )));
    }
    if OffsetDateTime::now_utc() >= upload.expires_at {
        return Err(ApiError::Expired("the grant has expired".into()));
    }
    Ok(upload)
}

/// `POST /s3/sign`: signs one S3 request of an upload of the caller's.
pub async fn sign(state: &AppState, user: &UserId, req: &SignRequest) -> Result<Signed, ApiError> {
    let upload = upload_at(state, user, &req.key).await?;
    let method = req.method.to_ascii_uppercase();
    let for_row = |id: &str| -> Result<(), ApiError> {
        if id == upload.id.to_string() {
            Ok(())
        } else {
            Err(ApiError::NotFound)
        }
    };
    match (method.as_str(), &req.upload_id, req.part_number) {
        // A single-request upload: the row's own grant.
        ("PUT", None, None) => {
            if upload.mode == Mode::Multipart {
                return Err(ApiError::InvalidState(
                    "this is a multipart upload: upload it in parts".into(),
                ));
            }
            let grant = super::grant_for(state, &upload).await?;
            if !matches!(grant.method, "PUT" | "POST") {
                return Err(ApiError::InvalidState(format!(
                    "a {} upload is not sent as one request",
                    upload.mode
                )));
            }
            Ok(Signed::Store {
                url: grant.url,
                // Browsers set Content-Length themselves and refuse it.
                headers: grant
                    .headers
                    .into_iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length"))
                    .collect(),
                fields: grant.fields,
            })
        }
        ("POST", None, None) => {
            live_multipart(&upload)?;
            Ok(Signed::Local {
                upload: upload.id,
                action: LocalAction::Initiate,
            })
        }
        ("PUT", Some(id), Some(n)) => {
            for_row(id)?;
            let (_, url) = part_urls(state, &upload, &[n])?.remove(0);
            Ok(Signed::Store {
                url,
                headers: Vec::new(),
                fields: Vec::new(),
            })
        }
        ("GET", Some(id), None) => {
            for_row(id)?;
            Ok(Signed::Store {
                url: list_parts_url(state, &upload)?,
                headers: Vec::new(),
                fields: Vec::new(),
            })
        }
        ("POST", Some(id), None) => {
            for_row(id)?;
            live_multipart(&upload)?;
            Ok(Signed::Local {
                upload: upload.id,
                action: LocalAction::Complete,
            })
        }
        ("DELETE", Some(id), None) => {
            for_row(id)?;
            Ok(Signed::Local {
                upload: upload.id,
                action: LocalAction::Abort,
            })
        }
        _ => Err(ApiError::Forbidden(format!(
            "{method} is not a request an upload needs"
        ))),
    }
}

/// Parses S3's `CompleteMultipartUpload` XML body: `(PartNumber, ETag)`.
pub fn parse_complete_xml(body: &str) -> Result<Vec<(u32, String)>, ApiError> {
    let bad = || ApiError::InvalidRequest("malformed CompleteMultipartUpload body".into());
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<Part>") {
        let end = rest[start..].find("</Part>").ok_or_else(bad)? + start;
        let part = &rest[start + 6..end];
        let field = |name: &str| -> Option<String> {
            let open = format!("<{name}>");
            let close = format!("</{name}>");
            let a = part.find(&open)? + open.len();
            let b = part[a..].find(&close)? + a;
            Some(
                part[a..b]
                    .trim()
                    .replace("&quot;", "\"")
                    .replace("&#34;", "\""),
            )
        };
        let number = field("PartNumber")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(bad)?;
        let etag = field("ETag").ok_or_else(bad)?;
        parts.push((number, etag));
        rest = &rest[end + 7..];
        if parts.len() > 10_000 {
            return Err(bad());
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts)
}

/// Escapes text for an XML element.
pub fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uppy_complete_bodies() {
        let body = "<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>\"b\"</ETag></Part>\
                    <Part><PartNumber>1</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>";
        assert_eq!(
            parse_complete_xml(body).unwrap(),
            vec![(2, "\"b\"".to_owned()), (1, "a".to_owned())]
        );
        assert!(parse_complete_xml("<CompleteMultipartUpload/>").is_err());
        assert!(parse_complete_xml("<Part><PartNumber>x</PartNumber></Part>").is_err());
    }
}
