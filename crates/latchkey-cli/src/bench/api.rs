//! The few broker and store calls the benchmarks time, kept apart from the
//! reference client (which streams files and draws progress bars): here every
//! body is one in-memory buffer shared by all tasks.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
};
use reqwest::multipart::{Form, Part};
use reqwest::{Client, Method, RequestBuilder, Response, Url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ensure_loopback;
use super::wire::Prepared;

/// One payload, with the digest the broker is told about.
#[derive(Clone)]
pub struct Payload {
    pub body: Bytes,
    pub sha256: String,
}

impl Payload {
    /// `size` bytes of a cheap, non-repeating-looking pattern (the content
    /// does not matter to a store; its length and digest do).
    pub fn new(size: u64) -> Self {
        let mut body = vec![0u8; size as usize];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for chunk in body.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let sha256 = hex::encode(Sha256::digest(&body));
        Self {
            body: Bytes::from(body),
            sha256,
        }
    }

    pub fn len(&self) -> u64 {
        self.body.len() as u64
    }
}

/// A broker, with the one token every request carries.
#[derive(Clone)]
pub struct Target {
    pub http: Client,
    pub server: Url,
    token: String,
    pub profile: String,
}

impl Target {
    pub fn new(server: &str, token: String, profile: String, connections: usize) -> Result<Self> {
        let server = Url::parse(server).context("--server is not a URL")?;
        ensure_loopback(&server)?;
        let http = http_client(connections)?;
        Ok(Self {
            http,
            server,
            token,
            profile,
        })
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.server
            .join(path)
            .context("building a broker URL from --server")
    }

    fn authorized(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// `POST /v1/uploads`; the answer's JSON (id, grant, …).
    pub async fn create(&self, mode: &str, payload: &Payload) -> Result<Value> {
        self.create_declared(mode, payload.len(), &payload.sha256)
            .await
    }

    /// `POST /v1/uploads` for a declared size and digest (nothing is sent).
    pub async fn create_declared(&self, mode: &str, size: u64, sha256: &str) -> Result<Value> {
        let req = self
            .authorized(Method::POST, self.url("/v1/uploads")?)
            .json(&self.create_body(mode, size, sha256));
        json_of(req.send().await, "POST /v1/uploads").await
    }

    /// The same `POST /v1/uploads`, built once to be sent many times
    /// (`bench grants`).
    pub fn create_request(&self, mode: &str, size: u64, sha256: &str) -> Result<Prepared> {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", self.token)).context("--token")?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = serde_json::to_vec(&self.create_body(mode, size, sha256))?;
        Prepared::new(
            Method::POST,
            &self.url("/v1/uploads")?,
            &headers,
            body.into(),
        )
    }

    fn create_body(&self, mode: &str, size: u64, sha256: &str) -> Value {
        json!({
            "profile": self.profile,
            "filename": "bench.bin",
            "content_type": "application/octet-stream",
            "size": size,
            "sha256": sha256,
            "mode": mode,
        })
    }

    pub async fn complete(&self, id: &str, parts: Option<Value>) -> Result<Value> {
        let body = match parts {
            Some(parts) => json!({ "parts": parts }),
            None => json!({}),
        };
        let req = self
            .authorized(
                Method::POST,
                self.url(&format!("/v1/uploads/{id}/complete"))?,
            )
            .json(&body);
        json_of(req.send().await, "complete").await
    }

    /// A presigned GET for a committed upload.
    pub async fn download_url(&self, id: &str) -> Result<Url> {
        let req = self.authorized(
            Method::GET,
            self.url(&format!("/v1/uploads/{id}/download"))?,
        );
        let v = json_of(req.send().await, "download").await?;
        let url = v["url"].as_str().context("download answer without url")?;
        checked_url(url)
    }

    /// Sends the bytes the way the grant says, then completes (a proxy
    /// upload commits in its own answer). Returns the committed row.
    pub async fn upload_and_complete(&self, created: &Value, payload: &Payload) -> Result<Value> {
        let id = created["id"].as_str().context("created without id")?;
        let grant = &created["grant"];
        let mode = created["mode"].as_str().unwrap_or_default();
        if mode == "proxy" {
            let url = checked_url(str_of(grant, "url")?)?;
            let req = self
                .authorized(Method::PUT, url)
                .header(CONTENT_LENGTH, payload.len())
                .header("content-type", "application/octet-stream")
                .body(payload.body.clone());
            return json_of(req.send().await, "proxy PUT").await;
        }
        let parts = self.upload_only(created, payload).await?;
        self.complete(id, parts).await
    }

    /// Sends the bytes to the store as the grant says (no complete). For
    /// multipart, returns the part list `complete` needs.
    pub async fn upload_only(&self, created: &Value, payload: &Payload) -> Result<Option<Value>> {
        let grant = &created["grant"];
        if let Some(mp) = grant.get("multipart").filter(|m| !m.is_null()) {
            return self.multipart(mp, payload).await.map(Some);
        }
        let method = str_of(grant, "method")?;
        let url = checked_url(str_of(grant, "url")?)?;
        let resp = match method {
            "PUT" => {
                self.http
                    .put(url)
                    .headers(headers_of(&grant["headers"])?)
                    .body(payload.body.clone())
                    .send()
                    .await
            }
            "POST" => {
                let mut form = Form::new();
                if let Some(fields) = grant["fields"].as_object() {
                    for (k, v) in fields {
                        form = form.text(k.clone(), v.as_str().unwrap_or_default().to_owned());
                    }
                }
                let part = Part::stream_with_length(payload.body.clone(), payload.len());
                form = form.part("file", part);
                self.http.post(url).multipart(form).send().await
            }
            other => bail!("the bench does not send {other} grants"),
        };
        ok_status(resp, "store upload").await.map(|_| None)
    }

    async fn multipart(&self, mp: &Value, payload: &Payload) -> Result<Value> {
        let part_size = mp["part_size"].as_u64().context("part_size")?;
        let parts = mp["parts"].as_array().context("parts")?;
        let count = mp["part_count"].as_u64().context("part_count")?;
        if parts.len() as u64 != count {
            bail!("the bench only sends multipart uploads whose grant has every part URL");
        }
        let mut done = Vec::with_capacity(parts.len());
        for part in parts {
            let n = part["number"].as_u64().context("part number")?;
            let start = ((n - 1) * part_size) as usize;
            let end = (start + part_size as usize).min(payload.body.len());
            let url = checked_url(str_of(part, "url")?)?;
            let resp = self
                .http
                .put(url)
                .headers(headers_of(&part["headers"])?)
                .body(payload.body.slice(start..end))
                .send()
                .await;
            let resp = ok_status(resp, "part PUT").await?;
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .context("part PUT answered without an ETag")?
                .to_owned();
            done.push(json!({ "number": n, "etag": etag }));
        }
        Ok(Value::Array(done))
    }

    /// A GET straight from the store with a presigned URL; the bytes read.
    pub async fn get_bytes(&self, url: &Url) -> Result<u64> {
        let resp = ok_status(self.http.get(url.clone()).send().await, "store GET").await?;
        let body = resp.bytes().await.map_err(|e| anyhow!(e.without_url()))?;
        Ok(body.len() as u64)
    }
}

/// The one HTTP client configuration every bench uses, latchkey's side and
/// the peers' alike: keep-alive connections, one per task.
pub fn http_client(connections: usize) -> Result<Client> {
    Client::builder()
        .user_agent(concat!("latchkey-bench/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(connections.max(1))
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .context("building the HTTP client")
}

fn str_of<'a>(v: &'a Value, field: &str) -> Result<&'a str> {
    v[field]
        .as_str()
        .with_context(|| format!("grant without {field}"))
}

/// Grant URLs are followed only to loopback, like `--server`.
fn checked_url(url: &str) -> Result<Url> {
    let url = Url::parse(url).context("the broker granted an invalid URL")?;
    ensure_loopback(&url)?;
    Ok(url)
}

fn headers_of(v: &Value) -> Result<HeaderMap> {
    let mut out = HeaderMap::new();
    if let Some(map) = v.as_object() {
        for (k, v) in map {
            out.insert(
                HeaderName::from_bytes(k.as_bytes())?,
                HeaderValue::from_str(v.as_str().unwrap_or_default())?,
            );
        }
    }
    Ok(out)
}

pub async fn ok_status(resp: reqwest::Result<Response>, what: &str) -> Result<Response> {
    // without_url: a presigned URL in an error message would leak it.
    let resp = resp.map_err(|e| anyhow!(e.without_url()).context(what.to_owned()))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let snippet: String = body.chars().take(200).collect();
        bail!("{what}: HTTP {status}: {snippet}");
    }
    Ok(resp)
}

pub async fn json_of(resp: reqwest::Result<Response>, what: &str) -> Result<Value> {
    let resp = ok_status(resp, what).await?;
    resp.json()
        .await
        .map_err(|e| anyhow!(e.without_url()).context(format!("{what}: reading the answer")))
}

/// A created upload's answer, checked as far as the bench relies on it: a
/// JSON object with an id and a grant (the rest is skipped, not built).
pub fn check_created(body: &[u8]) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Created<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
        // Present, whatever it holds.
        #[serde(rename = "grant")]
        _grant: serde::de::IgnoredAny,
    }
    let c: Created =
        serde_json::from_slice(body).context("POST /v1/uploads: reading the answer")?;
    if c.id.is_empty() {
        bail!("POST /v1/uploads answered an empty id");
    }
    Ok(())
}
