//! A JSON body extractor whose rejections are problem+json like every other
//! error, instead of axum's plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::InvalidRequest(
                "expected a JSON body with content-type: application/json".into(),
            )),
            // The body limit (`limits.json_body`): refused as soon as the
            // declared or received length passes it, never read whole.
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::RequestTooLarge(
                    "the JSON body is larger than this server accepts (limits.json_body)".into(),
                ))
            }
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::InvalidRequest(
                "request body too large or unreadable".into(),
            )),
            Err(e) => Err(ApiError::InvalidRequest(e.body_text())),
        }
    }
}
