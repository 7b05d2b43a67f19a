//! Uppy's backend contracts (`broker::uppy` has the why): the Companion S3
//! routes under `/s3/…` and, for pages that cannot send headers, under
//! `/uppy/{token}/s3/…`; `POST /s3/sign`; `GET /s3/credentials` and
//! `/s3/sts`; and `POST /v1/uppy-token`, which mints the path token.
//!
//! Errors are problem+json like everywhere else, with Uppy's `message`
//! member added (RFC 9457 allows extension members), so both kinds of
//! client read them.

pub(crate) mod companion;
pub(crate) mod sign;
pub(crate) mod token;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{OpenApi, Required};

use crate::auth::AuthUser;
use crate::broker::uppy::{self, UploadToken};
use crate::error::ApiError;
use crate::state::AppState;

/// The cookie latchkey's own demo page may use instead of a path token.
pub const SESSION_COOKIE: &str = "latchkey_uppy";

/// An error for an Uppy route: the problem body plus `message`.
pub struct UppyError(pub ApiError);

impl From<ApiError> for UppyError {
    fn from(e: ApiError) -> Self {
        UppyError(e)
    }
}

impl From<latchkey_ledger::LedgerError> for UppyError {
    fn from(e: latchkey_ledger::LedgerError) -> Self {
        UppyError(e.into())
    }
}

impl IntoResponse for UppyError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.0.parts();
        let detail = match &self.0 {
            ApiError::Internal(_) => "an internal error occurred".to_owned(),
            other => other.to_string(),
        };
        let body = serde_json::json!({
            "type": format!("https://latchkey.dev/problems/{code}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
            "message": detail,
        });
        // Keeps the headers (and the log extension) ApiError sets.
        let (mut parts, _) = self.0.into_response().into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(body.to_string()))
    }
}

/// Who calls an Uppy route: the upload token in the path, a bearer token
/// (a user JWT, an API key acting for a user, or an upload token), or the
/// demo page's same-origin cookie.
pub struct UppyCaller(pub UploadToken);

impl FromRequestParts<Arc<AppState>> for UppyCaller {
    type Rejection = UppyError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, UppyError> {
        if let Ok(Path(params)) =
            Path::<HashMap<String, String>>::from_request_parts(parts, state).await
            && let Some(token) = params.get("token")
        {
            return Ok(UppyCaller(uppy::verify_token(state, token)?));
        }
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let bearer = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if let Some(t) = bearer
                && let Ok(token) = uppy::verify_token(state, t)
            {
                return Ok(UppyCaller(token));
            }
            let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
            return Ok(UppyCaller(UploadToken {
                user,
                profile: None,
            }));
        }
        if let Some(token) = session_cookie(parts) {
            return Ok(UppyCaller(uppy::verify_token(state, token)?));
        }
        Err(UppyError(ApiError::Unauthorized(
            "use /uppy/{token}/s3/… with a token from POST /v1/uppy-token, or a Bearer token"
                .into(),
        )))
    }
}

fn session_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, v)| v)
}

/// The authenticated caller of the bearer-only Uppy routes, with Uppy's
/// error shape.
pub struct UppyBearer(pub latchkey_domain::UserId);

impl FromRequestParts<Arc<AppState>> for UppyBearer {
    type Rejection = UppyError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, UppyError> {
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        Ok(UppyBearer(user))
    }
}

/// Path parameters of an Uppy route, by name.
pub(crate) fn param<'a>(
    params: &'a HashMap<String, String>,
    name: &str,
) -> Result<&'a str, UppyError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| UppyError(ApiError::InvalidRequest(format!("missing {name}"))))
}

/// The Companion routes are also mounted under `/uppy/{token}`: this copies
/// each documented `/s3/…` Companion route there, with the token parameter.
pub(crate) struct TokenMounts;

/// Companion routes (the bearer-only ones are not mounted under a token).
pub(crate) fn token_mounted(path: &str) -> bool {
    path.starts_with("/s3/") && path != "/s3/sign" && path != "/s3/credentials"
}

impl utoipa::Modify for TokenMounts {
    fn modify(&self, api: &mut OpenApi) {
        let copies: Vec<(String, utoipa::openapi::PathItem)> = api
            .paths
            .paths
            .iter()
            .filter(|(p, _)| token_mounted(p))
            .map(|(p, item)| {
                let mut item = item.clone();
                let token: Parameter = ParameterBuilder::new()
                    .name("token")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some("An upload token from `POST /v1/uppy-token`"))
                    .schema(Some(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::String),
                    ))
                    .build();
                for op in [
                    &mut item.get,
                    &mut item.post,
                    &mut item.delete,
                    &mut item.put,
                ]
                .into_iter()
                .flatten()
                {
                    op.parameters
                        .get_or_insert_with(Vec::new)
                        .insert(0, token.clone());
                    if let Some(id) = &mut op.operation_id {
                        id.push_str("WithToken");
                    }
                }
                (format!("/uppy/{{token}}{p}"), item)
            })
            .collect();
        api.paths.paths.extend(copies);
    }
}
