//! Who is calling: JWT bearer tokens from the app's identity provider (HS256
//! with a shared secret, RS256/ES256 from a JWKS), or in dev mode tokens the
//! broker minted itself with `latchkey token`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_domain::{Secret, UserId};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// How many verified tokens are remembered (32 bytes of digest and a user
/// id each); when full, the memory starts over.
const VERIFIED_CAP: usize = 16 * 1024;

/// Tokens that passed [`Authenticator::check`], by the SHA-256 of their
/// exact text, with their subject and expiry.
///
/// Why: an app sends the same token with every request of a session, and
/// checking it afresh (two base64 decodes, two JSON parses and an HMAC, or
/// an RSA/ECDSA verification for JWKS tokens) was 4% of a grant's CPU. The
/// same bytes with the same keys get the same answer, except for what
/// depends on the clock: `nbf` was passed and stays passed, `exp` is
/// checked again on every use. The keys are fixed for the process's life.
/// Keyed by digest, not by the token, so memory stays bounded and nothing
/// compares a secret byte by byte.
#[derive(Default)]
struct Verified {
    map: std::sync::Mutex<std::collections::HashMap<[u8; 32], (UserId, u64)>>,
}

impl Verified {
    /// The subject of a remembered token that has not expired at `now`.
    fn get(&self, digest: &[u8; 32], now: u64) -> Option<UserId> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (user, exp) = map.get(digest)?;
        if exp.saturating_add(LEEWAY_SECS) >= now {
            return Some(user.clone());
        }
        // Expired: the full check says so, with its own message.
        map.remove(digest);
        None
    }

    fn insert(&self, digest: [u8; 32], user: UserId, exp: u64) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= VERIFIED_CAP {
            map.clear();
        }
        map.insert(digest, (user, exp));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

#[derive(Clone, Default)]
pub struct AuthConfig {
    /// HS256 shared secret (the dev secret, or one from config).
    pub hs256_secret: Option<Secret>,
    /// Public keys for RS256/ES256 tokens.
    pub jwks: Option<JwkSet>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// `sha256:<hex>` hashes of the `lk_…` API keys app backends use.
    pub api_keys: Vec<String>,
}

struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

pub struct Authenticator {
    keys: Vec<VerifyKey>,
    verified: Verified,
    /// SHA-256 of each accepted API key: the keys themselves are never kept.
    api_keys: Vec<[u8; 32]>,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthSetupError(String);

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthSetupError> {
        let mut keys = Vec::new();
        if let Some(secret) = &cfg.hs256_secret {
            keys.push(VerifyKey {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.expose().as_bytes()),
            });
        }
        if let Some(set) = &cfg.jwks {
            for jwk in &set.keys {
                // The algorithm comes from the key type, never from the
                // token: that is what stops RS/HS confusion.
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => continue,
                };
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| AuthSetupError(format!("unusable key in JWKS: {e}")))?;
                keys.push(VerifyKey {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key,
                });
            }
        }
        let mut api_keys = Vec::new();
        for entry in &cfg.api_keys {
            let hex_part = entry.strip_prefix("sha256:").ok_or_else(|| {
                AuthSetupError(
                    "auth.api_keys entries are sha256:<hex> (see `latchkey apikey`)".into(),
                )
            })?;
            let mut h = [0u8; 32];
            hex::decode_to_slice(hex_part, &mut h)
                .map_err(|_| AuthSetupError("auth.api_keys: malformed sha256 hex".into()))?;
            api_keys.push(h);
        }
        if keys.is_empty() {
            return Err(AuthSetupError(
                "no way to verify tokens: set auth.jwt_secret or auth.jwks_file".into(),
            ));
        }
        Ok(Self {
            keys,
            verified: Verified::default(),
            api_keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        })
    }

    /// Whether `token` is one of the configured API keys (compared by hash,
    /// in constant time).
    pub fn is_api_key(&self, token: &str) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let h: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        self.api_keys
            .iter()
            .fold(false, |hit, k| hit | bool::from(k.ct_eq(&h)))
    }

    /// Verifies a bearer token and returns its subject.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::Unauthorized("token too large".into()));
        }
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(user) = self.verified.get(&digest, now) {
            return Ok(user);
        }
        let (user, exp) = self.check(token)?;
        self.verified.insert(digest, user.clone(), exp);
        Ok(user)
    }

    /// The full check of a token: its signature and claims. Returns the
    /// subject and the expiry.
    fn check(&self, token: &str) -> Result<(UserId, u64), ApiError> {
        let unauthorized = |m: &str| ApiError::Unauthorized(m.to_owned());
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        let candidates = self.keys.iter().filter(|k| {
            k.alg == header.alg && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
        });
        let mut last = unauthorized("token algorithm or key id not accepted");
        for k in candidates {
            let mut v = Validation::new(k.alg);
            // jsonwebtoken checks `iss`/`aud` only when the token has them:
            // a configured issuer or audience must also be required, or a
            // token that simply leaves them out passes.
            let mut required = vec!["exp", "sub"];
            if self.issuer.is_some() {
                required.push("iss");
            }
            if self.audience.is_some() {
                required.push("aud");
            }
            v.set_required_spec_claims(&required);
            v.leeway = LEEWAY_SECS;
            v.validate_nbf = true;
            match &self.issuer {
                Some(iss) => v.set_issuer(&[iss]),
                None => v.iss = None,
            }
            match &self.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(data) => {
                    return UserId::parse(&data.claims.sub)
                        .map(|user| (user, data.claims.exp))
                        .map_err(|e| unauthorized(&format!("token subject unusable: {e}")));
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    let msg = match e.kind() {
                        ErrorKind::ExpiredSignature => "token expired",
                        ErrorKind::ImmatureSignature => "token not yet valid",
                        ErrorKind::InvalidIssuer => "token issuer not accepted",
                        ErrorKind::InvalidAudience => "token audience not accepted",
                        ErrorKind::InvalidSignature => "token signature invalid",
                        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                        _ => "token invalid",
                    };
                    last = unauthorized(msg);
                }
            }
        }
        Err(last)
    }
}

/// Signs an HS256 token for `user`, as `latchkey token` and the dev banner
/// of `latchkey serve` do.
pub fn mint_token(
    secret: &Secret,
    user: &str,
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, ApiError> {
    UserId::parse(user).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let claims = Claims {
        sub: user.to_owned(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        iss: issuer.map(str::to_owned),
        aud: audience.map(str::to_owned),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .map_err(|e| ApiError::Internal(format!("signing token: {e}")))
}

/// The authenticated caller, extracted from `Authorization: Bearer …`.
pub struct AuthUser(pub UserId);

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if token.starts_with(API_KEY_PREFIX) {
            // An app backend acting for one of its users.
            if !state.auth.is_api_key(token) {
                return Err(ApiError::Unauthorized("unknown API key".into()));
            }
            let user = acting_user(parts)?.ok_or_else(|| {
                ApiError::InvalidRequest("an API key acts for a user: send X-Latchkey-User".into())
            })?;
            return Ok(AuthUser(user));
        }
        state.auth.verify(token).map(AuthUser)
    }
}

/// API keys look like `lk_<random>`; anything else is taken for a JWT.
pub const API_KEY_PREFIX: &str = "lk_";

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be a Bearer token".into()))
}

/// The user named by `X-Latchkey-User`, when the header is present.
fn acting_user(parts: &Parts) -> Result<Option<UserId>, ApiError> {
    let Some(v) = parts.headers.get("x-latchkey-user") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::InvalidRequest("X-Latchkey-User must be ASCII".into()))?;
    UserId::parse(s)
        .map(Some)
        .map_err(|e| ApiError::InvalidRequest(format!("X-Latchkey-User: {e}")))
}

/// The app's own backend, authenticated by an API key; optionally acting for
/// one user (`X-Latchkey-User`), which then scopes what it can reach.
pub struct Backend {
    pub acting_for: Option<UserId>,
}

impl FromRequestParts<Arc<AppState>> for Backend {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if !token.starts_with(API_KEY_PREFIX) {
            return Err(ApiError::Forbidden(
                "this route is for app backends: use an lk_ API key".into(),
            ));
        }
        if !state.auth.is_api_key(token) {
            return Err(ApiError::Unauthorized("unknown API key".into()));
        }
        Ok(Backend {
            acting_for: acting_user(parts)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(secret: &Secret) -> Authenticator {
        Authenticator::new(&AuthConfig {
            hs256_secret: Some(secret.clone()),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn token_with_exp(secret: &Secret, exp: u64) -> String {
        let claims = Claims {
            sub: "alice".to_owned(),
            exp,
            iat: None,
            iss: None,
            aud: None,
        };
        let key = EncodingKey::from_secret(secret.expose().as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[test]
    fn a_token_that_passed_is_remembered_and_answers_alike() {
        let secret = Secret::new("s3cret-for-tests-only".to_owned());
        let auth = authenticator(&secret);
        let token = mint_token(&secret, "alice", Duration::from_secs(600), None, None).unwrap();
        assert_eq!(auth.verify(&token).unwrap().as_str(), "alice");
        assert_eq!(auth.verified.len(), 1);
        assert_eq!(auth.verify(&token).unwrap().as_str(), "alice");
        assert_eq!(auth.verified.len(), 1);
    }

    #[test]
    fn refused_tokens_are_not_remembered() {
        let secret = Secret::new("s3cret-for-tests-only".to_owned());
        let auth = authenticator(&secret);
        let now = jsonwebtoken::get_current_timestamp();
        let expired = token_with_exp(&secret, now - LEEWAY_SECS - 60);
        let err = auth.verify(&expired).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let other = Secret::new("another-secret-entirely".to_owned());
        let forged = token_with_exp(&other, now + 600);
        let err = auth.verify(&forged).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        assert_eq!(auth.verified.len(), 0);
        // A remembered token is still refused once it expires.
        let good = token_with_exp(&secret, now + 600);
        auth.verify(&good).unwrap();
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(good.as_bytes()).into()
        };
        let later = now + 600 + LEEWAY_SECS + 1;
        assert!(auth.verified.get(&digest, later).is_none());
        assert_eq!(auth.verified.len(), 0, "the expired entry is dropped");
        assert!(auth.verified.get(&digest, now).is_none());
    }

    #[test]
    fn the_memory_is_bounded() {
        let verified = Verified::default();
        let user = UserId::parse("alice").unwrap();
        for i in 0..=VERIFIED_CAP {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            verified.insert(digest, user.clone(), u64::MAX);
        }
        assert_eq!(verified.len(), 1, "full: started over");
    }
}
