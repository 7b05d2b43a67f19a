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
        let unauthorized = |m: &str| ApiError::Unauthorized(m.to_owned());
        if token.len() > MAX_TOKEN_LEN {
            return Err(unauthorized("token too large"));
        }
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
            v.leeway = 30;
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
