//! Object keys. The broker chooses every key from a profile's template; the
//! client's filename is kept only as metadata, after [`sanitize_filename`].

use std::fmt;

use crate::{ContentType, UploadId, UserId};

/// A key in the bucket, as the broker built it. Only [`KeyTemplate::render`]
/// and the ledger (reading back what was rendered) create these.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Wraps a key read back from the ledger or the store. Not for client input.
    pub fn from_trusted(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where a grant writes when the store cannot refuse overwrites
    /// (`If-None-Match` ignored, as on Garage): commit promotes the bytes to
    /// the real key with a server-side copy, so replaying a grant after commit
    /// only ever touches a key nobody reads.
    pub fn staging(&self) -> ObjectKey {
        ObjectKey(format!("{}.upload", self.0))
    }

    /// Where a grant of a `process = "image"` profile writes: the bytes stay
    /// there, never served, until the photo pipeline has written the clean
    /// original at the key itself (DESIGN §7).
    pub fn quarantine(&self) -> ObjectKey {
        ObjectKey(format!("{}.quarantine", self.0))
    }

    /// Where the pipeline writes variant `name` (`{key}.thumb.jpg`).
    pub fn variant(&self, name: &str, extension: &str) -> ObjectKey {
        ObjectKey(format!("{}.{name}.{extension}", self.0))
    }

    /// The key whose upload owns `key` when `key` is one of the keys derived
    /// from it (staging, quarantine, a variant), else `None`.
    pub fn derived_base(key: &str) -> Option<&str> {
        if let Some(base) = key
            .strip_suffix(".upload")
            .or_else(|| key.strip_suffix(".quarantine"))
        {
            return Some(base);
        }
        let rest = key
            .strip_suffix(".jpg")
            .or_else(|| key.strip_suffix(".webp"))?;
        let (base, name) = rest.rsplit_once('.')?;
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        (ok && !base.is_empty()).then_some(base)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({})", self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyTemplateError {
    #[error(
        "key template must contain {{user}} and {{id}} (every key is unique and inside its user's prefix)"
    )]
    MissingPlaceholder,
    #[error(
        "key template has an unknown placeholder {0:?}; use {{user}}, {{profile}}, {{id}}, {{ext}}"
    )]
    UnknownPlaceholder(String),
    #[error("key template must be relative ASCII without '//', '..', or a leading '/'")]
    Shape,
}

/// A template such as `u/{user}/{profile}/{id}{ext}`, checked at config load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate(String);

const PLACEHOLDERS: [&str; 4] = ["user", "profile", "id", "ext"];

impl KeyTemplate {
    pub fn parse(s: &str) -> Result<Self, KeyTemplateError> {
        if !s.is_ascii() || s.starts_with('/') || s.contains("//") || s.contains("..") {
            return Err(KeyTemplateError::Shape);
        }
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or(KeyTemplateError::Shape)? + open;
            let name = &rest[open + 1..close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(KeyTemplateError::UnknownPlaceholder(name.to_owned()));
            }
            rest = &rest[close + 1..];
        }
        if !s.contains("{user}") || !s.contains("{id}") {
            return Err(KeyTemplateError::MissingPlaceholder);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// One pass over the template, each placeholder replaced by its value:
    /// a value is never searched for placeholders in turn (four
    /// `str::replace`s did that, and allocated a string each; this runs on
    /// every grant).
    pub fn render(&self, user: &UserId, profile: &str, id: &UploadId, ext: &str) -> ObjectKey {
        use std::fmt::Write as _;
        let mut key = String::with_capacity(self.0.len() + 64);
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            key.push_str(&rest[..open]);
            // `parse` checked every `{` has its `}` and a known name.
            let Some(close) = rest[open..].find('}').map(|c| c + open) else {
                rest = &rest[open..];
                break;
            };
            match &rest[open + 1..close] {
                "user" => user.write_key_segment(&mut key),
                "profile" => key.push_str(profile),
                "id" => {
                    let _ = write!(key, "{id}");
                }
                "ext" => key.push_str(ext),
                other => {
                    key.push('{');
                    key.push_str(other);
                    key.push('}');
                }
            }
            rest = &rest[close + 1..];
        }
        key.push_str(rest);
        ObjectKey(key)
    }

    /// The part of every key for this user that comes before the first
    /// per-upload placeholder: the prefix a `credentials` grant is scoped to
    /// and the reconciler sweeps.
    pub fn user_prefix(&self, user: &UserId, profile: &str) -> String {
        let cut = ["{id}", "{ext}"]
            .iter()
            .filter_map(|p| self.0.find(p))
            .min()
            .unwrap_or(self.0.len());
        let head = &self.0[..cut];
        // Only a prefix ending at a '/' is a safe boundary: `u/al` would also
        // match `u/alice`.
        let head = &head[..head.rfind('/').map_or(0, |i| i + 1)];
        head.replace("{user}", &user.key_segment())
            .replace("{profile}", profile)
    }
}

impl serde::Serialize for KeyTemplate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for KeyTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The extension a key gets, from the declared content type only: the
/// client's filename never decides what a stored object looks like
/// (`a.jpg.php` must not become a `.php` key).
pub fn extension_for(ct: &ContentType) -> &'static str {
    match ct.as_str() {
        "image/jpeg" => ".jpg",
        "image/png" => ".png",
        "image/webp" => ".webp",
        "image/heic" => ".heic",
        "image/heif" => ".heif",
        "image/gif" => ".gif",
        "image/avif" => ".avif",
        "application/pdf" => ".pdf",
        "text/plain" => ".txt",
        "text/csv" => ".csv",
        "application/json" => ".json",
        "application/zip" => ".zip",
        "video/mp4" => ".mp4",
        "video/quicktime" => ".mov",
        "audio/mpeg" => ".mp3",
        _ => "",
    }
}

/// Cleans a client filename for storage as metadata: path components,
/// control characters and bidirectional overrides (which make `gpj.exe` read
/// as `exe.jpg`) are removed, and the result is cut to 255 bytes.
pub fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(*c as u32, 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
        })
        .collect();
    let trimmed = cleaned.trim();
    let mut out = String::new();
    for c in trimmed.chars() {
        if out.len() + c.len_utf8() > 255 {
            break;
        }
        out.push(c);
    }
    // Cutting at 255 bytes may end the name on whitespace; trimmed again so
    // a sanitized name sanitizes to itself.
    let out = out.trim_end();
    if out.is_empty() || out == "." || out == ".." {
        "upload".to_owned()
    } else {
        out.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_cut_at_255_bytes_does_not_end_on_whitespace() {
        let raw = format!("{} tail", "a".repeat(254));
        let once = sanitize_filename(&raw);
        assert_eq!(once, "a".repeat(254));
        assert_eq!(sanitize_filename(&once), once);
    }

    #[test]
    fn derived_keys_lead_back_to_their_upload() {
        let k = ObjectKey::from_trusted("u/alice/photo/01J.jpg");
        for d in [
            k.staging(),
            k.quarantine(),
            k.variant("thumb", "jpg"),
            k.variant("medium", "webp"),
        ] {
            assert_eq!(ObjectKey::derived_base(d.as_str()), Some(k.as_str()), "{d}");
        }
        assert_eq!(ObjectKey::derived_base("u/alice/photo/01J.jpg"), None);
        assert_eq!(ObjectKey::derived_base("u/alice/photo/01J.png"), None);
        assert_eq!(ObjectKey::derived_base("x.Thumb.jpg"), None);
    }

    fn template() -> KeyTemplate {
        KeyTemplate::parse("u/{user}/{profile}/{id}{ext}").unwrap()
    }

    #[test]
    fn renders_default_template() {
        let id = UploadId::new();
        let user = UserId::parse("auth0|123").unwrap();
        let key = template().render(&user, "photo", &id, ".jpg");
        assert_eq!(key.as_str(), format!("u/auth0_7c123/photo/{id}.jpg"));
        assert_eq!(
            template().user_prefix(&user, "photo"),
            "u/auth0_7c123/photo/"
        );
    }

    #[test]
    fn render_matches_substitution_of_each_placeholder() {
        let id = UploadId::new();
        for t in [
            "u/{user}/{profile}/{id}{ext}",
            "{user}{id}",
            "a/{id}/{user}/{ext}/{profile}/{id}-{user}.bin",
            "x-{user}-{profile}/{ext}{id}{ext}",
        ] {
            let template = KeyTemplate::parse(t).unwrap();
            for sub in ["alice", "auth0|123", "../x", "é/{id}", "a b"] {
                let user = UserId::parse(sub).unwrap();
                let expected = t
                    .replace("{user}", &user.key_segment())
                    .replace("{profile}", "photo")
                    .replace("{id}", &id.to_string())
                    .replace("{ext}", ".jpg");
                let key = template.render(&user, "photo", &id, ".jpg");
                assert_eq!(key.as_str(), expected, "{t} {sub}");
            }
        }
    }

    #[test]
    fn hostile_users_stay_in_their_prefix() {
        let id = UploadId::new();
        for sub in ["../../etc", "a/b", "%2e%2e%2f", "\u{202e}gpj"] {
            let user = UserId::parse(sub).unwrap();
            let key = template().render(&user, "photo", &id, ".jpg");
            assert!(!key.as_str().contains(".."), "{key}");
            assert_eq!(key.as_str().matches('/').count(), 3, "{key}");
        }
    }

    #[test]
    fn template_validation() {
        assert_eq!(
            KeyTemplate::parse("{id}"),
            Err(KeyTemplateError::MissingPlaceholder)
        );
        assert_eq!(
            KeyTemplate::parse("/u/{user}/{id}"),
            Err(KeyTemplateError::Shape)
        );
        assert_eq!(
            KeyTemplate::parse("u/../{user}/{id}"),
            Err(KeyTemplateError::Shape)
        );
        assert!(matches!(
            KeyTemplate::parse("u/{user}/{name}/{id}"),
            Err(KeyTemplateError::UnknownPlaceholder(_))
        ));
        let flat = KeyTemplate::parse("u/{user}-{id}").unwrap();
        assert_eq!(flat.user_prefix(&UserId::parse("al").unwrap(), "p"), "u/");
    }

    #[test]
    fn filenames_are_cleaned() {
        assert_eq!(sanitize_filename("../../x"), "x");
        assert_eq!(sanitize_filename("C:\\Users\\me\\a.jpg"), "a.jpg");
        assert_eq!(sanitize_filename("a\0b.jpg"), "ab.jpg");
        assert_eq!(sanitize_filename("\u{202e}gpj.exe"), "gpj.exe");
        assert_eq!(sanitize_filename(""), "upload");
        assert_eq!(sanitize_filename(".."), "upload");
        assert!(sanitize_filename(&"é".repeat(5000)).len() <= 255);
    }

    #[test]
    fn extension_comes_from_type_not_name() {
        assert_eq!(
            extension_for(&ContentType::parse("image/jpeg").unwrap()),
            ".jpg"
        );
        assert_eq!(
            extension_for(&ContentType::parse("application/x-php").unwrap()),
            ""
        );
    }
}
