//! `POST /v1/credentials`: scoped temporary credentials for the caller's own
//! prefix in one profile (the `credentials` mode without a ledger row; what
//! the client writes is adopted: see `broker::modes::credentials`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::broker::modes::credentials;
use crate::dto::CredentialsView;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::openapi::Problem;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    /// A configured profile; the default profile when absent.
    #[schema(example = "photo")]
    pub profile: Option<String>,
}

/// Credentials that can only upload under `prefix`, until `expiration`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCredentials {
    #[serde(flatten)]
    pub credentials: CredentialsView,
    /// The broker's clock, so a client with a wrong clock can sign correctly.
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
}

/// Get temporary credentials for your own prefix.
///
/// They allow only `PutObject` and the multipart calls (create, upload part,
/// complete, abort, list parts) on keys under `prefix` in `bucket`, until
/// `expiration`; everything else — reads, deletes, listing, other prefixes —
/// is refused by the store. Each object written with them is checked against
/// the profile (type, size, quota) and recorded as an upload of the caller,
/// or rejected and deleted. Stores without STS (Garage) refuse the mode.
#[utoipa::path(
    post,
    path = "/v1/credentials",
    operation_id = "createCredentials",
    tag = "uploads",
    request_body = CredentialsRequest,
    responses(
        (status = 200, description = "Temporary credentials", body = IssuedCredentials),
        (status = 400, description = "`invalid_request`, `unknown_profile`, `mode_not_allowed`, `mode_not_supported`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`quota_exceeded`: the profile's quota is used up", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable`: STS could not be reached", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    ApiJson(req): ApiJson<CredentialsRequest>,
) -> Result<Json<IssuedCredentials>, ApiError> {
    let grant = credentials::for_profile(&state, &user, req.profile.as_deref()).await?;
    Ok(Json(IssuedCredentials {
        credentials: grant.into(),
        server_time: OffsetDateTime::now_utc(),
    }))
}
