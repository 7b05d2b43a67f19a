//! Tokens for pages: `POST /v1/uppy-token` mints the short-lived upload
//! token that goes into Uppy's `companionEndpoint`; `POST /v1/dev/token`
//! signs in as a dev user, only when the broker runs in dev mode.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::{AuthUser, mint_token as mint_user_token};
use crate::broker::uppy;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::openapi::Problem;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UppyTokenRequest {
    /// Limit the token to this profile; any profile when absent.
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UppyToken {
    pub token: String,
    /// Uppy's `companionEndpoint`: `{public_url}/uppy/{token}`.
    pub companion_url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Mint an upload token for Uppy's Companion mode.
///
/// Uppy's `companionEndpoint` client sends no headers, so it cannot carry a
/// bearer token: the token goes into the path instead. It acts for the
/// caller only, expires within minutes, and can only create and finish
/// uploads (optionally in one profile). The response also sets it as a
/// same-origin cookie, for pages served by the broker.
#[utoipa::path(
    post,
    path = "/v1/uppy-token",
    operation_id = "createUppyToken",
    tag = "uppy",
    request_body(content = UppyTokenRequest, description = "Optional"),
    responses(
        (status = 200, description = "The token", body = UppyToken),
        (status = 400, description = "`unknown_profile`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: UppyTokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        UppyTokenRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidRequest(e.to_string()))?
    };
    let (token, expires_at) = uppy::mint_token(&state, &user, req.profile.as_deref())?;
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        super::SESSION_COOKIE,
        uppy::TOKEN_TTL.as_secs()
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(UppyToken {
            companion_url: format!("{}/uppy/{token}", state.public_url.trim_end_matches('/')),
            token,
            expires_at,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    #[schema(example = "alice")]
    pub user: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DevToken {
    /// A user token (JWT), as `latchkey token --user` prints.
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Sign in as a dev user (dev mode only).
///
/// Only when the broker runs the embedded default with its generated
/// secret (no `auth.jwt_secret`, no JWKS): anyone who can reach it may act
/// as any user, which is what dev mode means. Elsewhere 404.
#[utoipa::path(
    post,
    path = "/v1/dev/token",
    operation_id = "createDevToken",
    tag = "uppy",
    request_body = DevTokenRequest,
    responses(
        (status = 200, description = "A user token", body = DevToken),
        (status = 400, description = "`invalid_request`: not a usable user id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: not in dev mode", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn dev(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<DevTokenRequest>,
) -> Result<Json<DevToken>, ApiError> {
    let secret = state.uppy.dev_secret().ok_or(ApiError::NotFound)?;
    let token = mint_user_token(secret, &req.user, uppy::DEV_TOKEN_TTL, None, None)?;
    Ok(Json(DevToken {
        token,
        expires_at: OffsetDateTime::now_utc() + uppy::DEV_TOKEN_TTL,
    }))
}
