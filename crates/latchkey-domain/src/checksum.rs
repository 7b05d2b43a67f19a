//! SHA-256 digests as clients declare them (hex, as most tools print) and as
//! S3 carries them (`x-amz-checksum-sha256`, base64).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("sha256 must be 64 hex characters or 44 base64 characters")]
pub struct ChecksumError;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Accepts lowercase or uppercase hex, or standard base64.
    pub fn parse(s: &str) -> Result<Self, ChecksumError> {
        let mut out = [0u8; 32];
        if s.len() == 64 {
            hex::decode_to_slice(s, &mut out).map_err(|_| ChecksumError)?;
            return Ok(Self(out));
        }
        let bytes = STANDARD.decode(s).map_err(|_| ChecksumError)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ChecksumError)?;
        Ok(Self(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The form S3 uses in `x-amz-checksum-sha256`.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_B64: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn hex_and_base64_agree() {
        let a = Sha256Digest::parse(EMPTY_HEX).unwrap();
        let b = Sha256Digest::parse(EMPTY_B64).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_base64(), EMPTY_B64);
        assert_eq!(b.to_hex(), EMPTY_HEX);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "zz", &"g".repeat(64), "AAAA", &EMPTY_HEX[..63]] {
            assert_eq!(Sha256Digest::parse(bad), Err(ChecksumError), "{bad}");
        }
    }
}
