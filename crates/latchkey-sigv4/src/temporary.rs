//! Temporary credentials the embedded store mints and checks itself, with no
//! shared state: the broker mints them, the store verifies them, and both
//! derive their keys from the store's root secret.
//!
//! The format, in one place so the two sides cannot drift:
//! - **session token** = `base64url(payload) "." base64url(HMAC(k_token, payload))`,
//!   where `payload` = `1|w|{expires unix seconds}|{nonce}|{prefix}`. `1` is
//!   the format version and `w` the scope: write-only, i.e. the operations in
//!   [`WRITE_OPERATIONS`]. The prefix comes last so it may hold any byte.
//! - **access key id** = `LKT` + the upper-case hex of the first 10 bytes of
//!   `HMAC(k_id, token)`. It binds the key id to one token: a key pair cannot
//!   be used with another (say, a wider) token.
//! - **secret access key** = base64 of the first 30 bytes of
//!   `HMAC(k_secret, access key id)`, so the store can recompute it from the
//!   key id alone (its SigV4 verifier only knows the key id) and a request
//!   signed with it proves the signer was given the token.
//!
//! `k_token`, `k_id` and `k_secret` are HMACs of fixed labels under
//! `HMAC(root secret, "latchkey/temporary-credentials/v1")`: rotating the root
//! secret revokes every outstanding credential, and these keys never sign S3
//! requests themselves.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use zeroize::Zeroize;

use crate::Secret;

/// Every access key id minted here starts with this (AWS's own start with
/// `AKIA`/`ASIA`, so the two never collide).
pub const ACCESS_KEY_PREFIX: &str = "LKT";

/// The S3 operations (s3s / API names) a write-only credential allows.
/// Everything else — reads, deletes, listings, copies, bucket calls — is
/// refused. `ListParts` is here so a client can resume its own multipart
/// upload; it reveals only parts the client itself uploaded under its prefix.
pub const WRITE_OPERATIONS: [&str; 6] = [
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
];

const VERSION: &str = "1";
const SCOPE_WRITE: &str = "w";
const ID_BYTES: usize = 10;
const SECRET_BYTES: usize = 30;
/// Longest token accepted for verification; real ones are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The keys derived from one store root secret.
pub struct TokenKey {
    token: [u8; 32],
    id: [u8; 32],
    secret: [u8; 32],
}

impl TokenKey {
    pub fn derive(root_secret: &Secret) -> Self {
        let mut base = mac(
            root_secret.expose().as_bytes(),
            b"latchkey/temporary-credentials/v1",
        );
        let key = Self {
            token: mac(&base, b"session-token"),
            id: mac(&base, b"access-key-id"),
            secret: mac(&base, b"secret-access-key"),
        };
        base.zeroize();
        key
    }

    /// The secret that belongs to `access_key_id`, or `None` when the id is
    /// not shaped like one minted here. Any well-shaped id gets a secret; it
    /// is the token check ([`TokenKey::verify`]) that decides whether the id
    /// was really issued.
    pub fn secret_for(&self, access_key_id: &str) -> Option<Secret> {
        let hex = access_key_id.strip_prefix(ACCESS_KEY_PREFIX)?;
        let shaped = hex.len() == ID_BYTES * 2
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        if !shaped {
            return None;
        }
        let mut full = mac(&self.secret, access_key_id.as_bytes());
        let secret = STANDARD.encode(&full[..SECRET_BYTES]);
        full.zeroize();
        Some(Secret::new(secret))
    }

    fn access_key_id(&self, token: &str) -> String {
        let full = mac(&self.id, token.as_bytes());
        let mut id = String::with_capacity(ACCESS_KEY_PREFIX.len() + ID_BYTES * 2);
        id.push_str(ACCESS_KEY_PREFIX);
        id.push_str(&hex::encode_upper(&full[..ID_BYTES]));
        id
    }

    /// Mints write-only credentials for keys under `scope.prefix` until
    /// `scope.expires_at`. Deterministic: the same scope gives the same
    /// credentials (so a grant derived from a ledger row can be re-issued).
    pub fn mint(&self, scope: &TokenScope) -> Result<MintedCredentials, TokenError> {
        if scope.nonce.is_empty()
            || scope.nonce.len() > 64
            || !scope
                .nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TokenError::Invalid);
        }
        let payload = format!(
            "{VERSION}|{SCOPE_WRITE}|{}|{}|{}",
            scope.expires_at.unix_timestamp(),
            scope.nonce,
            scope.prefix
        );
        let tag = mac(&self.token, payload.as_bytes());
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        );
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let access_key_id = self.access_key_id(&token);
        let secret_access_key = self
            .secret_for(&access_key_id)
            .expect("minted ids are well-shaped");
        Ok(MintedCredentials {
            access_key_id,
            secret_access_key,
            session_token: Secret::new(token),
            expires_at: scope.expires_at,
        })
    }

    /// Checks that `token` was minted here, belongs to `access_key_id` and
    /// has not expired at `now`; returns what it allows.
    pub fn verify(
        &self,
        access_key_id: &str,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<TokenScope, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let (payload_b64, tag_b64) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| TokenError::Invalid)?;
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.token)
            .expect("HMAC accepts keys of any length");
        m.update(&payload);
        m.verify_slice(&tag).map_err(|_| TokenError::Invalid)?;
        // The key id is public, but compare it in constant time anyway: it
        // costs nothing and leaves no timing question to answer.
        let want = self.access_key_id(token);
        let same = want.len() == access_key_id.len()
            && want
                .bytes()
                .zip(access_key_id.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(TokenError::Invalid);
        }
        let payload = String::from_utf8(payload).map_err(|_| TokenError::Invalid)?;
        let mut parts = payload.splitn(5, '|');
        let (Some(VERSION), Some(SCOPE_WRITE), Some(exp), Some(nonce), Some(prefix)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Invalid);
        };
        let exp: i64 = exp.parse().map_err(|_| TokenError::Invalid)?;
        let expires_at =
            OffsetDateTime::from_unix_timestamp(exp).map_err(|_| TokenError::Invalid)?;
        if now >= expires_at {
            return Err(TokenError::Expired);
        }
        Ok(TokenScope {
            prefix: prefix.to_owned(),
            expires_at,
            nonce: nonce.to_owned(),
        })
    }
}

impl Drop for TokenKey {
    fn drop(&mut self) {
        self.token.zeroize();
        self.id.zeroize();
        self.secret.zeroize();
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

/// What a token allows: writes under `prefix` until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenScope {
    /// Every key written must start with this. An empty prefix would allow
    /// the whole bucket; callers pass a user's prefix, which never is.
    pub prefix: String,
    /// Whole seconds (the token carries a unix timestamp).
    pub expires_at: OffsetDateTime,
    /// Makes otherwise equal grants distinct: 1-64 of `[A-Za-z0-9_-]`.
    pub nonce: String,
}

/// A minted key pair and its token.
#[derive(Debug)]
pub struct MintedCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not minted with this key, altered, for another key id, or malformed.
    #[error("the security token is invalid")]
    Invalid,
    #[error("the security token has expired")]
    Expired,
}

/// Whether `key` lies under `prefix` (which ends at a `/` boundary when it
/// comes from a key template). An empty prefix matches nothing: a token for
/// the whole bucket is never what a caller meant.
pub fn key_in_prefix(key: &str, prefix: &str) -> bool {
    !prefix.is_empty() && key.len() > prefix.len() && key.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn key() -> TokenKey {
        TokenKey::derive(&Secret::new("root-secret"))
    }

    fn scope(prefix: &str) -> TokenScope {
        TokenScope {
            prefix: prefix.into(),
            expires_at: datetime!(2030-01-01 0:00 UTC),
            nonce: "n1".into(),
        }
    }

    const NOW: OffsetDateTime = datetime!(2029-12-31 23:00 UTC);

    #[test]
    fn minted_credentials_verify_and_recompute() {
        let k = key();
        let c = k.mint(&scope("u/alice/photo/")).unwrap();
        assert!(c.access_key_id.starts_with("LKT"));
        assert_eq!(c.access_key_id.len(), 23);
        assert_eq!(c.secret_access_key.expose().len(), 40);
        assert_eq!(k.secret_for(&c.access_key_id).unwrap(), c.secret_access_key);
        let got = k
            .verify(&c.access_key_id, c.session_token.expose(), NOW)
            .unwrap();
        assert_eq!(got, scope("u/alice/photo/"));
        // Deterministic, so a grant can be re-derived from its row.
        let again = k.mint(&scope("u/alice/photo/")).unwrap();
        assert_eq!(again.access_key_id, c.access_key_id);
        assert_eq!(again.session_token, c.session_token);
    }

    #[test]
    fn prefixes_with_separators_round_trip() {
        let k = key();
        let c = k.mint(&scope("u/a|b/é x/")).unwrap();
        let got = k
            .verify(&c.access_key_id, c.session_token.expose(), NOW)
            .unwrap();
        assert_eq!(got.prefix, "u/a|b/é x/");
    }

    #[test]
    fn expired_tokens_are_refused() {
        let k = key();
        let c = k.mint(&scope("u/alice/")).unwrap();
        let at_expiry = datetime!(2030-01-01 0:00 UTC);
        assert_eq!(
            k.verify(&c.access_key_id, c.session_token.expose(), at_expiry),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn another_root_secret_refuses() {
        let c = key().mint(&scope("u/alice/")).unwrap();
        let other = TokenKey::derive(&Secret::new("another"));
        assert_eq!(
            other.verify(&c.access_key_id, c.session_token.expose(), NOW),
            Err(TokenError::Invalid)
        );
        assert_ne!(
            other.secret_for(&c.access_key_id).unwrap(),
            c.secret_access_key
        );
    }

    #[test]
    fn tokens_and_ids_cannot_be_swapped_or_altered() {
        let k = key();
        let alice = k.mint(&scope("u/alice/")).unwrap();
        let bob = k.mint(&scope("u/bob/")).unwrap();
        // Alice's key id with Bob's token: refused.
        assert_eq!(
            k.verify(&alice.access_key_id, bob.session_token.expose(), NOW),
            Err(TokenError::Invalid)
        );
        // A payload rewritten to another prefix keeps its old tag: refused.
        let token = alice.session_token.expose();
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("1|w|1893456000|n1|u/"));
        let forged_id = k.access_key_id(&forged);
        assert_eq!(k.verify(&forged_id, &forged, NOW), Err(TokenError::Invalid));
        for bad in ["", ".", "x.y", "a.b.c", &"A".repeat(5000)] {
            assert_eq!(
                k.verify(&alice.access_key_id, bad, NOW),
                Err(TokenError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_minted_shapes_get_a_secret() {
        let k = key();
        for bad in [
            "",
            "LKT",
            "AKIAIOSFODNN7EXAMPLE",
            "LKT0123456789abcdef0123",
            "LKT0123456789ABCDEF0",
        ] {
            assert!(k.secret_for(bad).is_none(), "{bad}");
        }
        assert!(k.secret_for("LKT0123456789ABCDEF0123").is_some());
    }

    #[test]
    fn bad_nonces_are_refused() {
        let k = key();
        for nonce in ["", "a|b", &"n".repeat(65)] {
            let s = TokenScope {
                nonce: nonce.into(),
                ..scope("u/a/")
            };
            assert_eq!(k.mint(&s).unwrap_err(), TokenError::Invalid);
        }
    }

    #[test]
    fn prefix_matching() {
        assert!(key_in_prefix("u/alice/photo/x.jpg", "u/alice/photo/"));
        assert!(!key_in_prefix("u/alice/photo/", "u/alice/photo/"));
        assert!(!key_in_prefix("u/alicex/photo/x", "u/alice/photo/"));
        assert!(!key_in_prefix("anything", ""));
    }
}
