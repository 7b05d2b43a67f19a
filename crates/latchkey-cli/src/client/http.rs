//! The broker's v1 HTTP API as seen from the client: one method per route,
//! the bearer token on every call, problem+json turned into [`ProblemError`].
//! Calls to the store (presigned URLs) do not go through here.

use anyhow::{Context, Result, anyhow};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ClientOpts;
use super::problem::{ProblemError, redact_url};

/// The body of `POST /v1/uploads`.
#[derive(Debug, Serialize)]
pub struct CreateUpload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a str>,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    pub mode: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// The part of the 201 answer the client acts on; the rest is kept as JSON.
#[derive(Debug, Deserialize)]
pub struct Created {
    pub id: String,
    pub grant: PutGrant,
}

#[derive(Debug, Deserialize)]
pub struct PutGrant {
    pub method: String,
    /// Absent for multipart grants (their URLs are per part).
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Form fields for a `post` grant, sent before the file.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
    /// Temporary credentials of a `credentials` grant.
    #[serde(default)]
    pub credentials: Option<super::credentials::GrantedCredentials>,
}

/// One page of `GET /v1/uploads`.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub items: Vec<Value>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DownloadGrant {
    pub url: String,
}

/// Filters for `GET /v1/uploads`.
#[derive(Debug, Default)]
pub struct ListQuery<'a> {
    pub status: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub limit: Option<u32>,
    pub cursor: Option<&'a str>,
}

pub struct Broker {
    http: Client,
    base: Url,
    token: Option<String>,
}

impl Broker {
    pub fn new(opts: &ClientOpts) -> Result<Self> {
        let base = Url::parse(&opts.server)
            .with_context(|| format!("invalid server URL {}", redact_url(&opts.server)))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(anyhow!(
                "server URL must be http(s): {}",
                redact_url(&opts.server)
            ));
        }
        Ok(Broker {
            http: http_client()?,
            base,
            token: opts.token.clone(),
        })
    }

    /// The HTTP client, shared with the store transfers so they reuse its pool.
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// `{server}/v1/uploads/...`, each segment percent-encoded, so an id typed
    /// by a user can never change the route.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .expect("checked in Broker::new")
            .pop_if_empty()
            .extend(["v1", "uploads"])
            .extend(segments);
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            // bearer_auth marks the header sensitive, so it never shows in
            // reqwest's Debug output either.
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    pub async fn create_upload(&self, body: &CreateUpload<'_>) -> Result<Value> {
        self.call(self.request(Method::POST, self.url(&[])).json(body))
            .await
    }

    /// `complete` for a multipart upload, with every part's ETag.
    pub async fn complete_parts(&self, id: &str, parts: &[(u32, String)]) -> Result<Value> {
        let parts: Vec<Value> = parts
            .iter()
            .map(|(number, etag)| serde_json::json!({ "number": number, "etag": etag }))
            .collect();
        let url = self.url(&[id, "complete"]);
        self.call(
            self.request(Method::POST, url)
                .json(&serde_json::json!({ "parts": parts })),
        )
        .await
    }

    /// Presigned URLs for more parts of a multipart upload.
    pub async fn sign_parts(&self, id: &str, numbers: &[u32]) -> Result<Value> {
        let url = self.url(&[id, "parts"]);
        self.call(
            self.request(Method::POST, url)
                .json(&serde_json::json!({ "numbers": numbers })),
        )
        .await
    }

    /// The parts the store holds for a multipart upload, with its layout.
    pub async fn stored_parts(&self, id: &str) -> Result<Value> {
        self.call(self.request(Method::GET, self.url(&[id, "parts"])))
            .await
    }

    /// A request to any broker URL (a proxy grant's), with the bearer token.
    pub fn authorized(&self, method: Method, url: Url) -> RequestBuilder {
        self.request(method, url)
    }

    /// Sends a request built with [`Broker::authorized`] and decodes its
    /// JSON answer (problems become errors).
    pub async fn send_json(&self, req: RequestBuilder) -> Result<Value> {
        self.call(req).await
    }

    pub async fn complete(&self, id: &str) -> Result<Value> {
        let url = self.url(&[id, "complete"]);
        self.call(self.request(Method::POST, url).json(&serde_json::json!({})))
            .await
    }

    pub async fn get(&self, id: &str) -> Result<Value> {
        self.call(self.request(Method::GET, self.url(&[id]))).await
    }

    pub async fn delete(&self, id: &str) -> Result<Value> {
        self.call(self.request(Method::DELETE, self.url(&[id])))
            .await
    }

    pub async fn list(&self, q: &ListQuery<'_>) -> Result<Page> {
        let mut url = self.url(&[]);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(status) = q.status {
                pairs.append_pair("status", status);
            }
            if let Some(profile) = q.profile {
                pairs.append_pair("profile", profile);
            }
            if let Some(limit) = q.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = q.cursor {
                pairs.append_pair("cursor", cursor);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.call(self.request(Method::GET, url)).await
    }

    pub async fn download(&self, id: &str, variant: Option<&str>) -> Result<DownloadGrant> {
        let mut url = self.url(&[id, "download"]);
        if let Some(variant) = variant {
            url.query_pairs_mut().append_pair("variant", variant);
        }
        self.call(self.request(Method::GET, url)).await
    }

    /// Sends one broker request and decodes a 2xx JSON answer.
    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let req = req.build().context("building the request")?;
        let (method, shown) = (req.method().clone(), redact_url(req.url().as_str()));
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| anyhow!(e.without_url()))
            .with_context(|| format!("{method} {shown}"))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .text()
            .await
            .map_err(|e| anyhow!(e.without_url()))
            .with_context(|| format!("reading the answer to {method} {shown}"))?;
        if !status.is_success() {
            let problem = ProblemError::from_response(status, content_type.as_deref(), &body);
            if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
                return Err(
                    anyhow!(problem).context("no token given (pass --token or set LATCHKEY_TOKEN)")
                );
            }
            return Err(problem.into());
        }
        serde_json::from_str(&body).with_context(|| {
            format!("{method} {shown} answered HTTP {status} with an unexpected body")
        })
    }
}

fn http_client() -> Result<Client> {
    Client::builder()
        .user_agent(concat!("latchkey-cli/", env!("CARGO_PKG_VERSION")))
        // Only the connect is bounded: a large transfer may rightly take long.
        .connect_timeout(std::time::Duration::from_secs(15))
        .build()
        .context("building the HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(server: &str) -> Broker {
        let opts = ClientOpts {
            server: server.to_owned(),
            token: None,
            json: false,
        };
        Broker::new(&opts).unwrap()
    }

    #[test]
    fn urls_are_built_by_segment() {
        let b = broker("http://127.0.0.1:8080/");
        assert_eq!(b.url(&[]).as_str(), "http://127.0.0.1:8080/v1/uploads");
        assert_eq!(
            b.url(&["abc", "complete"]).as_str(),
            "http://127.0.0.1:8080/v1/uploads/abc/complete"
        );
        // A hostile id stays one segment.
        assert_eq!(
            b.url(&["../x?y"]).as_str(),
            "http://127.0.0.1:8080/v1/uploads/..%2Fx%3Fy"
        );
        // A server mounted under a prefix keeps it.
        let b = broker("https://example.com/latchkey");
        assert_eq!(
            b.url(&["a"]).as_str(),
            "https://example.com/latchkey/v1/uploads/a"
        );
    }

    #[test]
    fn bad_server_urls_are_refused() {
        for bad in ["127.0.0.1:8080", "ftp://example.com", "mailto:x@y"] {
            let opts = ClientOpts {
                server: bad.to_owned(),
                token: None,
                json: false,
            };
            assert!(Broker::new(&opts).is_err(), "{bad}");
        }
    }
}
