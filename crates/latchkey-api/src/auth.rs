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
}

struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

pub struct Authenticator {
    keys: Vec<VerifyKey>,
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
        if keys.is_empty() {
            return Err(AuthSetupError(
                "no way to verify tokens: set auth.jwt_secret or auth.jwks_file".into(),
            ));
        }
        Ok(Self {
            keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        })
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
            v.set_required_spec_claims(&["exp", "sub"]);
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
                        ErrorKind::MissingRequiredClaim(_) => "token lacks sub or exp",
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
        let value = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::Unauthorized("Authorization must be a Bearer token".into()))?;
        state.auth.verify(token.trim()).map(AuthUser)
    }
}
