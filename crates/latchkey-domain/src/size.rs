//! Byte sizes: `52428800`, `50MiB`, `5GiB`, `10MB` in configuration.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid size {0:?}: use bytes or a number with B, KB, MB, GB, KiB, MiB or GiB")]
pub struct ByteSizeError(pub String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(input: &str) -> Result<Self, ByteSizeError> {
        let err = || ByteSizeError(input.to_owned());
        let s = input.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if split == 0 {
            return Err(err());
        }
        let n: u64 = s[..split].parse().map_err(|_| err())?;
        let mult: u64 = match s[split..].trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(err()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Accepts either a JSON/TOML integer or a string with a unit.
impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(ByteSize::parse("52428800").unwrap().0, 52_428_800);
        assert_eq!(ByteSize::parse("50MiB").unwrap().0, 52_428_800);
        assert_eq!(ByteSize::parse("5 GiB").unwrap().0, 5 << 30);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "MiB", "-1", "1.5GB", "99999999999999TiB", "12 parsecs"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }
}
