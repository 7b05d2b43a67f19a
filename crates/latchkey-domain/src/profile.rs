//! Profiles: named upload policies (what may be uploaded, how, and where).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::{ByteSize, ContentType, KeyTemplate};

/// How the bytes travel from the client to the store (DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Put,
    Post,
    Headers,
    Multipart,
    Credentials,
    Proxy,
    Tus,
}

impl Mode {
    pub const ALL: [Mode; 7] = [
        Mode::Put,
        Mode::Post,
        Mode::Headers,
        Mode::Multipart,
        Mode::Credentials,
        Mode::Proxy,
        Mode::Tus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Put => "put",
            Mode::Post => "post",
            Mode::Headers => "headers",
            Mode::Multipart => "multipart",
            Mode::Credentials => "credentials",
            Mode::Proxy => "proxy",
            Mode::Tus => "tus",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown mode {0:?}; modes are put, post, headers, multipart, credentials, proxy, tus")]
pub struct ModeError(pub String);

impl FromStr for Mode {
    type Err = ModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ModeError(s.to_owned()))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to the bytes after they are verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    #[default]
    None,
    Image,
}

/// The encoding of a photo variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VariantFormat {
    Jpeg,
    Webp,
}

/// What a `process = "image"` profile serves as the original of a HEIC or
/// HEIF upload. Variants are JPEG/WebP either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeifOriginal {
    /// Re-encoded as JPEG, which every browser shows.
    #[default]
    Jpeg,
    /// The uploaded HEIC/HEIF itself, its EXIF and XMP removed losslessly.
    Keep,
}

/// A derived image a `process = "image"` profile makes: at most `size`
/// pixels on the long side, never enlarged.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    /// `[a-z0-9_-]{1,32}`, not `original`; what `?variant=` names.
    pub name: String,
    pub size: u32,
    pub format: VariantFormat,
}

/// A profile name: `[a-z0-9_-]{1,32}`, so it can sit inside a key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ProfileName(String);

impl ProfileName {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProfileName({})", self.0)
    }
}

/// A validated upload policy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Profile {
    pub name: ProfileName,
    /// Allowed content types: exact (`image/jpeg`), `image/*`, or `*/*`.
    pub content_types: Vec<String>,
    pub min_bytes: ByteSize,
    pub max_bytes: ByteSize,
    pub modes: Vec<Mode>,
    pub key_template: KeyTemplate,
    #[serde(with = "secs")]
    pub grant_ttl: Duration,
    pub process: Process,
    /// Per-user byte quota, pending reservations included.
    pub quota_bytes: Option<ByteSize>,
    /// Per-user upload count quota, pending reservations included.
    pub quota_count: Option<u64>,
    /// Whether committed uploads must be attached by the app backend.
    pub require_attach: bool,
    #[serde(with = "secs")]
    pub unattached_ttl: Duration,
    /// Photo variants of this profile; `None`: the `[media]` defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<VariantDef>>,
    /// The original of a HEIC/HEIF photo: `jpeg` (default) or `keep`.
    pub heif_original: HeifOriginal,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs()))
    }
}

impl Profile {
    pub fn allows_type(&self, ct: &ContentType) -> bool {
        self.content_types.iter().any(|p| ct.matches(p))
    }

    pub fn allows_mode(&self, mode: Mode) -> bool {
        self.modes.contains(&mode)
    }
}

/// The two profiles every installation starts with (DESIGN §6).
pub fn default_profiles() -> Vec<Profile> {
    let template = KeyTemplate::parse("u/{user}/{profile}/{id}{ext}").expect("static template");
    let photo = Profile {
        name: ProfileName::parse("photo").expect("static name"),
        content_types: [
            "image/jpeg",
            "image/png",
            "image/webp",
            "image/heic",
            "image/heif",
            "image/gif",
            "image/avif",
        ]
        .map(str::to_owned)
        .to_vec(),
        min_bytes: ByteSize(1),
        max_bytes: ByteSize(50 << 20),
        modes: Mode::ALL.to_vec(),
        key_template: template.clone(),
        grant_ttl: Duration::from_secs(15 * 60),
        process: Process::Image,
        quota_bytes: None,
        quota_count: None,
        require_attach: false,
        unattached_ttl: Duration::from_secs(24 * 3600),
        variants: None,
        heif_original: HeifOriginal::Jpeg,
    };
    let file = Profile {
        name: ProfileName::parse("file").expect("static name"),
        content_types: vec!["*/*".to_owned()],
        min_bytes: ByteSize(0),
        max_bytes: ByteSize(5 << 30),
        process: Process::None,
        ..photo.clone()
    };
    vec![photo, file]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_design() {
        let p = default_profiles();
        assert_eq!(p[0].name.as_str(), "photo");
        assert_eq!(p[0].max_bytes.0, 52_428_800);
        assert!(p[0].allows_type(&ContentType::parse("image/heic").unwrap()));
        assert!(!p[0].allows_type(&ContentType::parse("image/svg+xml").unwrap()));
        assert!(p[1].allows_type(&ContentType::parse("application/x-anything").unwrap()));
        assert_eq!(p[1].max_bytes.0, 5 << 30);
    }

    #[test]
    fn mode_names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        }
        assert!("ftp".parse::<Mode>().is_err());
    }

    #[test]
    fn profile_names() {
        assert!(ProfileName::parse("photo").is_some());
        assert!(ProfileName::parse("Photo").is_none());
        assert!(ProfileName::parse("a/b").is_none());
        assert!(ProfileName::parse("").is_none());
    }
}
