//! Media types as declared by clients and as allowed by profiles.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("content type must look like type/subtype (ASCII, at most 127 characters)")]
pub struct ContentTypeError;

/// The essence of a media type (`image/jpeg`), lowercased, parameters dropped.
/// This is the exact value a grant signs, so it must be canonical.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ContentType(String);

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

impl ContentType {
    pub fn parse(s: &str) -> Result<Self, ContentTypeError> {
        let essence = s.split(';').next().unwrap_or("").trim();
        if essence.len() > 127 {
            return Err(ContentTypeError);
        }
        let (ty, sub) = essence.split_once('/').ok_or(ContentTypeError)?;
        if !is_token(ty) || !is_token(sub) {
            return Err(ContentTypeError);
        }
        Ok(Self(essence.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Matches a profile pattern: an exact type, `image/*`, or `*/*` / `*`.
    pub fn matches(&self, pattern: &str) -> bool {
        let pattern = pattern.trim().to_ascii_lowercase();
        if pattern == "*" || pattern == "*/*" {
            return true;
        }
        match pattern.strip_suffix("/*") {
            Some(top) => self.0.split('/').next() == Some(top),
            None => self.0 == pattern,
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentType({})", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ContentType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises() {
        assert_eq!(
            ContentType::parse("Image/JPEG; q=1").unwrap().as_str(),
            "image/jpeg"
        );
        assert_eq!(
            ContentType::parse(" text/plain ").unwrap().as_str(),
            "text/plain"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "jpeg",
            "image/",
            "/jpeg",
            "image/jp eg",
            "image/jpeg\r\nx: y",
            "a/b/c",
        ] {
            assert!(ContentType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns() {
        let jpeg = ContentType::parse("image/jpeg").unwrap();
        assert!(jpeg.matches("image/jpeg"));
        assert!(jpeg.matches("image/*"));
        assert!(jpeg.matches("*/*"));
        assert!(!jpeg.matches("image/png"));
        assert!(!jpeg.matches("video/*"));
    }
}
