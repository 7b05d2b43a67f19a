//! Identifiers: upload ids (unguessable, time-ordered) and user ids (whatever
//! the identity provider put in `sub`).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("upload ids are 32 lowercase hex characters")]
pub struct UploadIdError;

/// A UUIDv7 in its 32-hex-digit form: ordered by creation time (so it pages
/// well) with 74 random bits (so it cannot be enumerated).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    pub fn parse(s: &str) -> Result<Self, UploadIdError> {
        if s.len() != 32
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(UploadIdError);
        }
        uuid::Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| UploadIdError)
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0.simple())
    }
}

impl FromStr for UploadId {
    type Err = UploadIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for UploadId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for UploadId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserIdError {
    #[error("user id is empty")]
    Empty,
    #[error("user id is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("user id contains control characters")]
    Control,
}

/// The subject an upload belongs to. Any string an identity provider might
/// use (`auth0|123`, an email, unicode) is accepted; [`UserId::key_segment`]
/// makes it safe inside an object key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, UserIdError> {
        if s.is_empty() {
            return Err(UserIdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(UserIdError::TooLong { max: Self::MAX_LEN });
        }
        if s.chars().any(char::is_control) {
            return Err(UserIdError::Control);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An injective encoding into `[A-Za-z0-9_-]`: ASCII letters, digits and
    /// `-` stay, every other byte becomes `_xx` (lowercase hex). So `alice`
    /// stays `alice`, `auth0|123` becomes `auth0_7c123`, and no user id can
    /// produce `/`, `..` or a segment that collides with another user's.
    pub fn key_segment(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        self.write_key_segment(&mut out);
        out
    }

    /// [`key_segment`](Self::key_segment), appended to `out`.
    pub fn write_key_segment(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' {
                out.push(b as char);
            } else {
                out.push('_');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_round_trip_and_differ() {
        let a = UploadId::new();
        let b = UploadId::new();
        assert_ne!(a, b);
        assert_eq!(UploadId::parse(&a.to_string()).unwrap(), a);
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn upload_id_rejects_other_shapes() {
        let good = UploadId::new().to_string();
        for bad in [
            "".to_owned(),
            good.to_uppercase(),
            format!("{good}0"),
            "../../etc/passwd".to_owned(),
            "0195f0c4-aaaa-7bbb-8ccc-000000000000".to_owned(),
        ] {
            assert!(UploadId::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_segment_is_safe_and_injective() {
        let cases = [
            "alice",
            "auth0|123",
            "../x",
            "é",
            "a_b",
            "a_5fb",
            "a b",
            "A-1",
        ];
        let mut seen = std::collections::HashSet::new();
        for c in cases {
            let seg = UserId::parse(c).unwrap().key_segment();
            assert!(
                seg.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{seg}"
            );
            assert!(seen.insert(seg), "collision for {c}");
        }
        assert_eq!(UserId::parse("alice").unwrap().key_segment(), "alice");
        assert_eq!(
            UserId::parse("auth0|123").unwrap().key_segment(),
            "auth0_7c123"
        );
    }

    #[test]
    fn user_id_limits() {
        assert_eq!(UserId::parse(""), Err(UserIdError::Empty));
        assert!(UserId::parse(&"a".repeat(129)).is_err());
        assert_eq!(UserId::parse("a\0b"), Err(UserIdError::Control));
    }
}
