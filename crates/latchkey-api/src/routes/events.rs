//! `POST /v1/events/s3`: S3 / SNS / MinIO event notifications, one more
//! commit path. Authenticated by the shared `events.token`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};

use crate::broker::events::{EventOutcome, object_created};
use crate::error::ApiError;
use crate::s3_events::{Notification, parse};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
pub struct EventQuery {
    /// The shared token, for senders that cannot set headers (SNS).
    pub token: Option<String>,
}

/// What the broker did with a notification.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct EventsProcessed {
    pub committed: usize,
    pub rejected: usize,
    pub ignored: usize,
    pub deferred: usize,
    /// Whether an SNS subscription was confirmed.
    pub subscription_confirmed: bool,
}

fn authorized(state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Result<(), ApiError> {
    let Some(want) = &state.events.token else {
        return Err(ApiError::Forbidden(
            "event notifications are off: set events.token".into(),
        ));
    };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(query).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(want.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "missing or wrong event token".into(),
        ))
    }
}

fn host_allowed(state: &AppState, url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = u.host_str() else {
        return false;
    };
    let secure = u.scheme() == "https";
    state.events.subscribe_hosts.iter().any(|allowed| {
        let loopback = allowed == "127.0.0.1" || allowed == "localhost";
        (secure || loopback)
            && (host == allowed || host.ends_with(&format!(".{}", allowed.trim_start_matches('.'))))
    })
}

/// Receive S3 event notifications.
///
/// AWS S3 (direct JSON or through SNS, including the subscription
/// confirmation) and MinIO webhook events. Each `ObjectCreated` event is a
/// hint to commit the upload that owns the key; duplicates and reordering are
/// harmless because the commit re-checks the object.
#[utoipa::path(
    post,
    path = "/v1/events/s3",
    operation_id = "s3Events",
    tag = "events",
    params(EventQuery),
    request_body(content = String, description = "An S3, SNS or MinIO notification (JSON)"),
    responses(
        (status = 200, description = "Processed", body = EventsProcessed),
        (status = 400, description = "`invalid_request`: not a notification", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: wrong token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: no events.token configured", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn s3(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<EventQuery>,
    body: String,
) -> Result<Json<EventsProcessed>, ApiError> {
    authorized(&state, &headers, q.token.as_deref())?;
    let sns_type = headers
        .get("x-amz-sns-message-type")
        .and_then(|v| v.to_str().ok());
    let note = parse(&body, sns_type).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let mut out = EventsProcessed::default();
    match note {
        Notification::Nothing => {}
        Notification::ConfirmSubscription { subscribe_url } => {
            if !host_allowed(&state, &subscribe_url) {
                return Err(ApiError::InvalidRequest(
                    "SubscribeURL host is not in events.subscribe_hosts".into(),
                ));
            }
            let res = reqwest::get(&subscribe_url)
                .await
                .map_err(|_| ApiError::StoreUnavailable)?;
            if !res.status().is_success() {
                return Err(ApiError::StoreUnavailable);
            }
            out.subscription_confirmed = true;
        }
        Notification::Events(events) => {
            for ev in events
                .into_iter()
                .filter(|e| e.created && e.bucket == state.events.bucket)
            {
                match object_created(&state, &ev.key).await? {
                    EventOutcome::Committed => out.committed += 1,
                    EventOutcome::Rejected => out.rejected += 1,
                    EventOutcome::Ignored => out.ignored += 1,
                    EventOutcome::Deferred => out.deferred += 1,
                }
            }
        }
    }
    Ok(Json(out))
}
