//! Adoption (DESIGN §4): an object that appeared under a user's prefix with
//! no ledger row — written with `credentials`-mode keys, which cover a prefix
//! rather than one key — gets its row here. The object is checked against
//! its profile like any upload (content type, size bounds, quota); one that
//! passes is committed through the one commit path (`commit_upload`), one
//! that does not is recorded as `rejected` (the reason is its problem code)
//! and deleted. So nothing under a managed prefix escapes the ledger.
//!
//! Only profiles that allow the `credentials` mode adopt: under the others
//! nothing but the broker's own grants can write, and each of those has its
//! row before the bytes arrive. The owner is read back from the key through
//! the profile's key template (`{user}` is an injective encoding, see
//! `UserId::key_segment`).

use std::collections::BTreeMap;

use latchkey_domain::{
    ContentType, KeyTemplate, Mode, ObjectKey, Profile, ProfileName, Upload, UploadId,
    UploadStatus, UserId, sanitize_filename,
};
use latchkey_ledger::{Changes, Inserted, LedgerError, Quota};
use latchkey_sigv4::temporary::key_in_prefix;
use time::OffsetDateTime;

use super::commit_upload;
use super::events::EventOutcome;
use crate::error::ApiError;
use crate::state::AppState;

/// The part of a template before its per-upload placeholders, cut at a `/`
/// (what `KeyTemplate::user_prefix` renders), with `{profile}` filled in.
fn prefix_pattern(template: &KeyTemplate, profile: &str) -> String {
    let t = template.as_str();
    let cut = ["{id}", "{ext}"]
        .iter()
        .filter_map(|p| t.find(p))
        .min()
        .unwrap_or(t.len());
    let head = &t[..cut];
    head[..head.rfind('/').map_or(0, |i| i + 1)].replace("{profile}", profile)
}

/// Whether the template gives each user a prefix of their own, so a
/// credential for that prefix cannot reach another user's objects.
pub fn has_user_prefix(template: &KeyTemplate, profile: &str) -> bool {
    prefix_pattern(template, profile).contains("{user}")
}

/// Inverse of `UserId::key_segment`, for canonical encodings only.
fn decode_segment(seg: &str) -> Option<UserId> {
    let mut bytes = Vec::with_capacity(seg.len());
    let mut it = seg.bytes();
    while let Some(b) = it.next() {
        if b == b'_' {
            let hi = (it.next()? as char).to_digit(16)?;
            let lo = (it.next()? as char).to_digit(16)?;
            bytes.push((hi * 16 + lo) as u8);
        } else {
            bytes.push(b);
        }
    }
    let user = UserId::parse(std::str::from_utf8(&bytes).ok()?).ok()?;
    (user.key_segment() == seg).then_some(user)
}

/// The user whose prefix (in `profile`) holds `key`, if any.
fn owner_in(profile: &Profile, key: &str) -> Option<UserId> {
    let pattern = prefix_pattern(&profile.key_template, profile.name.as_str());
    let (before, after) = pattern.split_once("{user}")?;
    let rest = key.strip_prefix(before)?;
    let run = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        .count();
    // Longest segment first; a template whose `{user}` is followed by a
    // segment character (`{user}-x/`) still finds the one split that fits.
    (1..=run).rev().find_map(|len| {
        let user = decode_segment(&rest[..len])?;
        let prefix = profile
            .key_template
            .user_prefix(&user, profile.name.as_str());
        (rest[len..].starts_with(after.split("{user}").next()?) && key_in_prefix(key, &prefix))
            .then_some(user)
    })
}

/// The profile and user a key belongs to, among profiles that adopt.
fn owner_of<'a>(state: &'a AppState, key: &str) -> Option<(&'a Profile, UserId)> {
    state.profiles.values().find_map(|p| {
        if !p.allows_mode(Mode::Credentials) || !has_user_prefix(&p.key_template, p.name.as_str()) {
            return None;
        }
        owner_in(p, key).map(|u| (p, u))
    })
}

/// Why an object breaks its profile, as a problem code.
fn breaks(
    profile: &Profile,
    content_type: &Option<ContentType>,
    size: u64,
) -> Option<&'static str> {
    match content_type {
        Some(ct) if profile.allows_type(ct) => {}
        _ => return Some("type_not_allowed"),
    }
    if size > profile.max_bytes.0 {
        return Some("too_large");
    }
    if size < profile.min_bytes.0 {
        return Some("too_small");
    }
    None
}

/// What the embedded store's in-process hook does with "`key` was written":
/// commit the pending upload it belongs to (so an app that crashed after its
/// PUT is committed within moments, not at the next reconciler pass), or
/// adopt an object that has no row. The commit is `commit_upload` as always,
/// so it verifies exactly what `complete` would.
pub async fn store_event(state: &AppState, key: &str) -> Result<EventOutcome, ApiError> {
    // A multipart object appears when the broker itself completes the
    // upload, inside that upload's own commit: nothing to add here.
    if let Some(row) = state
        .ledger
        .find_by_key(&ObjectKey::from_trusted(key))
        .await?
        && row.mode == Mode::Multipart
    {
        return Ok(EventOutcome::Ignored);
    }
    super::events::object_created(state, key).await
}

/// Adopts the object at `key` if it lies under a user's prefix in a
/// profile that allows `credentials` and has no row (the caller checked).
pub async fn adopt(state: &AppState, key: &str) -> Result<EventOutcome, ApiError> {
    // Staging, quarantine and variant keys belong to their upload's row.
    if let Some(base) = ObjectKey::derived_base(key)
        && state
            .ledger
            .find_by_key(&ObjectKey::from_trusted(base))
            .await?
            .is_some()
    {
        return Ok(EventOutcome::Ignored);
    }
    let Some((profile, user)) = owner_of(state, key) else {
        return Ok(EventOutcome::Ignored);
    };
    let object_key = ObjectKey::from_trusted(key);
    let Some(meta) = state.store.head(&object_key).await? else {
        return Ok(EventOutcome::Ignored);
    };
    let content_type = meta
        .content_type
        .as_deref()
        .and_then(|ct| ContentType::parse(ct).ok());
    let mut problem = breaks(profile, &content_type, meta.size);
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    let name = key.rsplit('/').next().unwrap_or(key);
    let upload = Upload {
        id: UploadId::new(),
        user_id: user,
        profile: ProfileName::parse(profile.name.as_str()).expect("profile names are validated"),
        mode: Mode::Credentials,
        key: object_key.clone(),
        filename: sanitize_filename(name),
        // A row needs a valid type; a rejected row keeps this placeholder.
        content_type: content_type
            .unwrap_or_else(|| ContentType::parse("application/octet-stream").expect("valid")),
        size: meta.size,
        sha256: meta.sha256,
        status: UploadStatus::Pending,
        etag: None,
        reason: None,
        metadata: BTreeMap::new(),
        idempotency_key: None,
        attached_ref: None,
        created_at: now,
        expires_at: now + profile.grant_ttl,
        updated_at: now,
        committed_at: None,
        store_upload_id: None,
        media: None,
    };
    let quota = Quota {
        max_bytes: profile.quota_bytes.map(|b| b.0),
        max_count: profile.quota_count,
    };
    let limited = problem.is_none() && (quota.max_bytes.is_some() || quota.max_count.is_some());
    let mut inserted = state
        .ledger
        .insert(&upload, limited.then_some(&quota))
        .await;
    if let Err(LedgerError::QuotaExceeded { .. }) = inserted {
        // Recorded anyway, so the user can see why the object went.
        problem = Some("quota_exceeded");
        inserted = state.ledger.insert(&upload, None).await;
    }
    let row = match inserted {
        Ok(Inserted::New(row)) => row,
        Ok(Inserted::Existing(_)) => return Ok(EventOutcome::Ignored),
        Err(e) => {
            // Two events for one new object race to adopt it; keys are
            // unique in the ledger, so the loser finds the winner's row.
            return match state.ledger.find_by_key(&object_key).await? {
                Some(_) => Ok(EventOutcome::Ignored),
                None => Err(e.into()),
            };
        }
    };
    if let Some(code) = problem {
        let changes = Changes {
            reason: Some(code.to_owned()),
            ..Changes::default()
        };
        let rejected = state
            .ledger
            .transition(
                row.id,
                UploadStatus::Pending,
                UploadStatus::Rejected,
                &changes,
                now,
            )
            .await?;
        if rejected.is_some() {
            state.store.delete(&object_key).await?;
        }
        return Ok(EventOutcome::Rejected);
    }
    match commit_upload(state, row).await {
        Ok(_) => Ok(EventOutcome::Committed),
        Err(ApiError::StoreUnavailable) => Ok(EventOutcome::Deferred),
        Err(
            ApiError::SizeMismatch(_) | ApiError::TypeMismatch(_) | ApiError::ChecksumMismatch(_),
        ) => {
            // Overwritten between the HEAD above and commit's own: the row
            // was rejected and the object removed; a later event re-adopts
            // nothing (the key has its row).
            Ok(EventOutcome::Rejected)
        }
        Err(ApiError::ObjectMissing | ApiError::Expired(_) | ApiError::InvalidState(_)) => {
            Ok(EventOutcome::Ignored)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use latchkey_domain::default_profiles;

    use super::*;

    fn profile(template: &str) -> Profile {
        let mut p = default_profiles().remove(1);
        p.key_template = KeyTemplate::parse(template).unwrap();
        p
    }

    #[test]
    fn owners_are_read_back_from_keys() {
        let p = profile("u/{user}/{profile}/{id}{ext}");
        let name = p.name.to_string();
        for sub in ["alice", "auth0|123", "a_b", "é x", "a-b"] {
            let user = UserId::parse(sub).unwrap();
            let key = format!("{}pic.jpg", p.key_template.user_prefix(&user, &name));
            assert_eq!(owner_in(&p, &key), Some(user), "{key}");
        }
        for key in [
            format!("u/alice/{name}/"),
            "u/alice/other/x.jpg".to_owned(),
            format!("v/alice/{name}/x.jpg"),
            format!("u/_41/{name}/x.jpg"),
            format!("u/alice/{name}"),
        ] {
            assert_eq!(owner_in(&p, &key), None, "{key}");
        }
    }

    #[test]
    fn templates_without_a_user_folder_do_not_adopt() {
        let p = profile("u/{user}-{id}{ext}");
        assert!(!has_user_prefix(&p.key_template, p.name.as_str()));
        let p = profile("u/{user}-x/{id}{ext}");
        assert!(has_user_prefix(&p.key_template, p.name.as_str()));
        assert_eq!(
            owner_in(&p, "u/bob-x-x/file.txt"),
            Some(UserId::parse("bob-x").unwrap())
        );
    }
}
