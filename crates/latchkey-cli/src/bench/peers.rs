//! Wire contracts latchkey shares with other servers, timed by the same
//! generator on both sides (`scripts/bench` runs them against latchkey and
//! against Uppy Companion and `@tus/server`): any URL (`http`), the
//! Companion S3 routes `@uppy/aws-s3` calls (`uppy`), and tus 1.0 uploads
//! (`tus`). Nothing here knows which server it talks to: what differs is
//! the URL and the headers (`--header`, e.g. latchkey's bearer token).
//!
//! URLs may carry capabilities (latchkey's `companion_url` has an upload
//! token in its path, granted URLs are signed): reports name only the
//! origin, and errors are stripped of URLs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Client, Method, Url};
use serde_json::json;

use super::api::{Payload, http_client, json_of, ok_status};
use super::runner::{Measured, phase, with_cpu_per_op};
use super::wire::{Conns, Prepared};
use super::{Load, Report, ensure_loopback, ratio};

/// What every peer bench takes: the load, and headers for every request.
#[derive(Clone, clap::Args)]
pub struct Peer {
    #[command(flatten)]
    pub load: Load,
    /// A header sent with every request, `Name: value` (repeatable), e.g.
    /// `authorization: Bearer …`. Never printed.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
}

/// A loopback server, the client and headers to reach it.
struct Side {
    http: Client,
    headers: HeaderMap,
    connections: usize,
    duration: std::time::Duration,
    pids: Vec<u32>,
}

impl Side {
    fn new(peer: &Peer) -> Result<Self> {
        let (connections, duration) = peer.load.checked()?;
        Ok(Self {
            http: http_client(connections)?,
            headers: parse_headers(&peer.headers)?,
            connections,
            duration,
            pids: peer.load.pid.clone(),
        })
    }

    /// Runs one phase; with `--pid`, adds the servers' CPU time per op.
    async fn phase<F, Fut>(&self, label: &str, op: F) -> Result<Measured>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<u64>>> + Send,
    {
        with_cpu_per_op(
            &self.pids,
            phase(label, self.connections, self.duration, op),
        )
        .await
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.http.request(method, url).headers(self.headers.clone())
    }

    fn report(&self, bench: &'static str, url: &Url, size: Option<u64>) -> Report {
        Report {
            bench,
            // The origin only: the path may hold a token.
            server: url.origin().ascii_serialization(),
            connections: self.connections,
            duration_s: self.duration.as_secs_f64(),
            size_bytes: size,
            mode: None,
            measured: Vec::new(),
            ratios: serde_json::Map::new(),
        }
    }
}

/// `Name: value` pairs into a header map.
fn parse_headers(raw: &[String]) -> Result<HeaderMap> {
    let mut out = HeaderMap::new();
    for h in raw {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header wants `Name: value`, not {:?}", redact(h)))?;
        out.append(
            HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("bad header name {:?}", name.trim()))?,
            HeaderValue::from_str(value.trim())
                .with_context(|| format!("bad value for header {}", name.trim()))?,
        );
    }
    Ok(out)
}

/// A malformed `--header` is quoted in the error only up to its first
/// few characters: it may be a token pasted wrong.
fn redact(h: &str) -> String {
    let head: String = h.chars().take(12).collect();
    if head.len() < h.len() {
        format!("{head}…")
    } else {
        head
    }
}

fn loopback_url(raw: &str, what: &str) -> Result<Url> {
    let url = Url::parse(raw).with_context(|| format!("{what} is not a URL"))?;
    ensure_loopback(&url)?;
    Ok(url)
}

/// `base` with `path` appended to its path (`base` may end in a token
/// segment, so `Url::join` would replace it).
fn under(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_query(None);
    url
}

pub async fn http(peer: &Peer, url: &str, method: &str, body: Option<&str>) -> Result<Report> {
    let side = Arc::new(Side::new(peer)?);
    let url = loopback_url(url, "--url")?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| anyhow!("bad --method {method:?}"))?;
    let body = body.map(|b| Bytes::from(b.to_owned())).unwrap_or_default();
    let label = format!("{method} {}", url.path());
    let req = Prepared::new(method, &url, &side.headers, body)?;
    let conns = Conns::new(side.connections);
    let measured = side
        .phase(&label, move |task| {
            let (conns, req) = (conns.clone(), req.clone());
            async move {
                // The answer is read whole, as a client would; only the rate is reported.
                conns.send(task, &req).await.context("request")?;
                Ok(Some(0))
            }
        })
        .await?;
    let mut r = side.report("http", &url, None);
    r.measured.push(measured);
    Ok(r)
}

pub async fn uppy(peer: &Peer, endpoint: &str, size: u64, multipart_size: u64) -> Result<Report> {
    let side = Arc::new(Side::new(peer)?);
    let base = loopback_url(endpoint, "--endpoint")?;

    // 1. `GET /s3/params`: a POST form for one file, as Uppy asks it
    //    (latchkey needs `metadata[size]`; Companion stores it as metadata).
    let mut params_url = under(&base, "/s3/params");
    params_url
        .query_pairs_mut()
        .append_pair("filename", "bench.bin")
        .append_pair("type", "application/octet-stream")
        .append_pair("metadata[size]", &size.to_string());
    let params_req = Prepared::new(Method::GET, &params_url, &side.headers, Bytes::new())?;
    let conns = Conns::new(side.connections);
    let c = conns.clone();
    let params = side
        .phase("GET /s3/params", move |task| {
            let (c, req) = (c.clone(), params_req.clone());
            async move {
                let body = c.send(task, &req).await.context("/s3/params")?;
                #[derive(serde::Deserialize)]
                struct Form {
                    url: String,
                    // An object, whatever its fields.
                    #[serde(rename = "fields")]
                    _fields: serde_json::Map<String, serde_json::Value>,
                }
                let form: Form = serde_json::from_slice(&body)
                    .context("/s3/params answered without url and fields")?;
                if form.url.is_empty() {
                    bail!("/s3/params answered an empty url");
                }
                Ok(Some(0))
            }
        })
        .await?;

    // 2. Sign-part: one multipart upload, created before the clock, then
    //    `GET /s3/multipart/{uploadId}/{n}?key=…` for n = 1, 2, … 10000, 1, …
    let created = json_of(
        side.request(Method::POST, under(&base, "/s3/multipart"))
            .json(&json!({
                "filename": "bench.bin",
                "type": "application/octet-stream",
                "metadata": { "size": multipart_size },
            }))
            .send()
            .await,
        "POST /s3/multipart",
    )
    .await?;
    let upload_id = created["uploadId"]
        .as_str()
        .context("POST /s3/multipart answered without uploadId")?
        .to_owned();
    let key = created["key"]
        .as_str()
        .context("POST /s3/multipart answered without key")?
        .to_owned();
    let part_base = under(&base, &format!("/s3/multipart/{upload_id}"));
    let next = Arc::new(AtomicU64::new(0));
    let sign_req = Prepared::new(Method::GET, &part_base, &side.headers, Bytes::new())?;
    let mut with_key = part_base.clone();
    with_key.query_pairs_mut().append_pair("key", &key);
    let (part_path, key_query) = (
        part_base.path().to_owned(),
        with_key.query().unwrap_or_default().to_owned(),
    );
    let sign_part = side
        .phase(
            "GET /s3/multipart/{uploadId}/{n} (sign-part)",
            move |task| {
                let n = next.fetch_add(1, Ordering::Relaxed) % 10_000 + 1;
                let target = format!("{part_path}/{n}?{key_query}");
                let (conns, req) = (conns.clone(), sign_req.clone());
                async move {
                    let body = conns
                        .send_to(task, &req, &target)
                        .await
                        .context("sign-part")?;
                    #[derive(serde::Deserialize)]
                    struct Part {
                        url: String,
                    }
                    let part: Part =
                        serde_json::from_slice(&body).context("sign-part answered without url")?;
                    if part.url.is_empty() {
                        bail!("sign-part answered an empty url");
                    }
                    Ok(Some(0))
                }
            },
        )
        .await?;
    // Leave nothing behind in the store (best effort: the figures are taken).
    let mut abort = part_base;
    abort.query_pairs_mut().append_pair("key", &key);
    let _ = side.request(Method::DELETE, abort).send().await;

    let mut r = side.report("uppy", &base, Some(size));
    ratio(
        &mut r,
        "sign_part/params",
        sign_part.ops_per_s,
        params.ops_per_s,
    );
    r.measured.push(params);
    r.measured.push(sign_part);
    Ok(r)
}

/// `Upload-Metadata`: `key base64(value)` pairs, comma-separated.
fn upload_metadata(pairs: &[String]) -> Result<String> {
    let mut out = Vec::with_capacity(pairs.len());
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--metadata wants key=value, not {p:?}"))?;
        if k.is_empty() || k.contains([' ', ',']) {
            bail!("--metadata key {k:?} must be non-empty, without spaces or commas");
        }
        out.push(format!("{k} {}", STANDARD.encode(v)));
    }
    Ok(out.join(","))
}

pub async fn tus(
    peer: &Peer,
    endpoint: &str,
    size: u64,
    chunk: Option<u64>,
    metadata: &[String],
) -> Result<Report> {
    let side = Arc::new(Side::new(peer)?);
    let endpoint = loopback_url(endpoint, "--endpoint")?;
    if size == 0 {
        bail!("--size must be at least 1 byte");
    }
    let chunk = chunk.unwrap_or(size).clamp(1, size);
    let payload = Payload::new(size);
    let meta = Arc::new(upload_metadata(metadata)?);
    let label = format!("tus POST + {} PATCH", size.div_ceil(chunk));
    let (s, e, p) = (side.clone(), endpoint.clone(), payload.clone());
    let measured = side
        .phase(&label, move |_| {
            let (s, e, p, meta) = (s.clone(), e.clone(), p.clone(), meta.clone());
            async move {
                tus_upload(&s, &e, &p, chunk, &meta).await?;
                Ok(Some(p.len()))
            }
        })
        .await?;
    let mut r = side.report("tus", &endpoint, Some(size));
    r.measured.push(measured);
    Ok(r)
}

/// One tus upload: creation, then PATCHes until the offset is the length.
async fn tus_upload(
    side: &Side,
    endpoint: &Url,
    payload: &Payload,
    chunk: u64,
    metadata: &str,
) -> Result<()> {
    let mut create = side
        .request(Method::POST, endpoint.clone())
        .header("tus-resumable", "1.0.0")
        .header("upload-length", payload.len());
    if !metadata.is_empty() {
        create = create.header("upload-metadata", metadata);
    }
    let created = ok_status(create.send().await, "tus creation").await?;
    let location = created
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("tus creation answered without Location")?;
    // Location may be relative to the endpoint; it is followed to loopback only.
    let upload = endpoint
        .join(location)
        .context("tus creation answered a bad Location")?;
    ensure_loopback(&upload)?;

    let mut offset = 0u64;
    while offset < payload.len() {
        let end = (offset + chunk).min(payload.len());
        let resp = side
            .request(Method::PATCH, upload.clone())
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset)
            .header(CONTENT_TYPE, "application/offset+octet-stream")
            .body(payload.body.slice(offset as usize..end as usize))
            .send()
            .await;
        let resp = ok_status(resp, "tus PATCH").await?;
        let now = resp
            .headers()
            .get("upload-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .context("tus PATCH answered without Upload-Offset")?;
        if now != end {
            bail!("tus PATCH: the server is at offset {now}, not {end}");
        }
        offset = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_go_under_the_endpoint_path() {
        let base = Url::parse("http://127.0.0.1:8080/uppy/tok").unwrap();
        assert_eq!(
            under(&base, "/s3/params").as_str(),
            "http://127.0.0.1:8080/uppy/tok/s3/params"
        );
        let bare = Url::parse("http://127.0.0.1:3020/").unwrap();
        assert_eq!(
            under(&bare, "/s3/multipart/x/3").as_str(),
            "http://127.0.0.1:3020/s3/multipart/x/3"
        );
    }

    #[test]
    fn tus_metadata_is_base64_pairs() {
        let m = upload_metadata(&["profile=file".into(), "filename=a b.bin".into()]).unwrap();
        assert_eq!(m, "profile ZmlsZQ==,filename YSBiLmJpbg==");
        assert!(upload_metadata(&["novalue".into()]).is_err());
        assert!(upload_metadata(&["a,b=c".into()]).is_err());
        assert_eq!(upload_metadata(&[]).unwrap(), "");
    }

    #[test]
    fn headers_parse_and_bad_ones_are_not_echoed_whole() {
        let h = parse_headers(&["Authorization: Bearer abc".into(), "x-a:1".into()]).unwrap();
        assert_eq!(h["authorization"], "Bearer abc");
        assert_eq!(h["x-a"], "1");
        let err = parse_headers(&["Bearer-secret-token-no-colon".into()])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("no-colon"), "{err}");
    }
}
