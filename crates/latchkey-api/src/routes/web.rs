//! The demo page (`GET /`) and its assets, built into the binary from the
//! top-level `web/` folder: no build step, works offline.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::openapi::Problem;

const INDEX: &str = include_str!("../../../../web/index.html");

/// `(name, content type, body)` of every asset under `/web/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../../../web/style.css"),
    ),
];

/// The demo page: sign in, drop photos, watch them upload and commit.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "demoPage",
    tag = "ops",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
}

/// The demo page's script and style sheet.
#[utoipa::path(
    get,
    path = "/web/{file}",
    operation_id = "demoAsset",
    tag = "ops",
    params(("file" = String, Path)),
    responses(
        (status = 200, description = "The asset", body = String),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn asset(Path(file): Path<String>) -> axum::response::Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ct, body)) => (
            [
                (header::CONTENT_TYPE, *ct),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, crate::error::ApiError::NotFound).into_response(),
    }
}
