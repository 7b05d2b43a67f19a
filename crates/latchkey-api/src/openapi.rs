//! The OpenAPI 3.1 description of the API, generated from the handlers'
//! `#[utoipa::path]` attributes and the DTOs. It is served at
//! `/openapi.json` and committed as `docs/openapi.json`; the tests below
//! fail when the two differ or when a route is missing from it.

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::uppy::{TokenMounts, companion, sign, token};
use crate::routes::{attach, content, credentials, events, ops, parts, tus, uploads, web};

/// The name handlers use in `security((…))`.
pub const BEARER: &str = "bearer";

/// An RFC 9457 problem: how every error is answered, with
/// `content-type: application/problem+json`. This mirrors the body that
/// `ApiError` writes.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "type": "https://latchkey.dev/problems/too_large",
    "title": "Upload too large",
    "status": 400,
    "detail": "60000000 bytes is more than profile photo allows (52428800 bytes)",
    "code": "too_large"
}))]
pub struct Problem {
    /// `https://latchkey.dev/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// For people; never parse it. 5xx details say nothing about internals.
    pub detail: String,
    /// Stable and machine-readable: `unauthorized`, `forbidden`, `not_found`,
    /// `invalid_request`, `unknown_profile`, `mode_not_allowed`,
    /// `type_not_allowed`, `too_large`, `too_small`, `metadata_too_large`,
    /// `quota_exceeded`, `idempotency_mismatch`, `object_missing`,
    /// `size_mismatch`, `type_mismatch`, `checksum_mismatch`, `expired`,
    /// `invalid_state`, `variant_not_found`, `store_unavailable`, `internal`.
    pub code: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from the app's identity provider (the user is `sub`), \
                         or in dev mode one minted by `latchkey token`.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        description = "An upload broker: clients ask for a grant, send the bytes straight to \
                       the object store, then complete. Errors are RFC 9457 problems with a \
                       stable `code`."
    ),
    paths(
        uploads::create,
        uploads::list,
        uploads::show,
        uploads::remove,
        uploads::complete,
        uploads::download,
        parts::sign,
        parts::list,
        content::put,
        attach::attach,
        credentials::create,
        events::s3,
        ops::time,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi_json,
        token::create,
        token::dev,
        companion::params,
        companion::create_multipart,
        companion::list_parts,
        companion::abort,
        companion::batch,
        companion::sign_part,
        companion::complete,
        companion::sts,
        sign::sign,
        sign::credentials,
        sign::initiate,
        sign::assemble,
        web::index,
        web::asset,
        tus::create,
        tus::head,
        tus::patch,
        tus::delete,
        tus::options,
        tus::options_upload,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth, &TokenMounts),
    tags(
        (name = "uploads", description = "Grants, commits and downloads"),
        (name = "events", description = "Store event notifications"),
        (name = "tus", description = "tus 1.0 resumable uploads (core, creation, creation-with-upload, termination, expiration, checksum)"),
        (name = "uppy", description = "Uppy's backend contracts (Companion routes, signRequest, getCredentials)"),
        (name = "ops", description = "Clock, health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document as served and committed: pretty JSON with a final newline.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        text.push('\n');
        text
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;
    use crate::routes::routes;

    fn committed_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
    }

    #[test]
    fn committed_openapi_json_is_current() {
        let path = committed_path();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, json()).expect("writing docs/openapi.json");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let same = serde_json::from_str::<Value>(&committed).ok()
            == Some(serde_json::from_str::<Value>(json()).unwrap());
        assert!(
            same,
            "docs/openapi.json does not match the API the code describes; \
             run `UPDATE_OPENAPI=1 cargo test -p latchkey-api openapi` to refresh it \
             (and review the diff)"
        );
    }

    #[test]
    fn openapi_documents_exactly_the_registered_routes() {
        let spec: Value = serde_json::from_str(json()).unwrap();
        let registered: BTreeSet<(String, String)> = routes()
            .registered
            .iter()
            .map(|(m, p)| (p.to_string(), m.as_str().to_ascii_lowercase()))
            .collect();
        let documented: BTreeSet<(String, String)> = spec["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| {
                        ["get", "put", "post", "delete", "patch", "head", "options"]
                            .contains(&k.as_str())
                    })
                    .map(move |m| (path.clone(), m.clone()))
            })
            .collect();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI document (add #[utoipa::path] and list them in ApiDoc): {undocumented:?}"
        );
        let unrouted: Vec<_> = documented.difference(&registered).collect();
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
    }

    #[test]
    fn authenticated_routes_declare_bearer_and_problems_have_a_schema() {
        let spec: Value = serde_json::from_str(json()).unwrap();
        assert_eq!(
            spec["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        assert!(spec["components"]["schemas"]["Problem"].is_object());
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let secured = op["security"][0].get(BEARER).is_some();
                assert_eq!(
                    secured,
                    path.starts_with("/v1/uploads")
                        || [
                            "/v1/credentials",
                            "/v1/uppy-token",
                            "/s3/sign",
                            "/s3/credentials"
                        ]
                        .contains(&path.as_str())
                        || (path.starts_with("/tus/") && method != "options"),
                    "{method} {path}: bearer security"
                );
                for (status, res) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            res["content"]["application/problem+json"]["schema"]["$ref"],
                            "#/components/schemas/Problem",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
